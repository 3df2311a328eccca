"""Progress lines for logs: a line every N steps inside long epochs, none at an epoch's last step."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
import torch

from cocoseg.training.callbacks import ProgressLines


def test_step_lines_every_n_steps_within_an_epoch(caplog: pytest.LogCaptureFixture) -> None:
    trainer = SimpleNamespace(num_training_batches=5, current_epoch=1, max_epochs=3, is_global_zero=True)
    progress = ProgressLines(every_n_steps=2)
    with caplog.at_level(logging.INFO, logger="cocoseg.training.callbacks"):
        for batch_idx in range(5):
            progress.on_train_batch_end(trainer, None, {"loss": torch.tensor(0.25)}, None, batch_idx)
    assert [r.getMessage() for r in caplog.records] == ["epoch 2/3 step 2/5: train/loss 0.2500",
                                                        "epoch 2/3 step 4/5: train/loss 0.2500"]

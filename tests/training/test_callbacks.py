"""Progress lines for logs: a line every N steps inside long epochs, none at an epoch's last step."""

from __future__ import annotations

import logging
from pathlib import Path
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
    # the second of three epochs: epoch 1 of 0-2, counted from 0 as Lightning's progress bar counts it
    assert [r.getMessage() for r in caplog.records] == [
        "epoch 1 of 0-2, step 2/5: train/loss 0.2500",
        "epoch 1 of 0-2, step 4/5: train/loss 0.2500",
    ]


def test_progress_bar_shows_no_v_num(tmp_path: Path) -> None:
    """Lightning's bar appends ``v_num`` (the loggers' versions cut to 4 characters: ``run_``); ours does not."""
    import lightning as L
    from lightning.pytorch.callbacks import TQDMProgressBar
    from lightning.pytorch.loggers import TensorBoardLogger

    from cocoseg.training.callbacks import ProgressBar

    trainer = L.Trainer(
        logger=TensorBoardLogger(str(tmp_path), name="x", version="run_20260101"),
        accelerator="cpu",
        enable_checkpointing=False,
    )
    assert TQDMProgressBar().get_metrics(trainer, None) == {"v_num": "0101"}
    assert ProgressBar().get_metrics(trainer, None) == {}


def test_first_iteration_metrics_score_a_bounded_sample(tmp_path) -> None:
    """At most ``max_images`` val images are scored after step 1, and the scores are those of exactly them."""
    import json

    import lightning as L
    from helpers import shapes_pair, write_dataset

    from cocoseg.training.callbacks import FirstIterationMetrics
    from cocoseg.training.data import SegmentationDataModule
    from cocoseg.training.module import SegmentationModule

    pairs = [shapes_pair(48, 64, seed) for seed in range(7)]  # 3 train, 4 val
    coco, masks = write_dataset(tmp_path, [p[0] for p in pairs], [p[1] for p in pairs], num_val=4)
    scores = {}
    for limit in (2, 512):
        torch.manual_seed(0)
        dm = SegmentationDataModule(coco, masks, (32, 32), batch_size=2)
        module = SegmentationModule("fastscnn", 3)
        path = tmp_path / f"first_{limit}.json"
        trainer = L.Trainer(
            max_steps=1,
            accelerator="cpu",
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            limit_val_batches=0,
            callbacks=[FirstIterationMetrics(path, max_images=limit)],
        )
        trainer.fit(module, datamodule=dm)
        scores[limit] = json.loads(path.read_text())
    assert scores[2]["val_images"] == 2 and scores[512]["val_images"] == 4
    assert scores[2]["train/loss"] == scores[512]["train/loss"]  # the same step; a smaller val sample
    assert scores[2]["val/loss"] != scores[512]["val/loss"]

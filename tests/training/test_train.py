"""The trainer's speed and determinism flags, per device; checked on the CPU by asking for CUDA's flags."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import lightning as L
import pytest
import torch

from cocoseg.core.params import TrainConfig
from cocoseg.training.train import resolve_precision, trainer_speed_flags


@pytest.fixture
def restore_torch_flags() -> Iterator[None]:
    """Lightning's Trainer sets process-wide torch flags; put them back for the other tests."""
    saved = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
    )
    yield
    torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
    torch.backends.cudnn.benchmark = saved[2]


def test_cpu_flags_keep_strict_determinism_and_nchw() -> None:
    assert trainer_speed_flags(TrainConfig(), cuda=False) == {
        "deterministic": True,
        "benchmark": None,
        "channels_last": False,
    }
    assert trainer_speed_flags(TrainConfig(deterministic=False), cuda=False)["deterministic"] is False


def test_cuda_flags() -> None:
    # deterministic: warn-only (kernels without a deterministic CUDA version must not raise), no autotuning
    assert trainer_speed_flags(TrainConfig(), cuda=True) == {
        "deterministic": "warn",
        "benchmark": False,
        "channels_last": True,
    }
    # not deterministic: cuDNN autotuning on
    assert trainer_speed_flags(TrainConfig(deterministic=False), cuda=True) == {
        "deterministic": False,
        "benchmark": True,
        "channels_last": True,
    }
    assert resolve_precision("auto", "cuda") == "bf16-mixed" and resolve_precision("auto", "cpu") == "32-true"


def test_cuda_determinism_warns_where_no_deterministic_kernel_exists(restore_torch_flags: None) -> None:
    """What the Trainer does with CUDA's flags: a kernel with no deterministic version warns, it does not raise.

    ``put_`` stands in (it alerts on the CPU too) for CUDA's bilinear-upsampling and 2-D NLL backward.
    """
    flags = trainer_speed_flags(TrainConfig(), cuda=True)
    flags.pop("channels_last")
    L.Trainer(accelerator="cpu", logger=False, **flags)
    assert (
        torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
    )
    with pytest.warns(UserWarning, match="does not have a deterministic implementation"):
        torch.zeros(4).put_(torch.tensor([0, 0]), torch.tensor([1.0, 2.0]))
    flags = trainer_speed_flags(TrainConfig(), cuda=False)
    flags.pop("channels_last")
    L.Trainer(accelerator="cpu", logger=False, **flags)  # the CPU keeps strict mode: such a kernel raises
    assert not torch.is_deterministic_algorithms_warn_only_enabled()
    with pytest.raises(RuntimeError), warnings.catch_warnings():
        torch.zeros(4).put_(torch.tensor([0, 0]), torch.tensor([1.0, 2.0]))

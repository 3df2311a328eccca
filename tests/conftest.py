"""Shared fixtures: tiny synthetic COCO folders written into tmp_path, and the offline sample on disk.

The functions behind them live in helpers.py, which test modules import directly."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

# One compute thread for torch here and in the stage subprocesses the DVC tests start: the models
# are tiny, and on a busy 2-core machine competing threads made steps 5-10x slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from helpers import write_coco, write_sample  # noqa: E402


@pytest.fixture
def make_coco(tmp_path: Path) -> Callable[..., Path]:
    """``make_coco(images, annotations, **kw)`` -> a COCO root under tmp_path (see ``write_coco``)."""
    return lambda images, annotations, **kw: write_coco(tmp_path / "coco", images, annotations, **kw)


@pytest.fixture(scope="module")
def sample_coco(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sample(tmp_path_factory.mktemp("sample") / "coco")

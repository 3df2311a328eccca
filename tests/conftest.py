"""Shared fixtures: tiny synthetic COCO folders written into tmp_path, and the offline sample on disk."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

# One compute thread for torch here and in the stage subprocesses the DVC tests start: the models
# are tiny, and on a busy 2-core machine competing threads made steps 5-10x slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from cocoseg.config import SampleConfig  # noqa: E402
from cocoseg.sample import build_sample  # noqa: E402

# Non-contiguous ids, as in real COCO; the masks stage maps them to classes 1..3 by id.
CATEGORIES = [{"id": 1, "name": "cat"}, {"id": 3, "name": "dog"}, {"id": 7, "name": "car"}]


def jpeg_bytes(height: int, width: int, value: int = 128) -> bytes:
    ok, buf = cv2.imencode(".jpg", np.full((height, width, 3), value, np.uint8))
    assert ok
    return buf.tobytes()


def write_coco(root: Path, images: list[dict], annotations: list[dict], categories: list[dict] | None = None,
               split: str = "val2017", files: dict[str, bytes | None] | None = None) -> Path:
    """Write ``root/annotations/instances_<split>.json`` and one grey JPEG per image of its JSON size.

    ``files`` overrides a file's bytes by name; ``None`` leaves that file out (a missing image).
    """
    files = files or {}
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / split).mkdir(parents=True, exist_ok=True)
    coco = {"images": images, "annotations": annotations,
            "categories": CATEGORIES if categories is None else categories}
    (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(coco))
    for image in images:
        data = files.get(image["file_name"], jpeg_bytes(image["height"], image["width"]))
        if data is not None:
            (root / split / image["file_name"]).write_bytes(data)
    return root


@pytest.fixture
def make_coco(tmp_path: Path) -> Callable[..., Path]:
    """``make_coco(images, annotations, **kw)`` -> a COCO root under tmp_path (see ``write_coco``)."""
    return lambda images, annotations, **kw: write_coco(tmp_path / "coco", images, annotations, **kw)


def write_sample(root: Path, seed: int = 42, num_images: int = 64) -> Path:
    """The offline sample (default size) unpacked as the extract stage would leave it."""
    coco, files = build_sample(SampleConfig(num_images=num_images), seed)
    write_coco(root, coco["images"], coco["annotations"], coco["categories"],
               files={im["file_name"]: files.get(im["file_name"]) for im in coco["images"]})
    return root


@pytest.fixture(scope="module")
def sample_coco(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sample(tmp_path_factory.mktemp("sample") / "coco")

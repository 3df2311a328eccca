"""What the masks stage hands to training and evaluation: the class names, the void label, the split.

split.json holds ``{"train": [item, ...], "val": [...]}``, plus ``"test": [...]`` only when a split
tests (items as ``"<split>/<file_name>"``). How it is made (``masks.split``) is masks/split.py's policy.
"""

from __future__ import annotations

import json
from pathlib import Path

from cocoseg.core.layout import LABELS_FILE, SPLIT_FILE, VOID

PARTS = ("train", "val", "test")  # the parts of split.json; test is optional


def load_labels(masks_root: Path) -> list[str]:
    """Class names by class id (0 is background), from labels.json."""
    with open(Path(masks_root) / LABELS_FILE) as f:
        return [c["name"] for c in json.load(f)["classes"]]


def load_void(masks_root: Path) -> int:
    """The label of ignored pixels in the semantic masks: 255 (uint8 masks) or 65535 (uint16), from
    labels.json (files written before it said so have 255)."""
    with open(Path(masks_root) / LABELS_FILE) as f:
        return int(json.load(f).get("void", VOID))


def load_split(masks_root: Path) -> dict[str, list[str]]:
    """{"train": [item, ...], "val": [item, ...]} and, where a split tests, "test", items as
    ``"<split>/<file_name>"``."""
    with open(Path(masks_root) / SPLIT_FILE) as f:
        return json.load(f)

"""Read what the masks stage hands to training and evaluation: the class names and the split."""

from __future__ import annotations

import json
from pathlib import Path

from cocoseg.core.layout import LABELS_FILE, SPLIT_FILE


def load_labels(masks_root: Path) -> list[str]:
    """Class names by class id (0 is background), from labels.json."""
    with open(Path(masks_root) / LABELS_FILE) as f:
        return [c["name"] for c in json.load(f)["classes"]]


def load_split(masks_root: Path) -> dict[str, list[str]]:
    """{"train": [item, ...], "val": [item, ...]}, items as ``"<split>/<file_name>"``."""
    with open(Path(masks_root) / SPLIT_FILE) as f:
        return json.load(f)

"""What the masks stage hands to training and evaluation (the class names, the void label, the split),
and which of the source's splits train, validate and test.

split.json holds ``{"train": [item, ...], "val": [...]}``, plus ``"test": [...]`` only when a split
tests (items as ``"<split>/<file_name>"``). ``masks.split`` says how it is made: ``auto`` recognises the
usual split names (``recognise_parts``), a mapping names the splits of each part.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path

from cocoseg.core.layout import LABELS_FILE, SPLIT_FILE, VOID

PARTS = ("train", "val", "test")  # the parts of split.json; test is optional
# The names ``masks.split: auto`` recognises for each part (compared without case).
PART_NAMES = {
    "train": ("train", "training", "train2017"),
    "val": ("val", "valid", "validation", "val2017", "dev"),
    "test": ("test", "testing", "test2017"),
}


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


def part_of(split: str) -> str | None:
    """The part ``split``'s name is usual for (``valid`` -> ``val``), or None."""
    return next((part for part, names in PART_NAMES.items() if split.casefold() in names), None)


def recognise_parts(splits: Iterable[str], written: Mapping[str, int]) -> dict[str, list[str]] | None:
    """``masks.split: auto``: the splits of each part, by their names, when every split is recognised and
    both train and val have written images (``written``: split -> images written); else None (pool)."""
    parts: dict[str, list[str]] = {part: [] for part in PARTS}
    for split in splits:
        part = part_of(split)
        if part is None:
            return None
        parts[part].append(split)
    if not all(sum(written.get(split, 0) for split in parts[part]) for part in ("train", "val")):
        return None
    return {part: names for part, names in parts.items() if names or part != "test"}

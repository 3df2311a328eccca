"""Which written images train, which validate, and which test: split.json, by ``masks.split``.

- a mapping (``{train: [train], val: [valid], test: [test]}``): the named splits make each part;
- ``coco``: the mapping ``{train: [train2017], val: [val2017]}`` (scores comparable with published
  val2017 results);
- ``pooled``: every written image pooled, then a seeded ``val_fraction`` validates;
- ``auto``: the mapping the splits' names give (``PART_NAMES``: train/training/
  train2017, val/valid/validation/val2017/dev, test/testing/test2017) when every split has such a name
  and train and val both have written images; else pooled, with any test-named split kept apart as test.

A test part is scored by evaluate apart from val; split.json has a "test" key only when there is one.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from numpy.random import default_rng

from cocoseg.core.layout import split_item
from cocoseg.core.splits import PARTS
from cocoseg.masks.coco import CocoFormatError

log = logging.getLogger(__name__)

POOL = "pooled"  # in a plan: the splits whose images are pooled, then split by val_fraction

# The names ``masks.split: auto`` recognises for each part (compared without case).
PART_NAMES = {
    "train": ("train", "training", "train2017"),
    "val": ("val", "valid", "validation", "val2017", "dev"),
    "test": ("test", "testing", "test2017"),
}


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


def plan_parts(
    mode: str | Mapping[str, Sequence[str]], splits: Sequence[str], written: Mapping[str, int]
) -> dict[str, list[str]]:
    """The splits of each part: {"train": [...], "val": [...]} (and "test") or {"pooled": [...]} (and
    "test"); ``written``: images written per split."""
    if isinstance(mode, Mapping):
        return {part: list(names) for part, names in mode.items()}
    if mode == "coco":
        return {"train": ["train2017"], "val": ["val2017"]}
    if mode == "pooled":
        return {POOL: list(splits)}
    parts = recognise_parts(splits, written)
    if parts is not None:
        return parts
    tests = [split for split in splits if part_of(split) == "test"]
    rest = [split for split in splits if split not in tests]
    return {POOL: rest, "test": tests} if rest and tests else {POOL: list(splits)}


def describe_plan(mode: object, plan: Mapping[str, list[str]], val_fraction: float) -> str:
    """One line for the log: what ``masks.split`` chose."""
    parts = "; ".join(f"{part} = {', '.join(names)}" for part, names in plan.items() if part != POOL)
    if POOL in plan:
        pooled = (
            f"{val_fraction:.0%} of the images of {', '.join(plan[POOL])} validate (seeded), the rest train"
        )
        parts = f"{pooled}; {parts}" if parts else pooled
    return f"masks.split {mode if isinstance(mode, str) else 'mapping'}: {parts}"


def split_images(
    written: list[str],
    val_fraction: float,
    seed: int,
    mode: str | Mapping[str, Sequence[str]] = "pooled",
    splits: Sequence[str] | None = None,
) -> dict[str, list[str]]:
    """split.json's parts of the written items (``"<split>/<file_name>"``), sorted; ``splits``: the splits
    built (default: those of the items)."""
    items = sorted(written)
    counts = Counter(split_item(item)[0] for item in items)
    plan = plan_parts(mode, list(splits if splits is not None else sorted(counts)), counts)
    of = {split: part for part, names in plan.items() for split in names}
    by_part: dict[str, list[str]] = {part: [] for part in plan}
    for item in items:
        part = of.get(split_item(item)[0])
        if part is not None:
            by_part[part].append(item)
    empty = [part for part, found in by_part.items() if part != POOL and not found]
    if empty:
        raise CocoFormatError(
            f"masks.split: the {empty[0]} part ({', '.join(plan[empty[0]])}) has no written "
            f"images; written per split: {dict(sorted(counts.items()))}"
        )
    result = _pooled(by_part.pop(POOL), val_fraction, seed) if POOL in by_part else {}
    return {**result, **by_part}


def _pooled(items: list[str], val_fraction: float, seed: int) -> dict[str, list[str]]:
    """A seeded ``val_fraction`` of the sorted items validates; both parts non-empty with 2+ items."""
    order = default_rng(seed).permutation(len(items))
    n_val = min(max(1, round(val_fraction * len(items))), max(len(items) - 1, 1))
    return {"train": sorted(items[i] for i in order[n_val:]), "val": sorted(items[i] for i in order[:n_val])}

"""report.json: what the masks stage wrote, what it skipped and why, counted and listed."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from cocoseg.core.limits import MAX_LISTED
from cocoseg.masks.coco import CocoIndex
from cocoseg.masks.image_job import ImageResult

log = logging.getLogger(__name__)

COUNTS = [
    "images",
    "images_written",
    "images_skipped",
    "annotations",
    "annotations_painted",
    "annotations_crowd",
    "annotations_unselected",
    "annotations_skipped",
    "annotations_in_skipped_images",
    "size_mismatches",
    "images_turned_upright",
]


class Report:
    """Counts of everything, and the first MAX_LISTED records of each list from each source (annotations of no
    image, those of an image): a file with a million bad records gives a report of a few hundred kB, with
    ``omitted`` saying how many entries each list left out, and a million orphans hide no image's reasons."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.skipped_images: list[dict] = []
        self.skipped_annotations: list[dict] = []
        self.notices: list[dict] = []
        self.extra: dict[str, Any] = {}  # further top-level entries: unused categories, the split
        self.omitted: Counter[str] = Counter()
        self.listed: Counter[tuple[str, str]] = Counter()

    def _list(self, kind: str, entry: dict, source: str = "images") -> None:
        if self.listed[kind, source] < MAX_LISTED:
            self.listed[kind, source] += 1
            getattr(self, kind).append(entry)
        else:
            self.omitted[kind] += 1

    def add_orphans(self, split: str, index: CocoIndex) -> None:
        """Annotations skipped while loading: those of no listed image, and repeats of an id."""
        skipped = [
            (ann, f"image_id {ann.get('image_id')!r} is not in images") for ann in index.orphan_annotations
        ]
        skipped += [
            (ann, f"annotation id {ann['id']} was used by an earlier record, which is the one painted")
            for ann in index.duplicate_annotations
        ]
        total = max(index.orphan_count, len(index.orphan_annotations)) + max(
            index.duplicate_count, len(index.duplicate_annotations)
        )
        self.counts["annotations"] += total
        self.counts["annotations_skipped"] += total
        for ann, reason in skipped:
            self._list(
                "skipped_annotations",
                {
                    "split": split,
                    "annotation_id": ann["id"],
                    "image_id": ann.get("image_id"),
                    "reason": reason,
                },
                "load",
            )
        self.omitted["skipped_annotations"] += total - len(skipped)

    def add(self, split: str, r: ImageResult) -> None:
        c = self.counts
        c["images"] += 1
        c["images_written" if r.written else "images_skipped"] += 1
        c["annotations"] += r.painted + r.crowd + r.unselected + len(r.skipped_annotations) + r.not_processed
        c["annotations_in_skipped_images"] += r.not_processed
        c["annotations_painted"] += r.painted
        c["annotations_crowd"] += r.crowd
        c["annotations_unselected"] += r.unselected
        c["annotations_skipped"] += len(r.skipped_annotations)
        c["images_turned_upright"] += r.turned
        if r.reason:
            self._list(
                "skipped_images",
                {"split": split, "image_id": r.image_id, "file_name": r.file_name, "reason": r.reason},
            )
            log.info("skipped image %s/%s (id %d): %s", split, r.file_name, r.image_id, r.reason)
        for ann_id, reason in r.skipped_annotations:
            self._list(
                "skipped_annotations",
                {"split": split, "annotation_id": ann_id, "image_id": r.image_id, "reason": reason},
            )
        for notice in r.notices:
            c["size_mismatches"] += 1
            self._list(
                "notices",
                {"split": split, "image_id": r.image_id, "file_name": r.file_name, "notice": notice},
            )

    def to_json(self) -> dict[str, Any]:
        omitted = {kind: n for kind, n in sorted(self.omitted.items()) if n}  # only when a list was cut
        return {
            "counts": {k: self.counts[k] for k in COUNTS},
            "skipped_images": self.skipped_images,
            "skipped_annotations": self.skipped_annotations,
            "notices": self.notices,
            **self.extra,
            **({"omitted": omitted} if omitted else {}),
        }


def summary(report: dict[str, Any]) -> str:
    """The report's counts in one line, as the masks stage and ``cocoseg prepare --ann`` log them."""
    counts = report["counts"]
    return (
        f"wrote masks for {counts['images_written']} of {counts['images']} images "
        f"({counts['images_skipped']} skipped); {counts['annotations_painted']} annotations painted, "
        f"{counts['annotations_skipped']} skipped"
    )

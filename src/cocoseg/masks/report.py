"""report.json: what the masks stage wrote, what it skipped and why, counted and listed."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from cocoseg.masks.coco import CocoIndex
from cocoseg.masks.image_job import ImageResult

log = logging.getLogger(__name__)

COUNTS = ["images", "images_written", "images_skipped", "annotations", "annotations_painted",
          "annotations_crowd", "annotations_unselected", "annotations_skipped",
          "annotations_in_skipped_images", "size_mismatches", "images_turned_upright"]


class Report:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.skipped_images: list[dict] = []
        self.skipped_annotations: list[dict] = []
        self.notices: list[dict] = []
        self.extra: dict[str, Any] = {}  # further top-level entries: unused categories, the split

    def add_orphans(self, split: str, index: CocoIndex) -> None:
        """Annotations skipped while loading: those of no listed image, and repeats of an id."""
        skipped = [(ann, f"image_id {ann.get('image_id')!r} is not in images") for ann in index.orphan_annotations]
        skipped += [(ann, f"annotation id {ann['id']} was used by an earlier record, which is the one painted")
                    for ann in index.duplicate_annotations]
        for ann, reason in skipped:
            self.counts["annotations"] += 1
            self.counts["annotations_skipped"] += 1
            self.skipped_annotations.append({"split": split, "annotation_id": ann["id"],
                                             "image_id": ann.get("image_id"), "reason": reason})

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
            self.skipped_images.append({"split": split, "image_id": r.image_id, "file_name": r.file_name,
                                        "reason": r.reason})
            log.info("skipped image %s/%s (id %d): %s", split, r.file_name, r.image_id, r.reason)
        for ann_id, reason in r.skipped_annotations:
            self.skipped_annotations.append({"split": split, "annotation_id": ann_id, "image_id": r.image_id,
                                             "reason": reason})
        for notice in r.notices:
            c["size_mismatches"] += 1
            self.notices.append({"split": split, "image_id": r.image_id, "file_name": r.file_name,
                                 "notice": notice})

    def to_json(self) -> dict[str, Any]:
        return {"counts": {k: self.counts[k] for k in COUNTS}, "skipped_images": self.skipped_images,
                "skipped_annotations": self.skipped_annotations, "notices": self.notices, **self.extra}

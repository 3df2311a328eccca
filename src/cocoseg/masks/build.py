"""The masks stage: every image of every split -> masks, labels, report, split and previews.

Images are independent, so they are spread over a process pool (``masks.workers``, default one per
core) and streamed with ``imap``: memory holds a few images at a time, whatever the dataset size.
The pool starts before the annotation files are read, so the workers start while the JSON loads
and never hold a copy of it (with fork, a worker's garbage collector would otherwise touch, and so
copy, every page of the parent's annotations). Everything is written into a temporary folder that
replaces the output folder only at the end, so an interrupted run leaves the previous masks untouched.

manifest.tsv names the content of every training pair: per written image, a digest of the image file's
bytes (as data/coco/contents.tsv lists it, or hashed while the image is checked, see image_file.py)
and of its semantic mask's PNG bytes (hashed before they are written). Sorted, with no paths or
times, so the same inputs give the same bytes.
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from numpy.random import default_rng
from tqdm import tqdm

from cocoseg.core.contents import Contents, read_contents
from cocoseg.core.files import atomic_dir, write_json, write_text
from cocoseg.core.layout import (INSTANCE, INSTANCE_TABLE, LABELS_FILE, MASKS_MANIFEST, MASKS_MANIFEST_HEADER,
                                 REPORT_FILE, SEMANTIC, SPLIT_FILE, annotation_file, make_item, mask_name)
from cocoseg.core.limits import MAX_LISTED, cap_processes
from cocoseg.core.machine import usable_cores
from cocoseg.core.params import MasksConfig
from cocoseg.masks.coco import CocoFormatError, CocoIndex, load_coco
from cocoseg.masks.image_file import Listed
from cocoseg.masks.image_job import ImageResult, MaskSettings, process_image
from cocoseg.masks.labels import LabelMap, build_label_map
from cocoseg.masks.paint import check_overlap
from cocoseg.masks.preview import write_previews
from cocoseg.masks.workers import WorkerPool

log = logging.getLogger(__name__)

Task = tuple[MaskSettings, dict[str, Any], list[dict[str, Any]], Listed | None]  # an image, its annotations
                                                                                # and its listed digest
RunImages = Callable[[list[Task]], Iterator[ImageResult]]


def build_masks(coco_root: Path, out_root: Path, splits: tuple[str, ...], cfg: MasksConfig,
                seed: int) -> dict[str, Any]:
    """Build all outputs under ``out_root``; return the report (also written as report.json)."""
    check_overlap(cfg.overlap)  # before any work, also when called without the stage script
    with _image_runner(cfg.workers) as run_images:
        return _build(coco_root, out_root, splits, cfg, seed, run_images)


def _build(coco_root: Path, out_root: Path, splits: tuple[str, ...], cfg: MasksConfig, seed: int,
           run_images: RunImages) -> dict[str, Any]:
    indexes = {split: load_coco(annotation_file(coco_root, split)) for split in splits}
    check_splits(indexes)
    labels = build_label_map(indexes[splits[0]].categories, cfg.categories, cfg.priority)
    contents = read_contents(coco_root)  # the image digests extract took; without them, workers hash

    report = _Report()
    written: list[str] = []  # "<split>/<file_name>" of every image that got masks
    manifest: list[str] = []  # its manifest.tsv lines
    with atomic_dir(out_root) as tmp:
        for split, index in indexes.items():
            settings = MaskSettings(
                split=split, image_dir=coco_root / split, semantic_dir=tmp / SEMANTIC / split,
                instance_dir=tmp / INSTANCE / split, labels=labels,
                known_category_ids=frozenset(c["id"] for c in index.categories), overlap=cfg.overlap,
                crowd_mode=cfg.crowd, keep_empty_images=cfg.keep_empty_images, max_pixels=cfg.max_pixels)
            settings.semantic_dir.mkdir(parents=True)
            settings.instance_dir.mkdir(parents=True)
            report.add_orphans(split, index)
            by_image = index.annotations_by_image
            tasks = [(settings, image, by_image.get(image["id"], []), _listed(contents, split, image))
                     for image in index.images]
            progress = tqdm(run_images(tasks), total=len(tasks), desc=f"masks {split}", unit="img",
                            mininterval=1.0)
            with open(settings.instance_dir / INSTANCE_TABLE, "w") as tables:
                for result in progress:
                    report.add(split, result)
                    if result.written:
                        written.append(make_item(split, result.file_name))
                        manifest.append(f"{written[-1]}\t{result.image_digest}\t{result.semantic_digest}\n")
                        tables.write(result.table_line)
        if not written:
            # a user error (wrong category selection, images not extracted), not a bug: no traceback
            raise CocoFormatError(f"{coco_root}: no image produced a mask; see the skipped images: "
                                  f"{report.skipped_images[:3]}")
        write_json(tmp / LABELS_FILE, labels.to_json())
        write_json(tmp / SPLIT_FILE, split_images(written, cfg.val_fraction, seed, cfg.split))
        write_json(tmp / REPORT_FILE, report.to_json())
        write_text(tmp / MASKS_MANIFEST, MASKS_MANIFEST_HEADER + "".join(sorted(manifest)))
        write_previews(coco_root, tmp, written, labels, cfg.preview, seed)
    return report.to_json()


def check_splits(indexes: dict[str, CocoIndex]) -> None:
    """Refuse what would mix up training pairs: splits with other categories, or two images of one
    split whose masks would share a file name (``a.jpg`` and ``a.png``; ``A.jpg`` and ``a.jpg``, one
    file on a case-insensitive disk), where one mask would overwrite the other."""
    first = next(iter(indexes.values()))
    for index in indexes.values():
        if [c["id"] for c in index.categories] != [c["id"] for c in first.categories]:
            raise CocoFormatError(f"{index.path}: categories differ from {first.path}")
        owners: dict[str, dict[str, Any]] = {}
        for image in index.images:
            other = owners.setdefault(mask_name(image["file_name"]).casefold(), image)
            if other is not image:
                raise CocoFormatError(
                    f"{index.path}: images {other['file_name']!r} (id {other['id']}) and {image['file_name']!r} "
                    f"(id {image['id']}) would both have masks named {mask_name(image['file_name'])!r}; "
                    f"masks are named by the image's stem, so give one of them another name")


def split_images(written: list[str], val_fraction: float, seed: int,
                 mode: str = "pooled") -> dict[str, list[str]]:
    """Which images train and which validate.

    ``coco``: COCO's own split, train2017 trains and val2017 validates, so scores compare with published
    val2017 results. ``pooled``: all images pooled, then a seeded ``val_fraction`` validates (both parts
    non-empty when there are 2+ images). ``auto``: ``coco`` when images of both splits were written.
    """
    items = sorted(written)
    by_split = {split: [item for item in items if item.startswith(f"{split}/")]
                for split in ("train2017", "val2017")}
    if mode == "coco" or (mode == "auto" and all(by_split.values())):
        if not all(by_split.values()):
            raise CocoFormatError(f"masks.split: coco needs images of train2017 and val2017; written: "
                                  f"{ {split: len(part) for split, part in by_split.items()} }")
        return {"train": by_split["train2017"], "val": by_split["val2017"]}
    order = default_rng(seed).permutation(len(items))
    n_val = min(max(1, round(val_fraction * len(items))), max(len(items) - 1, 1))
    val = sorted(items[i] for i in order[:n_val])
    train = sorted(items[i] for i in order[n_val:])
    return {"train": train, "val": val}


@contextlib.contextmanager
def _image_runner(workers: int) -> Iterator[RunImages]:
    """Yield a function that turns tasks into results, in order, in a pool of ``workers`` processes
    (0: one per core). Even one worker is a separate process: a segfault or an out-of-memory kill
    while making one image's masks then ends the stage with a line that names the image."""
    workers = cap_processes("masks.workers", workers) if workers else usable_cores()
    pool = WorkerPool(workers, _work)

    def run(tasks: list[Task]) -> Iterator[ImageResult]:
        # Chunks of up to 8 images: few round trips, yet every worker stays busy to the end of a small set.
        chunksize = max(1, min(8, len(tasks) // (4 * workers)))
        return pool.run(tasks, chunksize, lambda i: _describe(tasks[i]))

    try:
        yield run
    except BaseException:
        pool.kill()
        raise
    pool.close()


def _listed(contents: Contents | None, split: str, image: dict[str, Any]) -> Listed | None:
    digest = contents and contents.digests.get(make_item(split, image["file_name"]))
    return Listed(digest, contents.listed_ns) if digest else None


def _describe(task: Task) -> str:
    settings, image, *_ = task
    return f"{settings.split}/{image['file_name']} (image id {image['id']})"




def _work(task: Task) -> ImageResult:
    return process_image(*task)


class _Report:
    """Counts of everything, and the first MAX_LISTED records of each list from each source (annotations of no
    image, those of an image): a file with a million bad records gives a report of a few hundred kB, with
    ``omitted`` saying how many entries each list left out, and a million orphans hide no image's reasons."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.skipped_images: list[dict] = []
        self.skipped_annotations: list[dict] = []
        self.notices: list[dict] = []
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
        skipped = [(ann, f"image_id {ann.get('image_id')!r} is not in images") for ann in index.orphan_annotations]
        skipped += [(ann, f"annotation id {ann['id']} was used by an earlier record, which is the one painted")
                    for ann in index.duplicate_annotations]
        total = max(index.orphan_count, len(index.orphan_annotations)) + max(index.duplicate_count,
                                                                              len(index.duplicate_annotations))
        self.counts["annotations"] += total
        self.counts["annotations_skipped"] += total
        for ann, reason in skipped:
            self._list("skipped_annotations", {"split": split, "annotation_id": ann["id"],
                                               "image_id": ann.get("image_id"), "reason": reason}, "load")
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
        if r.reason:
            self._list("skipped_images", {"split": split, "image_id": r.image_id, "file_name": r.file_name,
                                          "reason": r.reason})
            log.info("skipped image %s/%s (id %d): %s", split, r.file_name, r.image_id, r.reason)
        for ann_id, reason in r.skipped_annotations:
            self._list("skipped_annotations", {"split": split, "annotation_id": ann_id, "image_id": r.image_id,
                                               "reason": reason})
        for notice in r.notices:
            c["size_mismatches"] += 1
            self._list("notices", {"split": split, "image_id": r.image_id, "file_name": r.file_name,
                                   "notice": notice})

    def to_json(self) -> dict[str, Any]:
        keys = ["images", "images_written", "images_skipped", "annotations", "annotations_painted",
                "annotations_crowd", "annotations_unselected", "annotations_skipped",
                "annotations_in_skipped_images", "size_mismatches"]
        report = {"counts": {k: self.counts[k] for k in keys}, "skipped_images": self.skipped_images,
                  "skipped_annotations": self.skipped_annotations, "notices": self.notices}
        omitted = {kind: n for kind, n in sorted(self.omitted.items()) if n}
        return report | ({"omitted": omitted} if omitted else {})  # only when a list was cut: same bytes as before

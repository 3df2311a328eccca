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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from cocoseg.core.contents import Contents, read_contents
from cocoseg.core.files import atomic_dir, write_json, write_text
from cocoseg.core.layout import (
    INSTANCE,
    INSTANCE_TABLE,
    LABELS_FILE,
    MASKS_MANIFEST,
    MASKS_MANIFEST_HEADER,
    REPORT_FILE,
    SEMANTIC,
    SPLIT_FILE,
    annotation_file,
    make_item,
    mask_name,
)
from cocoseg.core.limits import cap_processes
from cocoseg.core.machine import usable_cores
from cocoseg.core.params import MasksConfig
from cocoseg.masks.coco import CocoFormatError, CocoIndex, load_coco
from cocoseg.masks.image_file import Listed
from cocoseg.masks.image_job import ImageResult, MaskSettings, process_image
from cocoseg.masks.labels import LabelMap, build_label_map
from cocoseg.masks.preview import write_previews
from cocoseg.masks.report import Report
from cocoseg.masks.split import describe_plan, plan_parts, split_images
from cocoseg.masks.workers import WorkerPool

log = logging.getLogger(__name__)

Task = tuple[MaskSettings, dict[str, Any], list[dict[str, Any]], Listed | None]  # an image, its annotations
# and its listed digest
RunImages = Callable[[list[Task]], Iterator[ImageResult]]


@dataclass(frozen=True)
class SplitSource:
    """One split to make masks of: its name, its annotation file, the folder its file names start from."""

    name: str
    annotations: Path
    images: Path


@dataclass(frozen=True)
class Output:
    """Where the masks go. The pipeline's layout (``by_split``) has semantic/<split>/, instance/<split>/
    with an instances.jsonl each, split.json and manifest.tsv; ``cocoseg prepare --ann`` writes one
    split's semantic/, instance/ and instances.jsonl at the top, like the seed's prepare_dataset.py."""

    root: Path
    by_split: bool = True

    def semantic(self, split: str) -> Path:
        return self.root / SEMANTIC / split if self.by_split else self.root / SEMANTIC

    def instance(self, split: str) -> Path:
        return self.root / INSTANCE / split if self.by_split else self.root / INSTANCE

    def table(self, split: str) -> Path:
        return self.instance(split) / INSTANCE_TABLE if self.by_split else self.root / INSTANCE_TABLE


def build_masks(
    coco_root: Path,
    out_root: Path,
    splits: tuple[str, ...],
    cfg: MasksConfig,
    seed: int,
    every_category: bool = False,
) -> dict[str, Any]:
    """The masks stage: every split of ``coco_root`` (data/coco's layout) -> ``out_root``; return the report
    (also written as report.json). ``every_category``: ``masks.categories: all`` is every category the file
    lists, used or not (COCO 2017's fixed 80, whichever subset was downloaded), not only the used ones."""
    sources = [SplitSource(split, annotation_file(coco_root, split), coco_root / split) for split in splits]
    contents = read_contents(coco_root)
    return build_from_sources(sources, out_root, cfg, seed, contents, every_category=every_category)


def build_from_file(
    annotations: Path, image_dir: Path, out_root: Path, cfg: MasksConfig, seed: int
) -> dict[str, Any]:
    """``cocoseg prepare --ann``: one annotation file and its image folder -> ``out_root``, flat."""
    source = SplitSource(annotations.name.split(".")[0] or "images", annotations, image_dir)
    return build_from_sources([source], out_root, cfg, seed, None, by_split=False)


def build_from_sources(
    sources: list[SplitSource],
    out_root: Path,
    cfg: MasksConfig,
    seed: int,
    contents: Contents | None,
    by_split: bool = True,
    every_category: bool = False,
) -> dict[str, Any]:
    """Build all outputs under ``out_root``; return the report. ``contents``: the image digests extract
    took (keyed by item), else the workers hash every image."""
    with _image_runner(cfg.workers) as run_images:
        return _build(sources, out_root, cfg, seed, run_images, contents, by_split, every_category)


def _build(
    sources: list[SplitSource],
    out_root: Path,
    cfg: MasksConfig,
    seed: int,
    run_images: RunImages,
    contents: Contents | None,
    by_split: bool,
    every_category: bool,
) -> dict[str, Any]:
    indexes = {source.name: load_split(source) for source in sources}
    check_splits(indexes)
    labels = _label_map(indexes, cfg, every_category)
    report = Report()
    report.extra["categories_unused"] = list(labels.unused)
    written: list[str] = []  # "<split>/<file_name>" of every image that got masks
    manifest: list[str] = []  # its manifest.tsv lines
    with atomic_dir(out_root) as tmp:
        out = Output(tmp, by_split)
        for source in sources:
            tasks = _tasks(source, indexes[source.name], out, labels, cfg, contents)
            report.add_orphans(source.name, indexes[source.name])
            for result in _run_split(source.name, tasks, out.table(source.name), run_images):
                report.add(source.name, result)
                if result.written:
                    written.append(make_item(source.name, result.file_name))
                    manifest.append(f"{written[-1]}\t{result.image_digest}\t{result.semantic_digest}\n")
        if not written:
            # a user error (wrong category selection, images not extracted), not a bug: no traceback
            raise CocoFormatError(
                f"{sources[0].images.parent if by_split else sources[0].annotations}: no image "
                f"produced a mask; see the skipped images: {report.skipped_images[:3]}"
            )
        write_json(tmp / LABELS_FILE, labels.to_json())
        if by_split:
            report.extra["split"] = _write_split(tmp, written, [s.name for s in sources], cfg, seed)
            write_text(tmp / MASKS_MANIFEST, MASKS_MANIFEST_HEADER + "".join(sorted(manifest)))
        write_json(tmp / REPORT_FILE, report.to_json())
        images = {s.name: s.images for s in sources}
        write_previews(images, out, written, labels, cfg.preview, seed)
    return report.to_json()


def load_split(source: SplitSource) -> CocoIndex:
    """A split's annotation file, refused when it lists images only (no annotations to make masks of)."""
    index = load_coco(source.annotations)
    if index.annotation_count == 0 and index.images:
        raise CocoFormatError(
            f"{source.annotations}: split {source.name!r} lists {len(index.images)} images and no annotations; "
            f"masks need annotated images (leave this split out of data.splits; `cocoseg predict` segments "
            f"images without annotations)"
        )
    return index


def _label_map(indexes: dict[str, CocoIndex], cfg: MasksConfig, every_category: bool) -> LabelMap:
    """The classes, from the categories (equal in every split) and, unless ``every_category``, their use
    over all splits built."""
    use: dict[int, int] = {}
    for index in indexes.values():
        for category, count in index.category_use.items():
            use[category] = use.get(category, 0) + count
    categories = next(iter(indexes.values())).categories
    labels = build_label_map(categories, cfg.categories, cfg.priority, None if every_category else use)
    if labels.unused:
        log.info(
            "%d categories no kept annotation uses get no class id: %s",
            len(labels.unused),
            ", ".join(f"{c['name']!r} (id {c['id']})" for c in labels.unused[:10]),
        )
    return labels


def _tasks(
    source: SplitSource,
    index: CocoIndex,
    out: Output,
    labels: LabelMap,
    cfg: MasksConfig,
    contents: Contents | None,
) -> list[Task]:
    settings = MaskSettings(
        split=source.name,
        image_dir=source.images,
        semantic_dir=out.semantic(source.name),
        instance_dir=out.instance(source.name),
        labels=labels,
        known_category_ids=frozenset(c["id"] for c in index.categories),
        overlap=cfg.overlap,
        crowd_mode=cfg.crowd,
        keep_empty_images=cfg.keep_empty_images,
        max_pixels=cfg.max_pixels,
    )
    settings.semantic_dir.mkdir(parents=True, exist_ok=True)
    settings.instance_dir.mkdir(parents=True, exist_ok=True)
    by_image = index.annotations_by_image
    return [
        (settings, image, by_image.get(image["id"], []), _listed(contents, source.name, image))
        for image in index.images
    ]


def _run_split(split: str, tasks: list[Task], table: Path, run_images: RunImages) -> Iterator[ImageResult]:
    """Each image's result, in image-id order, its instances.jsonl line streamed into ``table``."""
    progress = tqdm(run_images(tasks), total=len(tasks), desc=f"masks {split}", unit="img", mininterval=1.0)
    with open(table, "w") as tables:
        for result in progress:
            if result.written:
                tables.write(result.table_line)
            yield result


def _write_split(
    tmp: Path, written: list[str], splits: list[str], cfg: MasksConfig, seed: int
) -> dict[str, list[str]]:
    """split.json; returns the plan it followed (for the report), after logging it."""
    counts = {split: sum(item.startswith(f"{split}/") for item in written) for split in splits}
    plan = plan_parts(cfg.split, splits, counts)
    log.info("%s", describe_plan(cfg.split, plan, cfg.val_fraction))
    write_json(tmp / SPLIT_FILE, split_images(written, cfg.val_fraction, seed, cfg.split, splits))
    return plan


def check_splits(indexes: dict[str, CocoIndex]) -> None:
    """Refuse what would mix up training pairs: splits with other categories, or two images of one
    split whose masks would share a file name (``a.jpg`` and ``a.png``; ``A.jpg`` and ``a.jpg``, one
    file on a case-insensitive disk), where one mask would overwrite the other."""
    first = next(iter(indexes.values()))
    for index in indexes.values():
        if [(c["id"], c["name"]) for c in index.categories] != [
            (c["id"], c["name"]) for c in first.categories
        ]:
            raise CocoFormatError(f"{index.path}: categories differ from {first.path}")
        owners: dict[str, dict[str, Any]] = {}
        for image in index.images:
            if image["file_name"].split("/")[0].casefold() == INSTANCE_TABLE:
                raise CocoFormatError(
                    f"{index.path}: image {image['file_name']!r} (id {image['id']}) lies in a "
                    f"folder named {INSTANCE_TABLE}, the instance table's own name; rename the folder"
                )
            other = owners.setdefault(mask_name(image["file_name"]).casefold(), image)
            if other is not image:
                raise CocoFormatError(
                    f"{index.path}: images {other['file_name']!r} (id {other['id']}) and {image['file_name']!r} "
                    f"(id {image['id']}) would both have masks named {mask_name(image['file_name'])!r}; "
                    f"masks are named by the image's stem, so give one of them another name"
                )


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

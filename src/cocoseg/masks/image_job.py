"""Turn one COCO image and its annotations into mask files. Runs inside a worker process."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from cocoseg.core.contents import digest_bytes
from cocoseg.core.images import TURNING_ORIENTATIONS, exif_orientation
from cocoseg.core.layout import mask_name
from cocoseg.masks.decode import MalformedAnnotation, Region, RegionsOverBudget, decode_regions
from cocoseg.masks.image_file import ImageOverBudget, Listed, check_image
from cocoseg.masks.labels import LabelMap
from cocoseg.masks.paint import PaintObject, paint_masks
from cocoseg.masks.png import encode_label_png

MAX_INSTANCES = int(np.iinfo(np.uint16).max)  # instance ids 1..65535 in a uint16 map; 0 is "none"


@dataclass(frozen=True)
class MaskSettings:
    """What every image of one split needs; sent once to each worker."""

    split: str
    image_dir: Path
    semantic_dir: Path
    instance_dir: Path
    labels: LabelMap
    known_category_ids: frozenset[int]
    overlap: str
    crowd_mode: str
    keep_empty_images: bool
    max_pixels: int


@dataclass
class ImageResult:
    image_id: int
    file_name: str
    written: bool = False
    reason: str | None = None  # why the image was skipped
    notices: list[str] = field(default_factory=list)
    skipped_annotations: list[tuple[int, str]] = field(default_factory=list)  # (annotation id, reason)
    painted: int = 0
    table_line: str = ""  # a written image's line of instances.jsonl: instance -> annotation and class
    crowd: int = 0
    unselected: int = 0
    not_processed: int = 0  # annotations of an image that was skipped before decoding
    image_digest: str = ""  # of the image file's bytes (cocoseg.core.contents.digest_bytes)
    semantic_digest: str = ""  # of the semantic mask's PNG bytes as written
    turned: bool = False  # an EXIF-rotated photo painted upright (see _image_size)


def process_image(
    settings: MaskSettings, image: dict[str, Any], anns: list[dict[str, Any]], listed: Listed | None = None
) -> ImageResult:
    """The masks of one image; ``listed``: the image's digest in data/coco/contents.tsv, if any."""
    result = ImageResult(image["id"], image["file_name"], not_processed=len(anns))
    size = _image_size(settings, image, listed, result)
    if size is None:
        return result
    height, width = size

    result.not_processed = 0
    try:
        objects, crowd, table = _decode_annotations(settings, anns, height, width, result)
    except RegionsOverBudget as err:  # memory for one image is bounded: the image is skipped whole
        return ImageResult(image["id"], image["file_name"], reason=str(err), not_processed=len(anns))
    if not objects and not settings.keep_empty_images:
        result.reason = "no kept annotations"
        return result
    if len(objects) > MAX_INSTANCES:
        result.reason = f"{len(objects)} objects do not fit the instance map, which holds {MAX_INSTANCES}"
        result.not_processed, result.skipped_annotations = len(anns), []
        return result

    semantic, instance = paint_masks(
        objects, crowd, height, width, settings.overlap, settings.crowd_mode, settings.labels.void
    )
    for i, (row, obj) in enumerate(zip(table, objects, strict=False)):
        y0, y1, x0, x1 = obj.region.box
        row["pixels"] = int(np.count_nonzero(instance[y0:y1, x0:x1] == i + 1))  # visible after overlaps
    _write_masks(settings, image, semantic, instance, table, result)
    result.written = True
    result.painted = len(objects)
    return result


def _write_masks(
    settings: MaskSettings,
    image: dict[str, Any],
    semantic: np.ndarray,
    instance: np.ndarray,
    table: list[dict[str, Any]],
    result: ImageResult,
) -> None:
    """Write the image's two PNGs and put its semantic digest and instances.jsonl line in ``result``."""
    name = mask_name(image["file_name"])
    if "/" in name:  # a file name with subfolders (CVAT's JPEGImages/x.jpg) keeps them
        (settings.semantic_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (settings.instance_dir / name).parent.mkdir(parents=True, exist_ok=True)
    # Plain writes: these folders live inside the stage's temporary output folder, which replaces
    # data/masks atomically only once every image is done (see build.py).
    semantic_png = encode_label_png(semantic)
    (settings.semantic_dir / name).write_bytes(semantic_png)
    (settings.instance_dir / name).write_bytes(encode_label_png(instance))
    result.semantic_digest = digest_bytes(semantic_png)
    # the parent streams these lines into one instances.jsonl per split; the instance map is <name>.png
    result.table_line = (
        json.dumps(
            {
                "image": str(PurePosixPath(image["file_name"]).with_suffix("")),
                "image_id": image["id"],
                "instances": table,
            },
            separators=(",", ":"),
        )
        + "\n"
    )


def _image_size(
    settings: MaskSettings, image: dict[str, Any], listed: Listed | None, result: ImageResult
) -> tuple[int, int] | None:
    """The (height, width) to paint at: the file's, or the JSON's when the file is a phone photo stored
    turned by 90 degrees with an EXIF orientation that says so (the JSON's size is then the upright
    picture's, and so are its coordinates). None, with the reason in ``result``, when the file is unusable."""
    path = settings.image_dir / image["file_name"]
    if not path.is_file():
        result.reason = "image file missing"
        return None
    try:
        height, width, result.image_digest = check_image(path, settings.max_pixels, listed)
    except ImageOverBudget as err:
        result.reason = f"image too large ({err})"
        return None
    except OSError as err:
        result.reason = f"image file unreadable ({err})"
        return None
    expected = (image.get("height"), image.get("width"))
    if expected == (width, height) and height != width and exif_orientation(path) in TURNING_ORIENTATIONS:
        result.turned = True
        return width, height
    if expected != (height, width):
        result.notices.append(
            f"JSON size {image.get('height')}x{image.get('width')} differs from the file's "
            f"{height}x{width}; masks use the file's size"
        )
    return height, width


def _decode_annotations(
    settings: MaskSettings, anns: list[dict[str, Any]], height: int, width: int, result: ImageResult
) -> tuple[list[PaintObject], list[Region], list[dict]]:
    kept: list[dict[str, Any]] = []  # annotations with a selected category and a valid iscrowd
    for ann in anns:
        cat = ann.get("category_id")
        if type(cat) is not int or cat not in settings.known_category_ids:  # JSON true is no category 1
            result.skipped_annotations.append((ann["id"], f"unknown category id {cat!r}"))
        elif settings.labels.class_of(cat) is None:
            result.unselected += 1
        elif type(ann.get("iscrowd", 0)) is not int or ann.get("iscrowd", 0) not in (0, 1):
            result.skipped_annotations.append((ann["id"], f"iscrowd must be 0 or 1, got {ann['iscrowd']!r}"))
        else:
            kept.append(ann)

    objects: list[PaintObject] = []
    crowd: list[Region] = []
    table: list[dict] = []
    for ann, region in zip(
        kept, decode_regions([a.get("segmentation") for a in kept], height, width), strict=False
    ):
        if isinstance(region, MalformedAnnotation):
            result.skipped_annotations.append((ann["id"], f"malformed segmentation: {region}"))
        elif region.area == 0:
            result.skipped_annotations.append((ann["id"], "mask is empty"))
        elif ann.get("iscrowd", 0):
            crowd.append(region)
            result.crowd += 1
        else:
            cat = ann["category_id"]
            class_id = settings.labels.class_of(cat)
            objects.append(PaintObject(region, class_id, settings.labels.priorities.get(cat, 0)))
            table.append(
                {
                    "instance": len(objects),
                    "annotation_id": ann["id"],
                    "category_id": cat,
                    "class_id": class_id,
                    "area": region.area,
                }
            )
    result.skipped_annotations.sort(key=lambda skipped: skipped[0])  # in id order, as the annotations
    return objects, crowd, table

"""A small, seeded, learnable dataset in COCO format, packed as the archives COCO publishes.

Most images hold 1-4 non-overlapping coloured shapes (three categories with non-contiguous COCO ids,
as real COCO has). Images 1-10 are the edge cases the masks stage must handle, one each, so the
offline default run exercises every path that real COCO can take (see ``EDGE_CASES``).
"""

from __future__ import annotations

import json
import logging
import zipfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from cocoseg.acquire.extract import write_manifest
from cocoseg.core.files import atomic_path
from cocoseg.core.layout import ANNOTATIONS_ARCHIVE, annotation_member, image_archive
from cocoseg.core.params import SampleConfig

log = logging.getLogger(__name__)

CATEGORIES = [  # COCO ids are not contiguous; the masks stage maps them to 1..K
    {"id": 1, "name": "disk", "supercategory": "shape"},
    {"id": 3, "name": "square", "supercategory": "shape"},
    {"id": 7, "name": "triangle", "supercategory": "shape"},
]
_COLOURS = {1: (40, 40, 210), 3: (40, 190, 40), 7: (210, 90, 30)}  # BGR base colour per category
UNKNOWN_CATEGORY_ID = 99

EDGE_CASES = {
    1: "two disks overlapping (same-class overlap)",
    2: "a disk over a square (different-class overlap)",
    3: "no annotations at all",
    4: "an annotation whose mask is empty (an all-zero RLE)",
    5: "malformed annotations: 4-coordinate polygon, empty segmentation, unknown category id",
    6: "a crowd region (iscrowd=1, uncompressed RLE) beside a normal object",
    7: "listed in the JSON but missing from the archive",
    8: "a truncated JPEG file",
    9: "an object made of two polygons",
    10: "JSON width/height that differ from the image file",
}
ARCHIVE_SPLIT = "val2017"  # the sample plays the part of COCO's val2017


@dataclass
class _Shape:
    category_id: int
    polygons: list[np.ndarray]  # each (V, 2) float, x/y


def build_sample(cfg: SampleConfig, seed: int) -> tuple[dict, dict[str, bytes]]:
    """Return (instances JSON, {file_name: JPEG bytes}); missing images are left out of the dict."""
    rng = np.random.default_rng(seed)
    images, annotations, files = [], [], {}
    for image_id in range(1, cfg.num_images + 1):
        h, w = (int(v) for v in rng.integers(cfg.min_size, cfg.max_size + 1, size=2))
        shapes = (
            _edge_case_shapes(image_id, h, w, rng) if image_id in EDGE_CASES else _random_shapes(h, w, rng)
        )
        pixels = _render(h, w, shapes, rng)
        file_name = f"{image_id:012d}.jpg"
        json_h, json_w = (h, w + 8) if image_id == 10 else (h, w)
        images.append(
            {
                "id": image_id,
                "file_name": file_name,
                "height": json_h,
                "width": json_w,
                "license": 0,
                "coco_url": f"http://images.cocodataset.org/{ARCHIVE_SPLIT}/{file_name}",
            }
        )
        annotations.extend(_annotate(image_id, h, w, shapes, len(annotations) + 1, rng))
        jpeg = _encode_jpeg(pixels)
        if image_id == 8:
            jpeg = jpeg[: len(jpeg) // 2]
        if image_id != 7:
            files[file_name] = jpeg
    coco = {
        "info": {"description": "cocoseg offline sample", "version": "1.0"},
        "licenses": [{"id": 0, "name": "generated", "url": ""}],
        "images": images,
        "annotations": annotations,
        "categories": CATEGORIES,
    }
    return coco, files


def write_sample_archives(raw_dir: Path, cfg: SampleConfig, seed: int) -> list[Path]:
    """Write val2017.zip and annotations_trainval2017.zip, byte-identical for the same inputs."""
    coco, files = build_sample(cfg, seed)
    ann_bytes = json.dumps(coco, separators=(",", ":")).encode()
    images_zip = raw_dir / image_archive(ARCHIVE_SPLIT)
    ann_zip = raw_dir / ANNOTATIONS_ARCHIVE
    _write_zip(
        images_zip,
        {f"{ARCHIVE_SPLIT}/{name}": data for name, data in sorted(files.items())},
        folder=f"{ARCHIVE_SPLIT}/",
    )
    _write_zip(ann_zip, {annotation_member(ARCHIVE_SPLIT): ann_bytes}, folder="annotations/")
    write_manifest(raw_dir, "sample", [ann_zip.name, images_zip.name], [])
    log.info(
        "sample: %d images, %d annotations -> %s, %s",
        len(coco["images"]),
        len(coco["annotations"]),
        images_zip,
        ann_zip,
    )
    return [images_zip, ann_zip]


def _write_zip(path: Path, members: dict[str, bytes], folder: str) -> None:
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w") as zf:
        zf.writestr(_zip_info(folder, 0o755 | 0o040000), b"")
        for name, data in members.items():
            info = _zip_info(name, 0o644 | 0o100000)
            info.compress_type = zipfile.ZIP_STORED if name.endswith(".jpg") else zipfile.ZIP_DEFLATED
            zf.writestr(info, data)


def _zip_info(name: str, mode: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))  # fixed: archives hold no timestamp
    info.external_attr = mode << 16
    return info


# --- shapes ---------------------------------------------------------------------------------------


def _shape_polygon(category_id: int, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    n = {1: 32, 3: 4, 7: 3}[category_id]
    t = angle + np.arange(n) * 2 * np.pi / n
    return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], axis=1)


def _random_shapes(h: int, w: int, rng: np.random.Generator) -> list[_Shape]:
    placed: list[tuple[float, float, float]] = []
    shapes = []
    for _ in range(int(rng.integers(1, 5))):
        for _attempt in range(30):  # rejection sampling keeps ordinary images free of overlaps
            r = float(rng.uniform(12, min(h, w) / 4))
            cx, cy = float(rng.uniform(r, w - r)), float(rng.uniform(r, h - r))
            if all(np.hypot(cx - x, cy - y) > r + q + 3 for x, y, q in placed):
                placed.append((cx, cy, r))
                cat = int(rng.choice([c["id"] for c in CATEGORIES]))
                shapes.append(_Shape(cat, [_shape_polygon(cat, cx, cy, r, float(rng.uniform(0, np.pi)))]))
                break
    return shapes


def _edge_case_shapes(image_id: int, h: int, w: int, rng: np.random.Generator) -> list[_Shape]:
    r = min(h, w) / 5
    cx, cy = w / 2, h / 2
    if image_id == 1:
        return [
            _Shape(1, [_shape_polygon(1, cx - 0.6 * r, cy, r, 0)]),
            _Shape(1, [_shape_polygon(1, cx + 0.6 * r, cy, r * 0.8, 0)]),
        ]
    if image_id == 2:  # drawn in list order: the larger disk last, as priority_area's tie rule paints it
        return [
            _Shape(3, [_shape_polygon(3, cx - 0.5 * r, cy, r * 0.9, 0.3)]),
            _Shape(1, [_shape_polygon(1, cx + 0.4 * r, cy, r * 1.2, 0)]),
        ]
    if image_id == 3:
        return []
    if image_id == 9:
        return [
            _Shape(
                7,
                [
                    _shape_polygon(7, cx - 1.3 * r, cy, r * 0.8, 0.2),
                    _shape_polygon(7, cx + 1.3 * r, cy, r * 0.8, 1.1),
                ],
            )
        ]
    if image_id == 6:  # a crowd of small disks on the left, one square on the right
        crowd = [_shape_polygon(1, w * 0.12 + 9 * (i % 3), h * 0.3 + 11 * (i // 3), 5, 0) for i in range(6)]
        return [_Shape(-1, crowd), _Shape(3, [_shape_polygon(3, w * 0.7, cy, r, 0.5)])]
    return [_Shape(int(rng.choice([1, 3, 7])), [_shape_polygon(3, cx, cy, r, 0.4)])]


def _render(h: int, w: int, shapes: list[_Shape], rng: np.random.Generator) -> np.ndarray:
    base = rng.integers(70, 170, size=3).astype(np.float32)
    img = np.empty((h, w, 3), np.float32)
    img[:] = base * rng.uniform(0.85, 1.15, size=(h, 1, 1)).astype(np.float32)  # a gentle vertical shade
    for shape in shapes:
        colour = np.array(_COLOURS[abs(shape.category_id) if shape.category_id > 0 else 1], np.float32)
        colour = np.clip(colour + rng.uniform(-30, 30, size=3), 0, 255)
        for poly in shape.polygons:
            cv2.fillPoly(img, [np.round(poly).astype(np.int32)], colour.tolist())
    img += rng.normal(0, 10, size=img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def _encode_jpeg(pixels: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, 92])
    assert ok
    return buf.tobytes()


# --- annotations ----------------------------------------------------------------------------------


def _annotate(
    image_id: int, h: int, w: int, shapes: list[_Shape], next_id: int, rng: np.random.Generator
) -> list[dict]:
    anns = []
    for shape in shapes:
        polys = [p.ravel().round(2).tolist() for p in shape.polygons]
        mask = _rasterise(polys, h, w)
        ann = {
            "id": next_id + len(anns),
            "image_id": image_id,
            "category_id": abs(shape.category_id),
            "iscrowd": 0,
            "area": float(mask.sum()),
            "bbox": _bbox(mask),
            "segmentation": polys,
        }
        if shape.category_id < 0:  # crowd regions come as uncompressed RLE, as in real COCO
            ann.update(iscrowd=1, segmentation=encode_uncompressed_rle(mask))
        elif ann["id"] % 5 == 3:
            ann["segmentation"] = encode_compressed_rle(mask)
        elif ann["id"] % 7 == 5:
            ann["segmentation"] = encode_uncompressed_rle(mask)
        anns.append(ann)
    return anns + _odd_records(image_id, h, w, next_id + len(anns))


def _odd_records(image_id: int, h: int, w: int, extra_id: int) -> list[dict]:
    """The records real files hold and masks must survive: an empty RLE (image 4); a degenerate polygon,
    an empty segmentation and an unknown category (image 5)."""
    if image_id == 4:
        empty = np.zeros((h, w), np.uint8)
        return [
            {
                "id": extra_id,
                "image_id": image_id,
                "category_id": 1,
                "iscrowd": 0,
                "area": 0.0,
                "bbox": [0, 0, 0, 0],
                "segmentation": encode_uncompressed_rle(empty),
            }
        ]
    if image_id == 5:
        good = [_shape_polygon(7, w * 0.3, h * 0.3, 10, 0).ravel().round(2).tolist()]
        return [
            {
                "id": extra_id,
                "image_id": 5,
                "category_id": 3,
                "iscrowd": 0,
                "area": 0.0,
                "bbox": [10, 10, 10, 10],
                "segmentation": [[10.0, 10.0, 20.0, 20.0]],
            },
            {
                "id": extra_id + 1,
                "image_id": 5,
                "category_id": 3,
                "iscrowd": 0,
                "area": 0.0,
                "bbox": [0, 0, 0, 0],
                "segmentation": [],
            },
            {
                "id": extra_id + 2,
                "image_id": 5,
                "category_id": UNKNOWN_CATEGORY_ID,
                "iscrowd": 0,
                "area": 100.0,
                "bbox": [0, 0, 10, 10],
                "segmentation": good,
            },
        ]
    return []


def _rasterise(polys: list[list[float]], h: int, w: int) -> np.ndarray:
    return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polys, h, w)))


def _bbox(mask: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return [0.0, 0.0, 0.0, 0.0]
    return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]


def encode_compressed_rle(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": rle["counts"].decode("ascii")}


def encode_uncompressed_rle(mask: np.ndarray) -> dict:
    """Column-major run lengths starting with a run of zeros, as COCO stores crowd regions."""
    flat = mask.astype(np.uint8).ravel(order="F")
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0] == 1:
        counts = [0, *counts]
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": [int(c) for c in counts]}

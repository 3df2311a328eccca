"""Write a synthetic COCO folder (``annotations/instances_val2017.json`` + ``val2017/*.jpg``) for the
input and masks benchmarks: any number of categories and any photo size, offline.

Each image is a smooth colour gradient with polygon objects (quadrilaterals and ellipses as polygons)
filled with their category's colour, plus Gaussian noise so that the JPEG costs about what a photo of
that size costs to decode (saved at quality 90). Category ids are 1..K with names ``class_0001``...;
every category is used (images get more objects where K needs them: the masks stage makes classes only
of used categories), in a seeded order; every annotation is a polygon with its float area and box. The
same arguments give the same bytes.

    python benchmarks/make_synthetic_coco.py --out DIR [--images 64] [--size 2048 1536] [--classes 200]
        [--objects 12] [--seed 0] [--workers 0]
"""

from __future__ import annotations

import argparse
import json
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np

SPLIT = "val2017"


def object_polygon(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """(P, 2) float vertices of one object: a rotated quadrilateral or a 24-gon ellipse inside the frame."""
    cx, cy = rng.uniform(0.1, 0.9) * width, rng.uniform(0.1, 0.9) * height
    rx, ry = rng.uniform(0.03, 0.25) * width, rng.uniform(0.03, 0.25) * height
    corners = 4 if rng.random() < 0.5 else 24
    angles = (
        np.sort(rng.uniform(0, 2 * np.pi, corners)) if corners == 4 else np.linspace(0, 2 * np.pi, 24, False)
    )
    points = np.stack([cx + rx * np.cos(angles), cy + ry * np.sin(angles)], axis=1)
    return np.clip(points, 0, [width - 1, height - 1])


def draw_image(seed: int, index: int, width: int, height: int, categories: list[int]) -> tuple[bytes, list]:
    """(JPEG bytes, [(category id, (P, 2) polygon), ...]) of one image with one object per category."""
    rng = np.random.default_rng([seed, index])
    ramp_x, ramp_y = np.linspace(0, 1, width, dtype=np.float32), np.linspace(0, 1, height, dtype=np.float32)
    top, bottom = rng.uniform(40, 215, 3).astype(np.float32), rng.uniform(40, 215, 3).astype(np.float32)
    image = top + (bottom - top) * (0.6 * ramp_y[:, None, None] + 0.4 * ramp_x[None, :, None])
    shapes = []
    for category in categories:
        polygon = object_polygon(rng, width, height)
        colour = np.random.default_rng([seed, category]).uniform(0, 255, 3)
        cv2.fillPoly(image, [np.round(polygon).astype(np.int32)], colour.tolist())
        shapes.append((category, polygon))
    image += rng.normal(0, 6, image.shape).astype(np.float32)
    ok, jpeg = cv2.imencode(".jpg", np.clip(image, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return jpeg.tobytes(), shapes


def annotation(ann_id: int, image_id: int, category: int, polygon: np.ndarray) -> dict:
    x, y = polygon[:, 0], polygon[:, 1]
    area = 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))  # shoelace
    box = [float(x.min()), float(y.min()), float(x.max() - x.min()), float(y.max() - y.min())]
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": category,
        "iscrowd": 0,
        "area": round(area, 2),
        "bbox": [round(v, 2) for v in box],
        "segmentation": [[round(float(v), 2) for v in polygon.ravel()]],
    }


def categories_of_images(seed: int, images: int, classes: int, objects: int) -> list[list[int]]:
    """Each image's categories: 1..objects of them at random, at least enough that all K appear."""
    rng = np.random.default_rng([seed, 2**31])
    counts = np.maximum(rng.integers(1, objects + 1, images), -(-classes // images))
    order = np.resize(rng.permutation(np.arange(1, classes + 1)), int(counts.sum()))
    return [[int(c) for c in part] for part in np.split(order, np.cumsum(counts)[:-1])]


def write_image(args: tuple[Path, int, int, int, int, list[int]]) -> list:
    out, seed, index, width, height, categories = args
    jpeg, shapes = draw_image(seed, index, width, height, categories)
    (out / SPLIT / f"{index:012d}.jpg").write_bytes(jpeg)
    return shapes


def write_set(
    out: Path, images: int, size: tuple[int, int], classes: int, objects: int, seed: int, workers: int
) -> dict:
    """Write the folder; return its counts."""
    width, height = size
    (out / SPLIT).mkdir(parents=True, exist_ok=True)
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    jobs = [
        (out, seed, i, width, height, categories)
        for i, categories in enumerate(categories_of_images(seed, images, classes, objects), start=1)
    ]
    with ProcessPoolExecutor(workers or None) as pool:
        shapes = list(pool.map(write_image, jobs))
    coco: dict = {
        "images": [],
        "annotations": [],
        "categories": [
            {"id": k, "name": f"class_{k:04d}", "supercategory": "synthetic"} for k in range(1, classes + 1)
        ],
    }
    for i, objects_of_image in enumerate(shapes, start=1):
        coco["images"].append({"id": i, "file_name": f"{i:012d}.jpg", "width": width, "height": height})
        for category, polygon in objects_of_image:
            coco["annotations"].append(annotation(len(coco["annotations"]) + 1, i, category, polygon))
    (out / "annotations" / f"instances_{SPLIT}.json").write_text(json.dumps(coco))
    return {
        "images": images,
        "annotations": len(coco["annotations"]),
        "categories": classes,
        "categories used": len({a["category_id"] for a in coco["annotations"]}),
        "MB of JPEG": round(sum(f.stat().st_size for f in (out / SPLIT).iterdir()) / 1e6, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True, help="a new folder")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--size", type=int, nargs=2, default=[2048, 1536], metavar=("W", "H"))
    parser.add_argument("--classes", type=int, default=200, help="categories, ids 1..K")
    parser.add_argument(
        "--objects",
        type=int,
        default=12,
        help="at most this many objects per image, unless --classes needs more",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=0, help="processes (0: one per core)")
    args = parser.parse_args()
    if args.out.exists() and any(args.out.iterdir()):
        parser.error(f"--out {args.out}: not empty")
    counts = write_set(
        args.out, args.images, tuple(args.size), args.classes, args.objects, args.seed, args.workers
    )
    print(
        f"{args.out}: {args.size[0]}x{args.size[1]}, " + ", ".join(f"{v} {k}" for k, v in counts.items()),
        flush=True,
    )


if __name__ == "__main__":
    main()

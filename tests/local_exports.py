"""COCO-format export folders as labelling tools lay them out, made in tmp_path (Roboflow, COCO, CVAT, Label
Studio, labelme2coco), and zips of them, for the tests of bringing data in (layouts, import, archives).
Each image is a small JPEG with one bright square, annotated by a polygon. tests/exports.py has the export
styles the masks stage is checked on."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import cv2
import numpy as np

SIZE = 32  # images are SIZE x SIZE
CATEGORIES = [
    {"id": 0, "name": "project", "supercategory": "none"},  # Roboflow's unused placeholder
    {"id": 1, "name": "box", "supercategory": "project"},
]


def square_jpeg(seed: int) -> bytes:
    """A grey JPEG with one bright square at a place drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    image = np.full((SIZE, SIZE, 3), 60, np.uint8)
    y, x = (int(v) for v in rng.integers(0, SIZE // 2, 2))
    image[y : y + SIZE // 2, x : x + SIZE // 2] = 220
    ok, buf = cv2.imencode(".jpg", image)
    assert ok
    return buf.tobytes()


def coco_json(names: list[str], first_id: int = 0) -> dict:
    """A COCO instances dict listing ``names``: one square polygon of category 1 per image."""
    images, annotations = [], []
    for i, name in enumerate(names):
        images.append({"id": first_id + i, "file_name": name, "width": SIZE, "height": SIZE, "extra": {}})
        square = [4, 4, 20, 4, 20, 20, 4, 20]
        annotations.append(
            {
                "id": first_id + i,
                "image_id": first_id + i,
                "category_id": 1,
                "iscrowd": 0,
                "segmentation": [square],
                "area": 256.0,
                "bbox": [4, 4, 16, 16],
            }
        )
    return {"info": {}, "images": images, "annotations": annotations, "categories": CATEGORIES}


def write_split(json_path: Path, image_root: Path, names: list[str], seed: int = 0) -> list[str]:
    """``json_path`` listing ``names``, and each image at ``image_root / name``."""
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(coco_json(names)))
    for i, name in enumerate(names):
        (image_root / name).parent.mkdir(parents=True, exist_ok=True)
        (image_root / name).write_bytes(square_jpeg(seed + i))
    return names


def write_roboflow(root: Path, splits: dict[str, int] | None = None) -> Path:
    """``<split>/_annotations.coco.json`` beside the split's images, ids restarting at 0 in each split."""
    splits = splits or {"train": 3, "valid": 2, "test": 1}
    for k, (split, count) in enumerate(splits.items()):
        write_split(
            root / split / "_annotations.coco.json",
            root / split,
            [f"{split}_{i}.jpg" for i in range(count)],
            seed=100 * k,
        )
    (root / "README.roboflow.txt").write_text("exported from roboflow\n")
    return root


def write_coco_layout(root: Path, splits: dict[str, int], images_in: str = "{split}") -> Path:
    """``annotations/instances_<split>.json`` with the images in ``images_in`` (``{split}`` is replaced)."""
    for k, (split, count) in enumerate(splits.items()):
        write_split(
            root / "annotations" / f"instances_{split}.json",
            root / images_in.format(split=split),
            [f"{k}{i:05d}.jpg" for i in range(count)],
            seed=100 * k,
        )
    return root


def zip_folder(folder: Path, archive: Path, prefix: str = "") -> Path:
    """Zip every file under ``folder``, member names relative to it under ``prefix``."""
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, prefix + path.relative_to(folder).as_posix())
    return archive


def snapshot(folder: Path) -> dict[str, tuple[bytes, int, int]]:
    """Every file and folder under ``folder``: (bytes, mode, mtime_ns); folders hold b""."""
    out = {}
    for path in sorted([folder, *folder.rglob("*")]):
        info = path.stat()
        out[path.relative_to(folder).as_posix()] = (
            path.read_bytes() if path.is_file() else b"",
            info.st_mode,
            info.st_mtime_ns,
        )
    return out

"""COCO-format exports as real labelling tools write them, built small into a folder, and the pycocotools
reference their masks are checked against.

Each builder writes one export style into ``root`` and returns an ``Export``: its splits (annotation file
and the folder its file names start from) and what a test needs to know about it. Images are a few of
64-160 pixels, so a test runs in seconds:

- ``roboflow``: ``train/ valid/ test/``, each with ``_annotations.coco.json`` beside its images; image ids
  restarting at 0 in each split; a placeholder category 0 (the project, supercategory "none") that no
  annotation uses; ``images[].extra``.
- ``cvat``: file names with a subfolder (``JPEGImages/x.jpg``); category id 0 a real class
  (``_background_``); supercategory null or missing; iscrowd and area missing; ``type`` and no ``info``.
- ``rle_only``: RLE segmentations only (compressed and uncompressed), category ids far above 90 with
  gaps, annotation id 0, images named by ``coco_url`` alone in a folder that is not the JSON's, and a
  JSON of another format (panoptic) beside it.
- ``attributes``: annotations without ``bbox``, with ``attribute_ids``; a top-level ``attributes`` list;
  images in a sibling ``images/`` folder holding files no annotation lists.
- ``web_pngs``: PNG images in palette, greyscale, 16-bit and RGBA modes, float polygon coordinates, an
  image without annotations, the same file name in two splits, an unlisted file in the image folder.
- ``many_classes``: 1,203 categories (LVIS's count), some used, so the masks become uint16.
- ``exif_photo``: a phone photo stored turned by 90 degrees with EXIF orientation 6, the JSON giving the
  upright size, beside a photo whose EXIF orientation matches its JSON size as stored.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from pycocotools.coco import COCO

from cocoseg.acquire.sample import encode_compressed_rle, encode_uncompressed_rle


@dataclass(frozen=True)
class SplitFiles:
    annotations: Path  # the split's COCO JSON
    images: Path  # the folder its images' file names start from


@dataclass(frozen=True)
class Export:
    root: Path
    splits: dict[str, SplitFiles]
    notes: dict[str, object] = field(default_factory=dict)  # what a test of this style checks besides pixels


# --- pixels and files ----------------------------------------------------------------------------------


def photo(height: int, width: int, seed: int) -> np.ndarray:
    """(H, W, 3) uint8 RGB with smooth colour gradients and a few blocks: something JPEG keeps."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack(
        [
            (x * 255 // max(width - 1, 1)),
            (y * 255 // max(height - 1, 1)),
            np.full_like(x, int(rng.integers(40, 200))),
        ],
        axis=-1,
    ).astype(np.uint8)
    for _ in range(3):
        y0, x0 = int(rng.integers(0, height // 2)), int(rng.integers(0, width // 2))
        image[y0 : y0 + height // 4, x0 : x0 + width // 4] = rng.integers(0, 256, 3, dtype=np.uint8)
    return image


def jpeg(rgb: np.ndarray, exif_orientation: int | None = None) -> bytes:
    buf = io.BytesIO()
    kwargs = {}
    if exif_orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        kwargs["exif"] = exif.tobytes()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=92, **kwargs)
    return buf.getvalue()


def png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)
    return path


def box_polygon(y0: float, y1: float, x0: float, x1: float) -> list[float]:
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def box_mask(height: int, width: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    mask = np.zeros((height, width), np.uint8)
    mask[y0:y1, x0:x1] = 1
    return mask


def disk_mask(height: int, width: int, cy: int, cx: int, r: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return ((y - cy) ** 2 + (x - cx) ** 2 <= r * r).astype(np.uint8)


def annotation(ann_id: int, image_id: int, category_id: int, segmentation: object, **extra: object) -> dict:
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": category_id,
        "segmentation": segmentation,
        "iscrowd": 0,
        "area": 0.0,
        "bbox": [0, 0, 0, 0],
        **extra,
    }


# --- the styles --------------------------------------------------------------------------------------


def roboflow(root: Path) -> Export:
    """Roboflow: three split folders, each its own JSON beside its images."""
    categories = [
        {"id": 0, "name": "my-project", "supercategory": "none"},
        {"id": 1, "name": "cat", "supercategory": "my-project"},
        {"id": 2, "name": "dog", "supercategory": "my-project"},
    ]
    splits = {}
    for s, split in enumerate(("train", "valid", "test")):
        images, annotations = [], []
        for i in range(3):  # ids restart at 0 in every split
            h, w = 96 + 16 * i, 128
            name = f"img{i}_jpg.rf.{s}{i}abc.jpg"
            write(root / split / name, jpeg(photo(h, w, 10 * s + i)))
            images.append(
                {
                    "id": i,
                    "license": 1,
                    "file_name": name,
                    "height": h,
                    "width": w,
                    "date_captured": "2024-01-01T00:00:00+00:00",
                    "extra": {"name": f"img{i}.jpg"},
                }
            )
            annotations.append(annotation(2 * i, i, 1, [box_polygon(8, 60, 10, 70)], area=3120.0))
            annotations.append(annotation(2 * i + 1, i, 2, [box_polygon(30, 90, 50, 120)], area=4200.0))
        coco = {
            "info": {"year": "2024"},
            "licenses": [{"id": 1, "name": "CC BY 4.0"}],
            "categories": categories,
            "images": images,
            "annotations": annotations,
        }
        write(root / split / "_annotations.coco.json", json.dumps(coco))
        splits[split] = SplitFiles(root / split / "_annotations.coco.json", root / split)
    return Export(
        root,
        splits,
        {"unused_categories": [0], "parts": {"train": ["train"], "val": ["valid"], "test": ["test"]}},
    )


def cvat(root: Path) -> Export:
    """CVAT / labelme: JPEGImages/ subfolder in file_name, class id 0 real, optional keys missing."""
    categories = [
        {"id": 0, "name": "_background_", "supercategory": None},
        {"id": 1, "name": "person"},
        {"id": 2, "name": "bike", "supercategory": ""},
    ]
    images, annotations = [], []
    for i in range(3):
        h, w = 80, 112
        name = f"JPEGImages/frame_{i:03d}.jpg"
        write(root / name, jpeg(photo(h, w, 100 + i)))
        images.append({"id": i + 1, "file_name": name, "height": h, "width": w})
        ann = {
            "id": 3 * i + 1,
            "image_id": i + 1,
            "category_id": 0,
            "segmentation": [box_polygon(0, 20, 0, 112)],
        }  # no iscrowd, no area, no bbox
        annotations.append(ann)
        annotations.append(
            {
                "id": 3 * i + 2,
                "image_id": i + 1,
                "category_id": 1,
                "segmentation": [box_polygon(10, 70, 20, 50)],
                "iscrowd": 0,
            }
        )
        annotations.append(
            {
                "id": 3 * i + 3,
                "image_id": i + 1,
                "category_id": 2,
                "segmentation": [box_polygon(40, 78, 30, 100)],
                "area": 2660,
            }
        )  # over person
    coco = {
        "type": "instances",
        "categories": categories,
        "images": images,
        "annotations": annotations,
        "licenses": [],
    }
    ann_file = write(root / "annotations" / "instances_default.json", json.dumps(coco))
    return Export(root, {"default": SplitFiles(ann_file, root)}, {"class_of_id_0": 1})


def rle_only(root: Path) -> Export:
    """Detection-format files made by converters: RLE only, ids far above 90, images by coco_url."""
    categories = [
        {"id": 101, "name": "lamp", "supercategory": "furniture"},
        {"id": 250, "name": "sofa", "supercategory": "furniture"},
        {"id": 1203, "name": "zucchini", "supercategory": "food"},
    ]
    images, annotations = [], []
    for i in range(3):
        h, w = 72, 96
        name = f"{i:012d}.jpg"
        write(root / "pics" / name, jpeg(photo(h, w, 200 + i)))
        images.append(
            {"id": 10 + i, "coco_url": f"http://images.example.org/val/{name}", "height": h, "width": w}
        )
        annotations.append(
            annotation(
                0 if i == 0 else 100 + i, 10 + i, 101, encode_compressed_rle(disk_mask(h, w, 30, 30, 20))
            )
        )
        annotations.append(
            annotation(200 + i, 10 + i, 1203, encode_uncompressed_rle(box_mask(h, w, 20, 60, 40, 90)))
        )
        annotations.append(
            annotation(300 + i, 10 + i, 250, encode_uncompressed_rle(box_mask(h, w, 0, 8, 0, 96)), iscrowd=1)
        )
    coco = {"info": {}, "images": images, "annotations": annotations, "categories": categories}
    ann_file = write(root / "annotations" / "instances_val.json", json.dumps(coco))
    write(
        root / "annotations" / "panoptic_val.json",
        json.dumps(
            {
                "images": [],
                "annotations": [{"image_id": 10, "file_name": "x.png", "segments_info": []}],
                "categories": [{"id": 1, "name": "thing", "isthing": 1}],
            }
        ),
    )
    return Export(root, {"val": SplitFiles(ann_file, root / "pics")}, {"annotation_id_0": True})


def attributes(root: Path) -> Export:
    """Fashion datasets: no bbox, attribute lists, images in a sibling folder with unreferenced files."""
    categories = [
        {"id": 1, "name": "shirt", "supercategory": "upperbody"},
        {"id": 2, "name": "sleeve", "supercategory": "upperbody"},
        {"id": 3, "name": "sleeve", "supercategory": "dress"},  # a name shared across supercategories
        {"id": 4, "name": "pants", "supercategory": "lowerbody"},
    ]
    images, annotations = [], []
    for i in range(2):
        h, w = 128, 96
        write(root / "images" / f"look{i}.jpg", jpeg(photo(h, w, 300 + i)))
        images.append({"id": i + 1, "file_name": f"look{i}.jpg", "height": h, "width": w})
        for k, (cat, poly) in enumerate(
            [
                (1, box_polygon(10, 70, 10, 86)),
                (2 + i, box_polygon(20, 60, 0, 20)),
                (4, box_polygon(70, 126, 20, 76)),
            ]
        ):
            annotations.append(
                {
                    "id": 10 * i + k,
                    "image_id": i + 1,
                    "category_id": cat,
                    "segmentation": [poly],
                    "iscrowd": 0,
                    "area": 1.0,
                    "attribute_ids": [k, 7],
                }
            )
    write(root / "images" / "unreferenced.jpg", jpeg(photo(64, 64, 399)))
    coco = {
        "info": {},
        "images": images,
        "annotations": annotations,
        "categories": categories,
        "attributes": [{"id": 7, "name": "plain", "supercategory": "pattern"}],
    }
    ann_file = write(root / "annotations" / "instances_attributes.json", json.dumps(coco))
    return Export(
        root,
        {"train": SplitFiles(ann_file, root / "images")},
        {"names": ["shirt", "sleeve (upperbody)", "sleeve (dress)", "pants"]},
    )


def _png_images(seed: int) -> dict[str, tuple[Image.Image, np.ndarray]]:
    """PNG files of every mode -> (the image to save, the RGB a viewer shows)."""
    rgb = photo(64, 80, seed)
    palette = Image.fromarray(rgb).quantize(16)
    grey = rgb[..., 1]
    wide = grey.astype(np.uint16) * 257 + 100  # 16-bit greys; a viewer shows their high byte
    alpha = np.full((64, 80), 255, np.uint8)
    alpha[:, :20] = 0  # transparent on the left: shown on white
    blended = np.where(alpha[..., None] == 0, 255, rgb).astype(np.uint8)
    return {
        "palette.png": (palette, np.asarray(palette.convert("RGB"))),
        "grey.png": (Image.fromarray(grey), np.repeat(grey[..., None], 3, axis=2)),
        "grey16.png": (Image.fromarray(wide), np.repeat((wide >> 8).astype(np.uint8)[..., None], 3, axis=2)),
        "rgba.png": (Image.fromarray(np.dstack([rgb, alpha]), "RGBA"), blended),
    }


def web_pngs(root: Path) -> Export:
    """Web labelling tools: PNGs of every mode, float polygons, an unannotated image, a name in two splits."""
    categories = [{"id": 1, "name": "leaf"}, {"id": 2, "name": "stem"}]
    splits, viewed = {}, {}
    for s, split in enumerate(("train", "val")):
        images, annotations = [], []
        files = _png_images(s)
        for i, (name, (image, rgb)) in enumerate(sorted(files.items())):
            write(root / split / name, png(image))
            viewed[f"{split}/{name}"] = rgb
            images.append({"id": i + 1, "file_name": name, "height": 64, "width": 80})
            if name != "grey.png" or split != "val":  # val/grey.png has no annotation at all
                annotations.append(
                    annotation(10 * i + 1, i + 1, 1, [[5.25, 4.5, 60.75, 8.2, 50.5, 55.9, 9.1, 40.3]])
                )
                annotations.append(annotation(10 * i + 2, i + 1, 2, [[30.5, 20.25, 78.9, 30.1, 70.2, 62.7]]))
        write(root / split / "not_listed.png", png(Image.fromarray(photo(32, 32, 9))))
        ann_file = write(
            root / "annotations" / f"{split}.json",
            json.dumps({"images": images, "annotations": annotations, "categories": categories}),
        )
        splits[split] = SplitFiles(ann_file, root / split)
    return Export(root, splits, {"viewed": viewed, "unannotated": "val/grey.png"})


def many_classes(root: Path, count: int = 1203) -> Export:
    """LVIS's 1,203 categories, every one used: more classes than a uint8 mask holds, so the masks become
    uint16 with void 65535. Three 160x160 images, each tiling 401 categories as 6x6 boxes on a 5-pixel grid
    (neighbours overlap by a pixel: equal areas, so the later annotation id wins), with a crowd band."""
    categories = [
        {"id": k, "name": f"class {k}", "synonyms": [], "frequency": "r"} for k in range(1, count + 1)
    ]
    images, annotations = [], []
    per_image = -(-count // 3)
    for i in range(3):
        write(root / "images" / f"{i}.jpg", jpeg(photo(160, 160, 500 + i)))
        images.append({"id": i + 1, "file_name": f"{i}.jpg", "height": 160, "width": 160})
        for n, cat in enumerate(range(i * per_image + 1, min((i + 1) * per_image, count) + 1)):
            y0, x0 = 5 * (n // 31), 5 * (n % 31)
            annotations.append(annotation(10_000 * i + n, i + 1, cat, [box_polygon(y0, y0 + 6, x0, x0 + 6)]))
        annotations.append(
            annotation(10_000 * i + 9999, i + 1, 1, [box_polygon(150, 160, 0, 160)], iscrowd=1)
        )
    ann_file = write(
        root / "annotations" / "lvis_v1_val.json",
        json.dumps({"images": images, "annotations": annotations, "categories": categories}),
    )
    return Export(root, {"val": SplitFiles(ann_file, root / "images")}, {"categories": count})


def exif_photo(root: Path) -> Export:
    """A phone photo stored turned (EXIF orientation 6, the JSON giving the upright size), and one whose
    EXIF orientation its JSON size does not confirm (painted as stored)."""
    upright = photo(120, 80, 600)  # portrait, as the user sees it
    write(
        root / "images" / "turned.jpg", jpeg(np.rot90(upright, 1).copy(), exif_orientation=6)
    )  # stored 80x120
    write(root / "images" / "as_stored.jpg", jpeg(photo(80, 120, 601), exif_orientation=6))
    images = [
        {"id": 1, "file_name": "turned.jpg", "height": 120, "width": 80},
        {"id": 2, "file_name": "as_stored.jpg", "height": 80, "width": 120},
    ]
    annotations = [
        annotation(1, 1, 1, [box_polygon(10, 100, 5, 40)]),  # upright coordinates
        annotation(2, 1, 2, [box_polygon(60, 118, 30, 78)]),
        annotation(3, 2, 1, [box_polygon(5, 30, 10, 110)]),
    ]
    ann_file = write(
        root / "annotations" / "instances_phone.json",
        json.dumps(
            {
                "images": images,
                "annotations": annotations,
                "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
            }
        ),
    )
    return Export(
        root, {"phone": SplitFiles(ann_file, root / "images")}, {"turned": "turned.jpg", "upright": upright}
    )


STYLES: dict[str, Callable[[Path], Export]] = {
    "roboflow": roboflow,
    "cvat": cvat,
    "rle_only": rle_only,
    "attributes": attributes,
    "web_pngs": web_pngs,
    "many_classes": many_classes,
    "exif_photo": exif_photo,
}


# --- the reference ----------------------------------------------------------------------------------


def reference_semantic(coco: COCO, image_id: int, class_of: dict[int, int], void: int) -> np.ndarray | None:
    """The semantic mask pycocotools gives: ``annToMask`` of each kept annotation, the larger object on
    top where classes overlap (masks.overlap priority_area with equal priorities; ties by annotation id),
    crowd pixels no object claims void. None when no annotation is kept (the image gets no mask)."""
    info = coco.imgs[image_id]
    anns = sorted(coco.imgToAnns[image_id], key=lambda a: a["id"])
    objects = [
        (int(coco.annToMask(a).sum()), k, a)
        for k, a in enumerate(anns)
        if not a.get("iscrowd", 0) and a["category_id"] in class_of
    ]
    objects = [o for o in objects if o[0] > 0]
    if not objects:
        return None
    semantic = np.zeros((info["height"], info["width"]), np.uint8 if void == 255 else np.uint16)
    for _, _, a in sorted(objects, key=lambda o: (o[0], o[1])):
        semantic[coco.annToMask(a) > 0] = class_of[a["category_id"]]
    for a in anns:
        if a.get("iscrowd", 0) and a["category_id"] in class_of:  # a crowd of an unselected category stays 0
            semantic[(coco.annToMask(a) > 0) & (semantic == 0)] = void
    return semantic


def check_split_masks(split: SplitFiles, semantic_dir: Path, labels_file: Path) -> int:
    """Every mask of one split equals the pycocotools reference, pixel by pixel, class ids mapped through
    labels.json; images with no kept annotation have no mask. Returns the masks checked."""
    labels = json.loads(labels_file.read_text())
    class_of = {c["coco_id"]: c["id"] for c in labels["classes"] if c["id"] > 0}
    coco = COCO()
    coco.dataset = json.loads(split.annotations.read_text())
    for image in coco.dataset["images"]:  # pycocotools needs a file name only to load images, never here
        if "file_name" not in image:
            image["file_name"] = image["coco_url"].rsplit("/", 1)[-1]
    coco.createIndex()
    checked = 0
    for image_id, info in coco.imgs.items():
        expected = reference_semantic(coco, image_id, class_of, labels["void"])
        path = semantic_dir / str(Path(info["file_name"]).with_suffix(".png"))
        if expected is None:
            assert not path.exists(), f"{path}: an image without kept annotations got a mask"
            continue
        got = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert got is not None, f"{path}: no mask"
        assert got.dtype == expected.dtype and got.shape == expected.shape, (path, got.dtype, got.shape)
        np.testing.assert_array_equal(got, expected, err_msg=str(path))
        checked += 1
    return checked

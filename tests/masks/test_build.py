"""The masks stage on synthetic COCO: every edge case with its exact pixels and report entries."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import jpeg_bytes
from pycocotools.coco import COCO

import cocoseg.masks.build as build_module
from cocoseg.acquire.sample import encode_compressed_rle, encode_uncompressed_rle
from cocoseg.core.contents import format_contents
from cocoseg.core.images import TEXT_HEIGHT, colourise
from cocoseg.core.params import MasksConfig
from cocoseg.masks.build import build_masks
from cocoseg.masks.coco import CocoFormatError
from cocoseg.masks.paint import VOID
from cocoseg.masks.split import split_images

H, W = 10, 12
SPLIT = "val2017"
CAT, DOG, CAR = 1, 3, 7  # COCO ids; classes 1, 2, 3 with categories: all


def box(y0: int, y1: int, x0: int, x1: int, h: int = H, w: int = W) -> np.ndarray:
    mask = np.zeros((h, w), np.uint8)
    mask[y0:y1, x0:x1] = 1
    return mask


def box_poly(y0: int, y1: int, x0: int, x1: int) -> list[float]:
    """A rectangle polygon that pycocotools rasterises to exactly rows y0:y1, columns x0:x1."""
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def image(image_id: int, h: int = H, w: int = W) -> dict:
    return {"id": image_id, "file_name": f"{image_id:03d}.jpg", "height": h, "width": w}


def ann(ann_id: int, image_id: int, category_id: int, segmentation: object, iscrowd: int = 0) -> dict:
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": category_id,
        "iscrowd": iscrowd,
        "segmentation": segmentation,
        "area": 0.0,
        "bbox": [0, 0, 0, 0],
    }


IMAGES = [image(i) for i in range(1, 11)] + [image(11, H, W)]  # 11: the file is 2 pixels wider
ANNOTATIONS = [
    ann(101, 1, CAT, [box_poly(1, 4, 1, 4), box_poly(6, 9, 7, 11)]),  # one object, two polygons
    ann(201, 2, DOG, encode_compressed_rle(box(2, 7, 3, 9))),
    ann(202, 2, CAR, encode_uncompressed_rle(box(0, 2, 0, 12))),  # uncompressed RLE, not crowd
    ann(301, 3, CAT, [box_poly(0, 5, 0, 6)]),
    ann(302, 3, CAT, encode_uncompressed_rle(box(3, 10, 4, 12)), iscrowd=1),
    ann(401, 4, DOG, [box_poly(0, 6, 0, 6)]),  # same-class overlap, 36 pixels
    ann(402, 4, DOG, [box_poly(4, 9, 4, 9)]),  # 25 pixels
    ann(501, 5, CAT, [box_poly(0, 6, 0, 8)]),  # different-class overlap, 48 pixels
    ann(502, 5, CAR, [box_poly(3, 9, 5, 11)]),  # 36 pixels, 9 shared with 501
    # image 6 has no annotations
    ann(701, 7, CAT, encode_uncompressed_rle(np.zeros((H, W), np.uint8))),  # empty mask
    ann(702, 7, DOG, [box_poly(1, 3, 1, 3)]),
    ann(801, 8, DOG, [[10.0, 10.0, 20.0, 20.0]]),  # 4-coordinate polygon
    ann(802, 8, DOG, []),  # empty segmentation list
    ann(803, 8, 99, [box_poly(0, 3, 0, 3)]),  # unknown category id
    ann(804, 8, CAR, [box_poly(5, 10, 0, 3)]),
    ann(805, 8, CAR, [box_poly(0, 3, 6, 9)], iscrowd=2),
    ann(901, 9, CAT, [box_poly(0, 3, 0, 3)]),  # image file missing
    ann(1001, 10, CAT, [box_poly(0, 3, 0, 3)]),  # image file truncated
    ann(1101, 11, CAT, [box_poly(0, 10, 10, 14)]),  # lies where only the real file reaches
    ann(9901, 555, CAT, [box_poly(0, 3, 0, 3)]),  # orphan: no such image
]


def _truncated_jpeg() -> bytes:
    data = jpeg_bytes(H, W)
    return data[: len(data) // 2]


FILES = {"009.jpg": None, "010.jpg": _truncated_jpeg(), "011.jpg": jpeg_bytes(H, W + 2)}


@pytest.fixture
def coco_root(make_coco: Callable[..., Path]) -> Path:
    return make_coco(IMAGES, ANNOTATIONS, files=FILES)


def run(coco_root: Path, out: Path, seed: int = 0, **cfg) -> dict:
    return build_masks(coco_root, out, (SPLIT,), MasksConfig(**{"workers": 1, "preview": 0, **cfg}), seed)


def semantic(out: Path, image_id: int) -> np.ndarray:
    m = cv2.imread(str(out / "semantic" / SPLIT / f"{image_id:03d}.png"), cv2.IMREAD_UNCHANGED)
    assert m is not None and m.dtype == np.uint8
    return m


def instance(out: Path, image_id: int) -> np.ndarray:
    m = cv2.imread(str(out / "instance" / SPLIT / f"{image_id:03d}.png"), cv2.IMREAD_UNCHANGED)
    assert m is not None and m.dtype == np.uint16
    return m


def table(out: Path, image_id: int) -> dict:
    lines = (out / "instance" / SPLIT / "instances.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    assert [r["image_id"] for r in rows] == sorted(r["image_id"] for r in rows)  # image order, stable
    (row,) = [r for r in rows if r["image_id"] == image_id]
    assert row["image"] == f"{image_id:03d}"
    return {"image_id": row["image_id"], "instances": row["instances"]}


def files_of(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# --- the default run: every edge case -------------------------------------------------------------


def test_every_category_keeps_the_unused_ones_with_their_class_ids(
    make_coco: Callable[..., Path], tmp_path: Path
) -> None:
    """COCO 2017's subsets keep the 80 classes (every_category, as the stage sets for coco2017 and the
    sample); a user's export drops what nothing uses. Here only the dog is annotated."""
    root = make_coco([image(1)], [ann(101, 1, DOG, [box_poly(1, 4, 1, 4)])])
    used = run(root, tmp_path / "used")
    cfg = MasksConfig(workers=1, preview=0)
    every = build_masks(root, tmp_path / "every", (SPLIT,), cfg, 0, every_category=True)
    names = {
        name: [c["name"] for c in json.loads((tmp_path / name / "labels.json").read_text())["classes"]]
        for name in ("used", "every")
    }
    assert names == {"used": ["background", "dog"], "every": ["background", "cat", "dog", "car"]}
    assert used["categories_unused"] == [{"id": 1, "name": "cat"}, {"id": 7, "name": "car"}]
    assert every["categories_unused"] == []
    assert semantic(tmp_path / "used", 1)[2, 2] == 1
    assert semantic(tmp_path / "every", 1)[2, 2] == 2  # the dog's class id in COCO's full list


def test_report_counts_and_reasons(coco_root: Path, tmp_path: Path) -> None:
    report = run(coco_root, tmp_path / "masks")
    assert report["counts"] == {
        "images": 11,
        "images_written": 8,
        "images_skipped": 3,
        "annotations": 20,
        "annotations_painted": 11,
        "annotations_crowd": 1,
        "annotations_unselected": 0,
        "annotations_skipped": 6,
        "annotations_in_skipped_images": 2,
        "size_mismatches": 1,
        "images_turned_upright": 0,
    }
    skipped_images = {e["image_id"]: e["reason"] for e in report["skipped_images"]}
    assert skipped_images.keys() == {6, 9, 10}
    assert skipped_images[6] == "no kept annotations"
    assert skipped_images[9] == "image file missing"
    assert skipped_images[10].startswith("image file unreadable (")
    assert report["skipped_annotations"] == [
        {"split": SPLIT, "annotation_id": 9901, "image_id": 555, "reason": "image_id 555 is not in images"},
        {"split": SPLIT, "annotation_id": 701, "image_id": 7, "reason": "mask is empty"},
        {
            "split": SPLIT,
            "annotation_id": 801,
            "image_id": 8,
            "reason": "malformed segmentation: polygon 0 has 4 coordinates (need an even number >= 6)",
        },
        {
            "split": SPLIT,
            "annotation_id": 802,
            "image_id": 8,
            "reason": "malformed segmentation: empty segmentation list",
        },
        {"split": SPLIT, "annotation_id": 803, "image_id": 8, "reason": "unknown category id 99"},
        {"split": SPLIT, "annotation_id": 805, "image_id": 8, "reason": "iscrowd must be 0 or 1, got 2"},
    ]
    assert report["notices"] == [
        {
            "split": SPLIT,
            "image_id": 11,
            "file_name": "011.jpg",
            "notice": f"JSON size {H}x{W} differs from the file's {H}x{W + 2}; masks use the file's size",
        }
    ]
    assert json.loads((tmp_path / "masks" / "report.json").read_text()) == report


def test_skipped_images_get_no_files(coco_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "masks"
    run(coco_root, out)
    assert sorted(p.name for p in (out / "semantic" / SPLIT).iterdir()) == [
        f"{i:03d}.png" for i in (1, 2, 3, 4, 5, 7, 8, 11)
    ]
    assert sorted(p.name for p in (out / "instance" / SPLIT).iterdir()) == sorted(
        [*(f"{i:03d}.png" for i in (1, 2, 3, 4, 5, 7, 8, 11)), "instances.jsonl"]
    )
    tables = (out / "instance" / SPLIT / "instances.jsonl").read_text().splitlines()
    assert [json.loads(line)["image_id"] for line in tables] == [1, 2, 3, 4, 5, 7, 8, 11]


def test_polygon_with_several_parts(coco_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "masks"
    run(coco_root, out)
    expected = box(1, 4, 1, 4) | box(6, 9, 7, 11)
    np.testing.assert_array_equal(semantic(out, 1), expected)  # cat is class 1
    np.testing.assert_array_equal(instance(out, 1), expected)
    assert table(out, 1) == {
        "image_id": 1,
        "instances": [
            {"instance": 1, "annotation_id": 101, "category_id": CAT, "class_id": 1, "area": 21, "pixels": 21}
        ],
    }


def test_compressed_and_uncompressed_rle(coco_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "masks"
    run(coco_root, out)
    np.testing.assert_array_equal(semantic(out, 2), 2 * box(2, 7, 3, 9) + 3 * box(0, 2, 0, 12))
    np.testing.assert_array_equal(instance(out, 2), 1 * box(2, 7, 3, 9) + 2 * box(0, 2, 0, 12))


@pytest.mark.parametrize(("crowd", "fill"), [("void", VOID), ("background", 0)])
def test_crowd(coco_root: Path, tmp_path: Path, crowd: str, fill: int) -> None:
    out = tmp_path / "masks"
    report = run(coco_root, out, crowd=crowd)
    obj, crowd_mask = box(0, 5, 0, 6), box(3, 10, 4, 12)
    expected = np.where(obj == 1, 1, np.where(crowd_mask == 1, fill, 0))
    np.testing.assert_array_equal(semantic(out, 3), expected)
    np.testing.assert_array_equal(instance(out, 3), obj)  # crowd regions are never instances
    assert [row["annotation_id"] for row in table(out, 3)["instances"]] == [301]
    assert report["counts"]["annotations_crowd"] == 1


def test_same_class_overlap_is_union(coco_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "masks"
    run(coco_root, out)
    a, b = box(0, 6, 0, 6), box(4, 9, 4, 9)
    np.testing.assert_array_equal(semantic(out, 4), 2 * (a | b))
    np.testing.assert_array_equal(instance(out, 4), np.where(a == 1, 1, 2 * b))  # the larger one on top
    assert [(r["annotation_id"], r["area"], r["pixels"]) for r in table(out, 4)["instances"]] == [
        (401, 36, 36),
        (402, 25, 21),
    ]


@pytest.mark.parametrize(
    ("cfg", "shared_class", "shared_instance"),
    [
        ({}, 1, 1),  # priority_area, no priorities: the larger object (cat, 48 px) wins
        ({"priority": ("car",)}, 3, 2),  # car has priority, whatever its size
        ({"overlap": "smaller_on_top"}, 3, 2),
        ({"overlap": "void"}, VOID, 0),
    ],
)
def test_different_class_overlap(
    coco_root: Path, tmp_path: Path, cfg: dict, shared_class: int, shared_instance: int
) -> None:
    out = tmp_path / "masks"
    run(coco_root, out, **cfg)
    a, b = box(0, 6, 0, 8), box(3, 9, 5, 11)
    shared = (a & b) == 1
    expected = np.where(shared, shared_class, 1 * a + 3 * b)
    np.testing.assert_array_equal(semantic(out, 5), expected)
    np.testing.assert_array_equal(instance(out, 5), np.where(shared, shared_instance, 1 * a + 2 * b))
    pixels = {1: (48, 27), 2: (39, 36), 0: (39, 27)}[shared_instance]
    assert table(out, 5) == {
        "image_id": 5,
        "instances": [
            {
                "instance": 1,
                "annotation_id": 501,
                "category_id": CAT,
                "class_id": 1,
                "area": 48,
                "pixels": pixels[0],
            },
            {
                "instance": 2,
                "annotation_id": 502,
                "category_id": CAR,
                "class_id": 3,
                "area": 36,
                "pixels": pixels[1],
            },
        ],
    }


def test_empty_mask_and_malformed_annotations_are_not_painted(coco_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "masks"
    run(coco_root, out)
    np.testing.assert_array_equal(semantic(out, 7), 2 * box(1, 3, 1, 3))
    np.testing.assert_array_equal(semantic(out, 8), 3 * box(5, 10, 0, 3))
    assert [r["annotation_id"] for r in table(out, 8)["instances"]] == [804]


def test_size_mismatch_uses_file_size(coco_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "masks"
    run(coco_root, out)
    expected = box(0, 10, 10, 14, H, W + 2)
    np.testing.assert_array_equal(semantic(out, 11), expected)
    np.testing.assert_array_equal(instance(out, 11), expected)


def test_keep_empty_images(coco_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "masks"
    report = run(coco_root, out, keep_empty_images=True)
    np.testing.assert_array_equal(semantic(out, 6), np.zeros((H, W), np.uint8))
    np.testing.assert_array_equal(instance(out, 6), np.zeros((H, W), np.uint16))
    assert table(out, 6) == {"image_id": 6, "instances": []}
    assert {e["image_id"] for e in report["skipped_images"]} == {9, 10}
    assert report["counts"]["images_written"] == 9
    assert "val2017/006.jpg" in {
        *json.loads((out / "split.json").read_text())["train"],
        *json.loads((out / "split.json").read_text())["val"],
    }


def test_category_selection(coco_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "masks"
    report = run(coco_root, out, categories=("cat", "car"))  # cat -> 1, car -> 2; dog is left out
    np.testing.assert_array_equal(semantic(out, 2), 2 * box(0, 2, 0, 12))  # the dog is background
    np.testing.assert_array_equal(instance(out, 2), box(0, 2, 0, 12))
    assert table(out, 2)["instances"] == [
        {"instance": 1, "annotation_id": 202, "category_id": CAR, "class_id": 2, "area": 24, "pixels": 24}
    ]
    assert report["counts"]["annotations_unselected"] == 6  # 201, 401, 402, 702, 801, 802
    assert report["counts"]["annotations_painted"] == 7  # 101, 202, 301, 501, 502, 804, 1101
    assert {e["image_id"]: e["reason"] for e in report["skipped_images"]}.keys() == {4, 6, 7, 9, 10}
    assert json.loads((out / "labels.json").read_text())["classes"][1:] == [
        {"id": 1, "coco_id": CAT, "name": "cat", "color": [128, 0, 0]},
        {"id": 2, "coco_id": CAR, "name": "car", "color": [0, 128, 0]},
    ]


def test_labels_json(coco_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "masks"
    run(coco_root, out)
    assert json.loads((out / "labels.json").read_text()) == {
        "void": 255,
        "classes": [
            {"id": 0, "coco_id": None, "name": "background", "color": [0, 0, 0]},
            {"id": 1, "coco_id": 1, "name": "cat", "color": [128, 0, 0]},
            {"id": 2, "coco_id": 3, "name": "dog", "color": [0, 128, 0]},
            {"id": 3, "coco_id": 7, "name": "car", "color": [128, 128, 0]},
        ],
    }


def test_split_is_deterministic_disjoint_and_complete(coco_root: Path, tmp_path: Path) -> None:
    run(coco_root, tmp_path / "a", seed=3)
    run(coco_root, tmp_path / "b", seed=3)
    split = json.loads((tmp_path / "a" / "split.json").read_text())
    assert split == json.loads((tmp_path / "b" / "split.json").read_text())
    written = {f"{SPLIT}/{i:03d}.jpg" for i in (1, 2, 3, 4, 5, 7, 8, 11)}
    assert set(split["train"]) | set(split["val"]) == written
    assert not set(split["train"]) & set(split["val"])
    assert len(split["val"]) == 2  # round(0.2 * 8)
    assert split["train"] == sorted(split["train"]) and split["val"] == sorted(split["val"])


def test_split_images() -> None:
    items = [f"val2017/{i}.jpg" for i in range(10)]
    split = split_images(items, 0.3, seed=0)
    assert split == split_images(list(reversed(items)), 0.3, seed=0)  # input order does not matter
    assert len(split["val"]) == 3 and sorted(split["train"] + split["val"]) == sorted(items)
    assert len({split_images(items, 0.1, s)["val"][0] for s in range(10)}) > 1  # the seed matters
    assert split_images(items[:2], 0.01, 0) in (
        {"train": [items[0]], "val": [items[1]]},
        {"train": [items[1]], "val": [items[0]]},
    )
    assert split_images(items[:2], 0.99, 0)["train"]  # train never empty with 2+ images
    assert split_images(items[:1], 0.2, 0) == {"train": [], "val": [items[0]]}


def test_split_images_coco_keeps_cocos_own_split_and_auto_picks_it_when_both_are_there() -> None:
    train = [f"train2017/{i}.jpg" for i in range(6)]
    val = [f"val2017/{i}.jpg" for i in range(3)]
    coco = {"train": train, "val": val}
    assert split_images(val + train, 0.2, 0, "coco") == coco  # val_fraction and seed play no part
    assert split_images(train + val, 0.5, 7, "auto") == coco
    pooled = split_images(train + val, 0.2, 0, "pooled")
    assert pooled != coco and len(pooled["val"]) == 2  # round(0.2 * 9), drawn from both splits
    assert split_images(val, 0.3, 0, "auto") == split_images(val, 0.3, 0)  # one split: pooled, as before
    with pytest.raises(
        CocoFormatError, match=r"masks.split: the train part \(train2017\) has no written images"
    ):
        split_images(val, 0.3, 0, "coco")


def test_build_with_train_and_val_splits_validates_on_val2017_by_default(make_coco, tmp_path: Path) -> None:
    root = make_coco(
        [image(1), image(2)], [ann(1, 1, CAT, [box_poly(0, 4, 0, 4)]), ann(2, 2, DOG, [box_poly(0, 4, 0, 4)])]
    )
    train_annotations = [ann(10 + i, i, CAT, [box_poly(1, 5, 1, 5)]) for i in (7, 8, 9)]
    make_coco([image(7), image(8), image(9)], train_annotations, split="train2017")
    cfg = MasksConfig(workers=1, preview=0)
    build_masks(root, tmp_path / "out", ("train2017", "val2017"), cfg, seed=0)
    split = json.loads((tmp_path / "out" / "split.json").read_text())
    assert split == {
        "train": ["train2017/007.jpg", "train2017/008.jpg", "train2017/009.jpg"],
        "val": ["val2017/001.jpg", "val2017/002.jpg"],
    }
    pooled_cfg = dataclasses.replace(cfg, split="pooled")
    build_masks(root, tmp_path / "pooled", ("train2017", "val2017"), pooled_cfg, seed=0)
    pooled = json.loads((tmp_path / "pooled" / "split.json").read_text())
    assert sorted(pooled["train"] + pooled["val"]) == sorted(split["train"] + split["val"])
    assert len(pooled["val"]) == 1  # round(0.2 * 5)


def test_outputs_are_byte_identical_across_runs_and_worker_counts(coco_root: Path, tmp_path: Path) -> None:
    run(coco_root, tmp_path / "a", preview=2)
    run(coco_root, tmp_path / "b", preview=2)
    run(coco_root, tmp_path / "c", preview=2, workers=2)  # 11 images >= 2 * workers: a process pool
    a = files_of(tmp_path / "a")
    assert len([k for k in a if k.startswith("preview/")]) == 2
    assert a == files_of(tmp_path / "b")
    assert a == files_of(tmp_path / "c")


def manifest_rows(out: Path) -> dict[str, tuple[str, str]]:
    """manifest.tsv as {item: (image hash, semantic mask hash)}, after checking its header and order."""
    header, *lines = (out / "manifest.tsv").read_text().splitlines()
    assert header == "item\timage_sha256_128\tsemantic_sha256_128"
    rows = [line.split("\t") for line in lines]
    assert [row[0] for row in rows] == sorted(row[0] for row in rows)
    return {item: (image_hash, mask_hash) for item, image_hash, mask_hash in rows}


def sha256_128(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:32]


def test_manifest_hashes_every_written_image_and_its_mask(coco_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "masks"
    run(coco_root, out)
    rows = manifest_rows(out)
    split = json.loads((out / "split.json").read_text())
    assert sorted(rows) == sorted(split["train"] + split["val"])  # the written images, no skipped one
    for item, (image_hash, mask_hash) in rows.items():
        assert image_hash == sha256_128(coco_root / item)
        assert mask_hash == sha256_128(out / "semantic" / SPLIT / item.split("/")[1].replace(".jpg", ".png"))


def test_manifest_is_byte_identical_across_builds_and_follows_one_image_byte(
    coco_root: Path, tmp_path: Path
) -> None:
    run(coco_root, tmp_path / "a")
    run(coco_root, tmp_path / "b")
    assert (tmp_path / "a" / "manifest.tsv").read_bytes() == (tmp_path / "b" / "manifest.tsv").read_bytes()

    # One byte of one image: the low byte of the JFIF header's horizontal density. The pixels, and so the
    # masks, stay the same; only the manifest's hash of that image's bytes changes.
    path = coco_root / SPLIT / "001.jpg"
    data = bytearray(path.read_bytes())
    assert data[6:11] == b"JFIF\0"
    data[15] ^= 1
    path.write_bytes(bytes(data))
    run(coco_root, tmp_path / "c")
    before, after = manifest_rows(tmp_path / "a"), manifest_rows(tmp_path / "c")
    assert files_of(tmp_path / "c" / "semantic") == files_of(tmp_path / "a" / "semantic")
    changed = {item for item in before if before[item] != after[item]}
    assert changed == {f"{SPLIT}/001.jpg"}
    assert after[f"{SPLIT}/001.jpg"] == (sha256_128(path), before[f"{SPLIT}/001.jpg"][1])


def list_contents(coco_root: Path, digests: dict[str, str]) -> None:
    """Write coco_root/contents.tsv as extract does: after the files it lists, so newer than they are."""
    (coco_root / "contents.tsv").write_text(format_contents(digests))


def test_manifest_takes_image_digests_from_contents_tsv(coco_root: Path, tmp_path: Path) -> None:
    """Extract lists each file's digest; the masks stage takes it from there instead of hashing the
    image again. Shown with digests that are not the files' own, which only the list can have given."""
    images = sorted((coco_root / SPLIT).iterdir())
    listed = {f"{SPLIT}/{p.name}": f"{k:032x}" for k, p in enumerate(images)}
    list_contents(coco_root, listed)
    out = tmp_path / "masks"
    run(coco_root, out)
    rows = manifest_rows(out)
    assert {item: image_hash for item, (image_hash, _) in rows.items()} == {
        item: listed[item] for item in rows
    }

    # an image changed after the list was written (its mtime is later) is hashed afresh; so is one the
    # list leaves out
    touched = coco_root / SPLIT / "001.jpg"
    os.utime(touched, ns=(time.time_ns() + 10**9,) * 2)
    del listed[f"{SPLIT}/002.jpg"]
    list_contents(coco_root, listed)
    os.utime(coco_root / "contents.tsv", ns=(time.time_ns(),) * 2)
    run(coco_root, tmp_path / "again")
    again = manifest_rows(tmp_path / "again")
    assert again[f"{SPLIT}/001.jpg"][0] == sha256_128(touched)
    assert again[f"{SPLIT}/002.jpg"][0] == sha256_128(coco_root / SPLIT / "002.jpg")
    assert {
        item: row for item, row in again.items() if item not in (f"{SPLIT}/001.jpg", f"{SPLIT}/002.jpg")
    } == {item: row for item, row in rows.items() if item not in (f"{SPLIT}/001.jpg", f"{SPLIT}/002.jpg")}


def test_a_contents_tsv_of_another_format_is_not_used(coco_root: Path, tmp_path: Path) -> None:
    (coco_root / "contents.tsv").write_text(
        "path\tmd5\n" + "".join(f"{SPLIT}/{p.name}\t{0:032x}\n" for p in (coco_root / SPLIT).iterdir())
    )
    out = tmp_path / "masks"
    run(coco_root, out)
    for item, (image_hash, _) in manifest_rows(out).items():
        assert image_hash == sha256_128(coco_root / item)


def test_previews(coco_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "masks"
    run(coco_root, out, preview=3)
    previews = sorted((out / "preview").iterdir())
    assert len(previews) == 3
    for path in previews:
        assert path.stem in {f"{i:03d}" for i in (1, 2, 3, 4, 5, 7, 8, 11)}
        panel = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        sem = cv2.imread(str(out / "semantic" / SPLIT / f"{path.stem}.png"), cv2.IMREAD_UNCHANGED)
        h, w = sem.shape
        # captions, then image | mask | overlay with 4-pixel gaps, then a legend of the classes present
        assert panel.shape[1] == 3 * w + 2 * 4 and panel.shape[0] >= TEXT_HEIGHT + h + TEXT_HEIGHT
        np.testing.assert_array_equal(
            panel[TEXT_HEIGHT : TEXT_HEIGHT + h, w + 4 : 2 * w + 4], colourise(sem, 4)
        )


def test_preview_folder_exists_even_when_empty(coco_root: Path, tmp_path: Path) -> None:
    run(coco_root, tmp_path / "masks", preview=0)  # dvc.yaml declares the folder as an output
    assert (tmp_path / "masks" / "preview").is_dir()
    assert list((tmp_path / "masks" / "preview").iterdir()) == []


def test_old_output_is_replaced_whole(coco_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "masks"
    out.mkdir()
    (out / "stale.txt").write_text("from an older run")
    run(coco_root, out)
    assert not (out / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["coco", "masks"]


def test_interrupted_run_keeps_previous_output(
    coco_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "masks"
    run(coco_root, out)
    before = files_of(out)
    real = build_module.process_image

    def failing(settings, image, *rest):  # runs in the worker process, forked with this patch
        if image["id"] > 4:
            raise RuntimeError("killed")
        return real(settings, image, *rest)

    monkeypatch.setattr(build_module, "process_image", failing)
    with pytest.raises(RuntimeError, match="killed"):
        run(coco_root, out, overlap="void")
    assert files_of(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["coco", "masks"]  # no temporary folder left


def test_no_image_with_masks_is_an_error(make_coco: Callable[..., Path], tmp_path: Path) -> None:
    root = make_coco(
        [image(1), image(2)], [ann(1, 9, CAT, [box_poly(0, 3, 0, 3)])]
    )  # an annotation of no image
    with pytest.raises(CocoFormatError, match=r"no image produced a mask; .*'reason': 'no kept annotations'"):
        run(root, tmp_path / "masks")
    assert not (tmp_path / "masks").exists()


def test_splits_with_different_categories_fail(make_coco: Callable[..., Path], tmp_path: Path) -> None:
    root = make_coco([image(1)], [ann(1, 1, CAT, [box_poly(0, 3, 0, 3)])])
    make_coco(
        [image(1)],
        [ann(1, 1, CAT, [box_poly(0, 3, 0, 3)])],
        split="train2017",
        categories=[{"id": 1, "name": "cat"}],
    )
    with pytest.raises(
        CocoFormatError,
        match=r"instances_val2017\.json: categories differ from .*"
        r"instances_train2017\.json",
    ):
        build_masks(root, tmp_path / "masks", ("train2017", SPLIT), MasksConfig(workers=1, preview=0), 0)


# --- the generated sample against pycocotools -----------------------------------------------------


def test_sample_masks_equal_ann_to_mask(sample_coco: Path, tmp_path: Path) -> None:
    """On every pixel covered by exactly one kept object and no crowd region, masks equal annToMask."""
    out = tmp_path / "masks"
    report = build_masks(sample_coco, out, (SPLIT,), MasksConfig(workers=1, preview=0), 42)
    coco = COCO(str(sample_coco / "annotations" / f"instances_{SPLIT}.json"))
    cat_ids = sorted(c["id"] for c in coco.dataset["categories"])
    classes = {cat_id: k + 1 for k, cat_id in enumerate(cat_ids)}
    skipped = {e["annotation_id"] for e in report["skipped_annotations"]}
    checked_pixels = checked_images = 0
    tables = {
        json.loads(line)["image"]: json.loads(line)["instances"]
        for line in (out / "instance" / SPLIT / "instances.jsonl").read_text().splitlines()
    }
    for image_id, img in coco.imgs.items():
        stem = Path(img["file_name"]).stem
        if not (out / "semantic" / SPLIT / f"{stem}.png").exists():
            continue
        sem = cv2.imread(str(out / "semantic" / SPLIT / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
        inst = cv2.imread(str(out / "instance" / SPLIT / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
        rows = tables[stem]
        kept = {r["annotation_id"]: r["instance"] for r in rows}
        h, w = sem.shape
        cover = np.zeros((h, w), np.int32)
        crowd = np.zeros((h, w), bool)
        masks = {}
        for a in coco.imgToAnns[image_id]:
            if a["id"] in skipped:
                continue
            m = coco.annToMask(a)[:h, :w]  # image 10's JSON is wider than its file
            assert m.shape == (h, w)
            if a["iscrowd"]:
                crowd |= m > 0
            else:
                assert a["id"] in kept, f"annotation {a['id']} neither painted nor reported"
                masks[a["id"]] = m
                cover += m
        assert set(kept) == set(masks)
        for ann_id, m in masks.items():
            only = (m > 0) & (cover == 1) & ~crowd
            cat = coco.anns[ann_id]["category_id"]
            assert (sem[only] == classes[cat]).all(), f"annotation {ann_id}"
            assert (inst[only] == kept[ann_id]).all(), f"annotation {ann_id}"
            checked_pixels += int(only.sum())
        free = (cover == 0) & ~crowd
        assert (sem[free] == 0).all() and (inst[free] == 0).all()
        assert (sem[(cover == 0) & crowd] == VOID).all()
        checked_images += 1
    assert checked_images == report["counts"]["images_written"] == 61
    assert checked_pixels > 10_000


def test_sample_report(sample_coco: Path, tmp_path: Path) -> None:
    report = build_masks(
        sample_coco,
        tmp_path / "masks",
        (SPLIT,),
        dataclasses.replace(MasksConfig(), workers=1, preview=0),
        42,
    )
    assert {e["image_id"]: e["reason"].split(" (")[0] for e in report["skipped_images"]} == {
        3: "no kept annotations",
        7: "image file missing",
        8: "image file unreadable",
    }
    reasons = {e["image_id"]: [] for e in report["skipped_annotations"]}
    for e in report["skipped_annotations"]:
        reasons[e["image_id"]].append(e["reason"])
    assert reasons == {
        4: ["mask is empty"],
        5: [
            "malformed segmentation: polygon 0 has 4 coordinates (need an even number >= 6)",
            "malformed segmentation: empty segmentation list",
            "unknown category id 99",
        ],
    }
    assert [n["image_id"] for n in report["notices"]] == [10]
    assert report["counts"]["annotations_crowd"] == 1


def test_an_image_folder_named_like_the_instance_table_is_refused(
    make_coco: Callable[..., Path], tmp_path: Path
) -> None:
    root = make_coco([image(1)], [ann(1, 1, CAT, [box_poly(0, 3, 0, 3)])])
    data = json.loads((root / "annotations" / "instances_val2017.json").read_text())
    data["images"][0]["file_name"] = "instances.jsonl/001.jpg"
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(data))
    with pytest.raises(CocoFormatError, match=r"lies in a folder named instances.jsonl"):
        run(root, tmp_path / "masks")
    assert not (tmp_path / "masks").exists()

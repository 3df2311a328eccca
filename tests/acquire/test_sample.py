"""The offline sample: reproducible archives that contain every edge case the masks stage handles."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cocoseg.acquire.sample import (
    CATEGORIES,
    EDGE_CASES,
    UNKNOWN_CATEGORY_ID,
    build_sample,
    write_sample_archives,
)
from cocoseg.core.params import SampleConfig

CFG = SampleConfig()  # the shipped size: 64 images


@pytest.fixture(scope="module")
def sample() -> tuple[dict, dict[str, bytes]]:
    return build_sample(CFG, seed=42)


def by_image(coco: dict) -> dict[int, list[dict]]:
    anns: dict[int, list[dict]] = {im["id"]: [] for im in coco["images"]}
    for a in coco["annotations"]:
        anns[a["image_id"]].append(a)
    return anns


def test_archives_are_byte_identical_for_a_seed_and_differ_for_another(tmp_path: Path) -> None:
    paths = {}
    for name, seed in (("a", 42), ("b", 42), ("c", 43)):
        (tmp_path / name).mkdir()
        paths[name] = write_sample_archives(tmp_path / name, CFG, seed)
    assert [p.name for p in paths["a"]] == ["val2017.zip", "annotations_trainval2017.zip"]
    for pa, pb, pc in zip(paths["a"], paths["b"], paths["c"], strict=False):
        assert pa.read_bytes() == pb.read_bytes()
        assert pa.read_bytes() != pc.read_bytes()
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [
        "annotations_trainval2017.zip",
        "manifest.json",
        "val2017.zip",
    ]
    assert json.loads((tmp_path / "a" / "manifest.json").read_text())["archives"] == [
        "annotations_trainval2017.zip",
        "val2017.zip",
    ]


def test_archive_layout(tmp_path: Path, sample: tuple[dict, dict[str, bytes]]) -> None:
    coco, files = sample
    write_sample_archives(tmp_path, CFG, 42)
    with zipfile.ZipFile(tmp_path / "annotations_trainval2017.zip") as zf:
        assert zf.namelist() == ["annotations/", "annotations/instances_val2017.json"]
        assert json.loads(zf.read("annotations/instances_val2017.json")) == coco
    with zipfile.ZipFile(tmp_path / "val2017.zip") as zf:
        names = zf.namelist()
        assert names[0] == "val2017/"
        assert names[1:] == [f"val2017/{n}" for n in sorted(files)]
        assert zf.testzip() is None


def test_shape_of_the_sample(sample: tuple[dict, dict[str, bytes]]) -> None:
    coco, files = sample
    assert [im["id"] for im in coco["images"]] == list(range(1, 65))
    assert len(files) == 63  # image 7 is left out
    ann_ids = [a["id"] for a in coco["annotations"]]
    assert ann_ids == list(range(1, len(ann_ids) + 1))
    for im in coco["images"]:
        if im["file_name"] in files and im["id"] not in (8, 10):
            with Image.open(io.BytesIO(files[im["file_name"]])) as pil:
                assert (pil.height, pil.width) == (im["height"], im["width"])
                assert CFG.min_size <= min(pil.size) <= max(pil.size) <= CFG.max_size


def test_categories(sample: tuple[dict, dict[str, bytes]]) -> None:
    coco, _ = sample
    assert len(coco["categories"]) >= 3
    assert all(isinstance(c["name"], str) and c["name"] for c in coco["categories"])
    assert [c["id"] for c in coco["categories"]] == [1, 3, 7]  # not contiguous, as in real COCO
    assert coco["categories"] == CATEGORIES


def test_every_edge_case_is_present(sample: tuple[dict, dict[str, bytes]]) -> None:
    coco, files = sample
    anns = by_image(coco)
    images = {im["id"]: im for im in coco["images"]}
    assert set(EDGE_CASES) == set(range(1, 11))

    # 1: two disks of the same class overlapping
    assert [a["category_id"] for a in anns[1]] == [1, 1]
    # 2: a square and a disk (different classes)
    assert sorted(a["category_id"] for a in anns[2]) == [1, 3]
    # 3: no annotations
    assert anns[3] == [] and images[3]["file_name"] in files
    # 4: an empty RLE
    empty = [a for a in anns[4] if isinstance(a["segmentation"], dict) and a["area"] == 0]
    assert len(empty) == 1
    assert empty[0]["segmentation"]["counts"] == [images[4]["height"] * images[4]["width"]]
    # 5: the malformed ones
    segs = [(a["category_id"], a["segmentation"]) for a in anns[5]]
    assert (3, [[10.0, 10.0, 20.0, 20.0]]) in segs  # 4-coordinate polygon
    assert (3, []) in segs  # empty segmentation list
    assert UNKNOWN_CATEGORY_ID in [c for c, _ in segs]
    assert UNKNOWN_CATEGORY_ID not in {c["id"] for c in CATEGORIES}
    # 6: a crowd region as uncompressed RLE beside a normal object
    crowd = [a for a in anns[6] if a["iscrowd"] == 1]
    assert len(crowd) == 1 and isinstance(crowd[0]["segmentation"]["counts"], list)
    assert [a["iscrowd"] for a in anns[6]].count(0) == 1
    # 7: listed but missing from the archive
    assert images[7]["file_name"] not in files and anns[7]
    # 8: a truncated JPEG
    data = files[images[8]["file_name"]]
    assert data.startswith(b"\xff\xd8") and not data.endswith(b"\xff\xd9")
    with pytest.raises(OSError), Image.open(io.BytesIO(data)) as pil:
        pil.load()
    # 9: one object made of two polygons
    assert len(anns[9]) == 1
    assert isinstance(anns[9][0]["segmentation"], list) and len(anns[9][0]["segmentation"]) == 2
    # 10: JSON size differs from the file
    with Image.open(io.BytesIO(files[images[10]["file_name"]])) as pil:
        assert (pil.height, pil.width) != (images[10]["height"], images[10]["width"])


def test_all_segmentation_forms_occur(sample: tuple[dict, dict[str, bytes]]) -> None:
    coco, _ = sample
    normal = [a for a in coco["annotations"] if a["iscrowd"] == 0 and a["area"] > 0 and a["image_id"] != 5]
    string_rle = [
        a
        for a in normal
        if isinstance(a["segmentation"], dict) and isinstance(a["segmentation"]["counts"], str)
    ]
    list_rle = [
        a
        for a in normal
        if isinstance(a["segmentation"], dict) and isinstance(a["segmentation"]["counts"], list)
    ]
    multi = [a for a in normal if isinstance(a["segmentation"], list) and len(a["segmentation"]) > 1]
    assert string_rle and list_rle and multi


def test_uncompressed_rles_are_well_formed(sample: tuple[dict, dict[str, bytes]]) -> None:
    coco, _ = sample
    images = {im["id"]: im for im in coco["images"]}
    for a in coco["annotations"]:
        seg = a["segmentation"]
        if isinstance(seg, dict) and isinstance(seg["counts"], list):
            im = images[a["image_id"]]
            assert sum(seg["counts"]) == seg["size"][0] * seg["size"][1]
            if a["image_id"] != 10:
                assert seg["size"] == [im["height"], im["width"]]


def test_images_are_not_blank(sample: tuple[dict, dict[str, bytes]]) -> None:
    coco, files = sample
    with Image.open(io.BytesIO(files[coco["images"][0]["file_name"]])) as pil:
        pixels = np.asarray(pil.convert("RGB"))
    assert pixels.std() > 5

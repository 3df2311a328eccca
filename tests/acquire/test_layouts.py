"""The layout finder: each export style, what it must ignore, and the one-line error when nothing matches."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from local_exports import coco_json, write_coco_layout, write_roboflow, write_split

from cocoseg.acquire import layouts
from cocoseg.acquire.layouts import (
    Layout,
    LayoutError,
    SplitSource,
    find_folder_layout,
    find_layout,
    scan_json,
)


def splits_of(layout: Layout) -> dict[str, tuple[str, str]]:
    return {name: (s.annotations, s.images) for name, s in layout.splits.items()}


def test_roboflow_three_splits(tmp_path: Path) -> None:
    layout = find_folder_layout(write_roboflow(tmp_path / "export"))
    assert layout.style == "roboflow"
    assert splits_of(layout) == {
        split: (f"{split}/_annotations.coco.json", split) for split in ("test", "train", "valid")
    }


def test_roboflow_inside_a_top_folder_with_macos_leftovers(tmp_path: Path) -> None:
    root = tmp_path / "export"
    write_roboflow(root / "My-Project-2", {"train": 2, "valid": 1})
    (root / "__MACOSX" / "My-Project-2" / "train").mkdir(parents=True)
    (root / "__MACOSX" / "My-Project-2" / "train" / "._annotations.coco.json").write_bytes(b"\0\x05binary")
    (root / "My-Project-2" / ".DS_Store").write_bytes(b"\0")
    layout = find_folder_layout(root)
    assert splits_of(layout) == {
        "train": ("My-Project-2/train/_annotations.coco.json", "My-Project-2/train"),
        "valid": ("My-Project-2/valid/_annotations.coco.json", "My-Project-2/valid"),
    }


@pytest.mark.parametrize("images_in", ["{split}", "images/{split}"])
def test_coco_layout(tmp_path: Path, images_in: str) -> None:
    root = write_coco_layout(tmp_path / "export", {"train2017": 2, "val2017": 1}, images_in)
    (root / "annotations" / "captions_val2017.json").write_text(json.dumps({"images": [], "annotations": []}))
    layout = find_folder_layout(root)
    assert layout.style == "coco"
    assert splits_of(layout) == {
        s: (f"annotations/instances_{s}.json", images_in.format(split=s)) for s in ("train2017", "val2017")
    }


def test_cvat_one_json_and_an_images_folder_with_subfolders(tmp_path: Path) -> None:
    root = tmp_path / "cvat"
    write_split(
        root / "annotations" / "instances_default.json", root / "images", ["JPEGImages/a.jpg", "b.jpg"]
    )
    assert splits_of(find_folder_layout(root)) == {
        "default": ("annotations/instances_default.json", "images")
    }


def test_label_studio_file_names_relative_to_the_json(tmp_path: Path) -> None:
    root = tmp_path / "project-1-at-2024"
    write_split(root / "result.json", root, ["images/0a1b-x.jpg", "images/0a1c-y.jpg"])
    layout = find_folder_layout(root)
    assert (layout.style, splits_of(layout)) == ("single json", {"result": ("result.json", "")})


def test_labelme2coco_and_a_labelme_json_per_image_beside(tmp_path: Path) -> None:
    root = tmp_path / "out"
    write_split(root / "annotations.json", root, ["JPEGImages/1.jpg", "JPEGImages/2.jpg"])
    (root / "JPEGImages" / "1.json").write_text(
        json.dumps({"version": "5.0", "shapes": [], "imagePath": "1.jpg"})
    )
    assert splits_of(find_folder_layout(root)) == {"annotations": ("annotations.json", "")}


def test_sibling_images_folder_and_split_named_jsons(tmp_path: Path) -> None:
    """Fashion sets: annotations/<split>.json with images in a sibling images/ (or images/<split>/),
    unreferenced images in it, and a JSON of another format beside."""
    root = tmp_path / "fashion"
    write_split(root / "annotations" / "train.json", root / "images", ["t1.jpg", "t2.jpg"])
    write_split(root / "annotations" / "val.json", root / "images", ["v1.jpg"])
    (root / "images" / "unlisted.jpg").write_bytes(b"x")
    (root / "annotations" / "createml.json").write_text(json.dumps([{"image": "t1.jpg", "annotations": []}]))
    (root / "annotations" / "panoptic_val.json").write_text(
        json.dumps(
            {"images": [], "annotations": [{"file_name": "v1.png", "segments_info": []}], "categories": []}
        )
    )
    layout = find_folder_layout(root)
    assert splits_of(layout) == {
        "train": ("annotations/train.json", "images"),
        "val": ("annotations/val.json", "images"),
    }


def test_the_same_file_name_in_two_split_folders(tmp_path: Path) -> None:
    root = tmp_path / "x"
    write_split(root / "annotations" / "train.json", root / "images" / "train", ["a.jpg"])
    write_split(root / "annotations" / "val.json", root / "images" / "val", ["a.jpg"])
    assert splits_of(find_folder_layout(root)) == {
        "train": ("annotations/train.json", "images/train"),
        "val": ("annotations/val.json", "images/val"),
    }


def test_images_named_by_coco_url_only(tmp_path: Path) -> None:
    root = tmp_path / "lvis"
    data = coco_json(["000000000139.jpg"])
    data["images"] = [
        {
            "id": 0,
            "width": 32,
            "height": 32,
            "coco_url": "http://images.cocodataset.org/val2017/000000000139.jpg",
        }
    ]
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "lvis_v1_val.json").write_text(json.dumps(data))
    (root / "val2017").mkdir()
    (root / "val2017" / "000000000139.jpg").write_bytes(b"x")
    assert splits_of(find_folder_layout(root)) == {"lvis_v1_val": ("annotations/lvis_v1_val.json", "val2017")}


def test_a_folder_without_a_coco_file_lists_what_it_found(tmp_path: Path) -> None:
    root = tmp_path / "yolo"
    (root / "images").mkdir(parents=True)
    (root / "images" / "a.jpg").write_bytes(b"x")
    (root / "labels.json").write_text("[1, 2]")
    (root / "notes.json").write_text("{not json")
    with pytest.raises(LayoutError) as err:
        find_folder_layout(root)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(
        f"{root}: no COCO export layout recognised: found 2 JSON file(s): labels.json (not "
        f"COCO instances); notes.json (not COCO instances), 1 image(s) in images/; expected "
    )


def test_a_coco_json_whose_images_are_nowhere_is_said_so(tmp_path: Path) -> None:
    root = tmp_path / "x"
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "instances_train.json").write_text(json.dumps(coco_json(["a.jpg"])))
    (root / "photos").mkdir()
    (root / "photos" / "b.jpg").write_bytes(b"x")
    with pytest.raises(
        LayoutError,
        match=r"found 1 JSON file\(s\): annotations/instances_train.json \(COCO, but "
        r"none of its images is in the export\), 1 image\(s\) in photos/;",
    ):
        find_folder_layout(root)


def test_two_files_for_one_split_and_an_unusable_name_are_refused() -> None:
    files = [
        "a/train/_annotations.coco.json",
        "a/train/x.jpg",
        "b/train/_annotations.coco.json",
        "b/train/x.jpg",
    ]
    with pytest.raises(
        LayoutError,
        match=r"two annotation files make a split named 'train': "
        r"a/train/_annotations.coco.json and b/train/_annotations.coco.json",
    ):
        find_layout(files, {files[0]: ["x.jpg"], files[2]: ["x.jpg"]})
    files = ["my data.json", "images/x.jpg"]
    with pytest.raises(
        LayoutError, match=r"my data.json \(COCO, but its split name 'my data' must be letters"
    ):
        find_layout(files, {"my data.json": ["x.jpg"]})


def test_find_layout_is_pure_and_prefers_roboflow_over_other_jsons() -> None:
    files = [
        "train/_annotations.coco.json",
        "train/a.jpg",
        "train/other.json",
        "valid/_annotations.coco.json",
        "valid/b.jpg",
    ]
    names = {
        "train/_annotations.coco.json": ["a.jpg"],
        "train/other.json": ["a.jpg"],
        "valid/_annotations.coco.json": ["b.jpg"],
    }
    assert find_layout(files, names) == Layout(
        "roboflow", {"train": SplitSource(files[0], "train"), "valid": SplitSource(files[3], "valid")}
    )


def test_a_large_json_is_judged_by_its_head(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(layouts, "FULL_PARSE_BYTES", 100)
    big = coco_json([f"d/{i}.jpg" for i in range(80)] + ['q"uote.jpg'])
    (tmp_path / "big.json").write_text(json.dumps(big))
    assert scan_json(tmp_path / "big.json") == tuple(f"d/{i}.jpg" for i in range(50))
    panoptic = {"images": [], "annotations": [{"segments_info": [], "file_name": "x.png"}] * 20}
    (tmp_path / "panoptic.json").write_text(json.dumps(panoptic))
    (tmp_path / "list.json").write_text(json.dumps([{"images": []}] * 20))
    assert scan_json(tmp_path / "panoptic.json") is None and scan_json(tmp_path / "list.json") is None
    monkeypatch.setattr(layouts, "SAMPLE_NAMES", 100)
    assert scan_json(tmp_path / "big.json")[-1] == 'q"uote.jpg'  # JSON escapes decoded

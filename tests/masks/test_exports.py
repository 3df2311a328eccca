"""Every export style of tests/exports.py, made into masks by the library (the masks stage's layout) and by
``cocoseg prepare --ann`` (flat, one file at a time), each mask checked pixel by pixel against pycocotools."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from exports import STYLES, Export, check_split_masks

from cocoseg import cli
from cocoseg.core.images import read_image
from cocoseg.core.params import MasksConfig
from cocoseg.masks.build import SplitSource, build_from_sources

CFG = MasksConfig(workers=1, preview=2)


def build_pipeline_layout(export: Export, out: Path, **cfg: object) -> dict:
    sources = [SplitSource(name, files.annotations, files.images) for name, files in export.splits.items()]
    config = MasksConfig(**{"workers": 1, "preview": 2, **cfg})
    return build_from_sources(sources, out, config, seed=0, contents=None)


@pytest.fixture(params=sorted(STYLES))
def export(request: pytest.FixtureRequest, tmp_path: Path) -> Export:
    return STYLES[request.param](tmp_path / request.param)


def test_every_style_matches_pycocotools_in_the_pipeline_layout(export: Export, tmp_path: Path) -> None:
    report = build_pipeline_layout(export, tmp_path / "masks")
    checked = sum(
        check_split_masks(files, tmp_path / "masks" / "semantic" / name, tmp_path / "masks" / "labels.json")
        for name, files in export.splits.items()
    )
    assert checked == report["counts"]["images_written"] > 0
    split = json.loads((tmp_path / "masks" / "split.json").read_text())
    assert split["train"] and split["val"]
    assert len(list((tmp_path / "masks" / "preview").rglob("*.png"))) == 2


def test_every_style_matches_pycocotools_through_prepare_ann(export: Export, tmp_path: Path) -> None:
    for name, files in export.splits.items():
        out = tmp_path / "prepared" / name
        assert (
            cli.main(
                [
                    "prepare",
                    "--ann",
                    str(files.annotations),
                    "--img_dir",
                    str(files.images),
                    "--out_dir",
                    str(out),
                    "--visualize",
                    "1",
                    "--workers",
                    "1",
                ]
            )
            == 0
        )
        report = json.loads((out / "report.json").read_text())
        assert (
            check_split_masks(files, out / "semantic", out / "labels.json")
            == report["counts"]["images_written"]
        )
        tables = [json.loads(line) for line in (out / "instances.jsonl").read_text().splitlines()]
        assert len(tables) == report["counts"]["images_written"]
        assert sorted(p.name for p in out.iterdir()) == [
            "instance",
            "instances.jsonl",
            "labels.json",
            "preview",
            "report.json",
            "semantic",
        ]
        assert len(list((out / "preview").rglob("*.png"))) == 1


def test_roboflow_names_its_parts_and_leaves_the_placeholder_category_out(tmp_path: Path) -> None:
    export = STYLES["roboflow"](tmp_path / "export")
    report = build_pipeline_layout(export, tmp_path / "masks")
    labels = json.loads((tmp_path / "masks" / "labels.json").read_text())
    assert [(c["coco_id"], c["name"]) for c in labels["classes"]] == [
        (None, "background"),
        (1, "cat"),
        (2, "dog"),
    ]
    assert report["categories_unused"] == [{"id": 0, "name": "my-project"}]
    assert report["split"] == {"train": ["train"], "val": ["valid"], "test": ["test"]}
    split = json.loads((tmp_path / "masks" / "split.json").read_text())
    assert {part: sorted({item.split("/")[0] for item in items}) for part, items in split.items()} == {
        "train": ["train"],
        "val": ["valid"],
        "test": ["test"],
    }


def test_cvat_keeps_subfolders_and_class_id_zero(tmp_path: Path) -> None:
    export = STYLES["cvat"](tmp_path / "export")
    build_pipeline_layout(export, tmp_path / "masks")
    labels = json.loads((tmp_path / "masks" / "labels.json").read_text())
    assert labels["classes"][1] == {"id": 1, "coco_id": 0, "name": "_background_", "color": [128, 0, 0]}
    assert (tmp_path / "masks" / "semantic" / "default" / "JPEGImages" / "frame_000.png").is_file()
    assert (tmp_path / "masks" / "instance" / "default" / "JPEGImages" / "frame_000.png").is_file()
    table = json.loads(
        (tmp_path / "masks" / "instance" / "default" / "instances.jsonl").read_text().splitlines()[0]
    )
    assert table["image"] == "JPEGImages/frame_000"


def test_rle_only_names_images_by_their_url(tmp_path: Path) -> None:
    export = STYLES["rle_only"](tmp_path / "export")
    report = build_pipeline_layout(export, tmp_path / "masks")
    assert report["counts"]["images_written"] == 3 and report["counts"]["annotations_crowd"] == 3
    labels = json.loads((tmp_path / "masks" / "labels.json").read_text())
    assert [c["coco_id"] for c in labels["classes"]] == [
        None,
        101,
        250,
        1203,
    ]  # 250: crowd only, still listed
    manifest = (tmp_path / "masks" / "manifest.tsv").read_text().splitlines()[1:]
    assert [line.split("\t")[0] for line in manifest] == [f"val/{i:012d}.jpg" for i in range(3)]


def test_names_shared_across_supercategories_become_distinct_classes(tmp_path: Path) -> None:
    export = STYLES["attributes"](tmp_path / "export")
    build_pipeline_layout(export, tmp_path / "masks")
    labels = json.loads((tmp_path / "masks" / "labels.json").read_text())
    assert [c["name"] for c in labels["classes"]][1:] == export.notes["names"]
    by_super = build_pipeline_layout(
        export, tmp_path / "upper", categories=["supercategory:upperbody", "pants"]
    )
    labels = json.loads((tmp_path / "upper" / "labels.json").read_text())
    assert [c["name"] for c in labels["classes"]][1:] == ["shirt", "sleeve (upperbody)", "pants"]
    assert by_super["counts"]["annotations_unselected"] == 1  # the dress's sleeve


def test_web_pngs_are_read_as_a_viewer_shows_them(tmp_path: Path) -> None:
    export = STYLES["web_pngs"](tmp_path / "export")
    report = build_pipeline_layout(export, tmp_path / "masks", preview=8)
    assert {(e["split"], e["file_name"], e["reason"]) for e in report["skipped_images"]} == {
        ("val", "grey.png", "no kept annotations")
    }
    for item, rgb in export.notes["viewed"].items():
        bgr = read_image(export.root / item)
        np.testing.assert_array_equal(bgr[..., ::-1], rgb, err_msg=item)
    previews = sorted(p.name for p in (tmp_path / "masks" / "preview").iterdir())
    assert "palette.png" in previews and "val_palette.png" in previews  # one name, two splits


def test_many_classes_make_uint16_masks(tmp_path: Path) -> None:
    export = STYLES["many_classes"](tmp_path / "export")
    build_pipeline_layout(export, tmp_path / "masks")
    labels = json.loads((tmp_path / "masks" / "labels.json").read_text())
    assert labels["void"] == 65535 and len(labels["classes"]) == 1204
    mask = cv2.imread(str(tmp_path / "masks" / "semantic" / "val" / "2.png"), cv2.IMREAD_UNCHANGED)
    assert mask.dtype == np.uint16 and mask.max() == 65535 and 1203 in mask  # crowd band, the last class


def test_exif_turned_photo_is_painted_upright_and_read_upright(tmp_path: Path) -> None:
    export = STYLES["exif_photo"](tmp_path / "export")
    report = build_pipeline_layout(export, tmp_path / "masks", preview=2)
    assert report["counts"]["images_turned_upright"] == 1 and report["counts"]["size_mismatches"] == 0
    mask = cv2.imread(str(tmp_path / "masks" / "semantic" / "phone" / "turned.png"), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (120, 80)
    image = read_image(export.root / "images" / "turned.jpg", size=mask.shape)
    # OpenCV applies the EXIF orientation itself when asked: the same decoder, so the same pixels
    np.testing.assert_array_equal(
        image, cv2.imread(str(export.root / "images" / "turned.jpg"), cv2.IMREAD_COLOR)
    )
    assert np.abs(image[..., ::-1].astype(int) - export.notes["upright"]).mean() < 3  # the upright picture
    stored = read_image(export.root / "images" / "as_stored.jpg", size=(80, 120))
    assert stored.shape == (80, 120, 3)  # its EXIF orientation is not what its JSON size says: as stored
    panel = cv2.imread(str(tmp_path / "masks" / "preview" / "turned.png"))
    assert panel.shape[0] > 120  # image and mask side by side at the upright height (plus captions)

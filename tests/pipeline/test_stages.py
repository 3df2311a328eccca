"""Stage scripts: bad input ends in one clear error line and exit code 1, never a traceback."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import CATEGORIES, assert_one_error, params_file, run_stage

IMAGES = [{"id": 1, "file_name": "a.jpg", "height": 8, "width": 8}]
ANNOTATIONS = [
    {"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "segmentation": [[1, 1, 5, 1, 5, 5, 1, 5]]}
]


def test_masks_stage_writes_outputs(make_coco: Callable[..., Path], tmp_path: Path) -> None:
    coco = make_coco(IMAGES, ANNOTATIONS)
    result = run_stage(
        "masks", "--params", params_file(tmp_path), "--coco", coco, "--out", tmp_path / "m", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "wrote masks for 1 of 1 images (0 skipped); 1 annotations painted, 0 skipped" in result.stderr
    assert json.loads((tmp_path / "m" / "report.json").read_text())["counts"]["images_written"] == 1


@pytest.mark.parametrize(
    ("params", "fragments"),
    [
        (
            {"masks": {"overlap": "foo"}},
            [
                "masks.overlap: 'foo' is not allowed; expected one of "
                "['priority_area', 'smaller_on_top', 'void']"
            ],
        ),
        ({"masks": {"overlapp": "void"}}, ["unknown key 'masks.overlapp'; allowed keys: ['categories'"]),
        (
            {"masks": {"categories": ["cat", "zebra"]}},
            ["masks.categories: unknown category 'zebra'; valid names: ['car', 'cat', 'dog']"],
        ),
    ],
)
def test_masks_stage_bad_params(
    make_coco: Callable[..., Path], tmp_path: Path, params: dict, fragments: list[str]
) -> None:
    coco = make_coco(IMAGES, ANNOTATIONS)
    path = params_file(tmp_path, params["masks"])
    result = run_stage("masks", "--params", path, "--coco", coco, "--out", tmp_path / "m", cwd=tmp_path)
    line = assert_one_error(result, *fragments)
    if "categories" not in params["masks"]:
        assert line.startswith(f"ERROR cocoseg: {path}: ")
        assert result.stderr.strip() == line  # nothing else was logged: params fail before any work
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ('{"images": [', "not valid JSON ("),
        ('{"images": [], "annotations": []}', "key 'categories' is missing or not a list"),
        (
            '{"images": [{"id": 1}], "annotations": [], "categories": []}',
            "images[0] (id 1) has neither a 'file_name' nor a 'coco_url' to name its file",
        ),
        ("[1, 2]", "expected a JSON object with images, annotations, categories"),
    ],
)
def test_masks_stage_bad_instances_json(
    make_coco: Callable[..., Path], tmp_path: Path, content: str, fragment: str
) -> None:
    coco = make_coco(IMAGES, ANNOTATIONS)
    ann_file = coco / "annotations" / "instances_val2017.json"
    ann_file.write_text(content)
    result = run_stage(
        "masks", "--params", params_file(tmp_path), "--coco", coco, "--out", tmp_path / "m", cwd=tmp_path
    )
    assert_one_error(result, f"{ann_file}: {fragment}")


def test_masks_stage_missing_coco_folder(tmp_path: Path) -> None:
    result = run_stage(
        "masks",
        "--params",
        params_file(tmp_path),
        "--coco",
        tmp_path / "nowhere",
        "--out",
        tmp_path / "m",
        cwd=tmp_path,
    )
    assert_one_error(
        result,
        f"{tmp_path / 'nowhere' / 'annotations' / 'instances_val2017.json'}: annotation file not found",
    )


def test_masks_stage_no_masks_at_all(make_coco: Callable[..., Path], tmp_path: Path) -> None:
    orphan = {**ANNOTATIONS[0], "image_id": 999}  # annotations, but none of a listed image
    coco = make_coco(IMAGES, [orphan], categories=CATEGORIES)
    result = run_stage(
        "masks", "--params", params_file(tmp_path), "--coco", coco, "--out", tmp_path / "m", cwd=tmp_path
    )
    assert_one_error(result, f"{coco}: no image produced a mask", "no kept annotations")


def test_masks_stage_refuses_a_split_of_images_only(make_coco: Callable[..., Path], tmp_path: Path) -> None:
    coco = make_coco(IMAGES, [], categories=CATEGORIES)
    result = run_stage(
        "masks", "--params", params_file(tmp_path), "--coco", coco, "--out", tmp_path / "m", cwd=tmp_path
    )
    assert_one_error(
        result,
        f"{coco / 'annotations' / 'instances_val2017.json'}: split 'val2017' lists "
        f"{len(IMAGES)} images and no annotations; masks need annotated images",
        "`cocoseg predict` segments images without annotations",
    )
    assert not (tmp_path / "m").exists()


def test_extract_stage_unsafe_archive(tmp_path: Path) -> None:
    raw = tmp_path / "raw" / "download"  # --raw names data/raw; the download stage's output is inside
    raw.mkdir(parents=True)
    with zipfile.ZipFile(raw / "annotations_trainval2017.zip", "w") as zf:
        zf.writestr("annotations/instances_val2017.json", "{}")
    with zipfile.ZipFile(raw / "val2017.zip", "w") as zf:
        zf.writestr("../evil.txt", "x")
    result = run_stage(
        "extract",
        "--params",
        params_file(tmp_path),
        "--raw",
        raw.parent,
        "--out",
        tmp_path / "coco",
        cwd=tmp_path,
    )
    assert_one_error(result, f"{raw / 'val2017.zip'}: member '../evil.txt' would be written outside")
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "coco").exists()


def test_extract_stage_missing_archives(tmp_path: Path) -> None:
    result = run_stage(
        "extract",
        "--params",
        params_file(tmp_path),
        "--raw",
        tmp_path / "raw",
        "--out",
        tmp_path / "coco",
        cwd=tmp_path,
    )
    assert_one_error(
        result, f"{tmp_path / 'raw' / 'download' / 'annotations_trainval2017.zip'}: archive not found"
    )


def test_extract_stage_missing_params_file(tmp_path: Path) -> None:
    result = run_stage("extract", "--params", tmp_path / "nope.yaml", cwd=tmp_path)
    assert_one_error(result, f"{tmp_path / 'nope.yaml'}: file not found")

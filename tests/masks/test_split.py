"""masks.split: which splits train, validate and test, by their names or a mapping."""

from __future__ import annotations

import pytest

from cocoseg.masks.coco import CocoFormatError
from cocoseg.masks.split import describe_plan, part_of, plan_parts, recognise_parts, split_images


@pytest.mark.parametrize(
    ("name", "part"),
    [
        ("train", "train"),
        ("Training", "train"),
        ("train2017", "train"),
        ("val", "val"),
        ("valid", "val"),
        ("VALIDATION", "val"),
        ("val2017", "val"),
        ("dev", "val"),
        ("test", "test"),
        ("test2017", "test"),
        ("default", None),
        ("trainval", None),
        ("images", None),
    ],
)
def test_usual_split_names(name: str, part: str | None) -> None:
    assert part_of(name) == part


def test_auto_follows_the_names_when_every_split_has_one() -> None:
    written = {"train": 5, "valid": 2, "test": 2}
    assert plan_parts("auto", ["train", "valid", "test"], written) == {
        "train": ["train"],
        "val": ["valid"],
        "test": ["test"],
    }
    assert plan_parts("auto", ["train2017", "val2017"], {"train2017": 1, "val2017": 1}) == {
        "train": ["train2017"],
        "val": ["val2017"],
    }


@pytest.mark.parametrize(
    ("splits", "written", "plan"),
    [
        (["val2017"], {"val2017": 9}, {"pooled": ["val2017"]}),  # the sample: one split, pooled as before
        (
            ["train", "test"],
            {"train": 4, "test": 2},
            {"pooled": ["train"], "test": ["test"]},
        ),  # no val: pool train
        (["default"], {"default": 4}, {"pooled": ["default"]}),  # CVAT's one unnamed split
        (
            ["train", "valid", "extra"],
            {"train": 1, "valid": 1, "extra": 1},
            {"pooled": ["train", "valid", "extra"]},
        ),
        (["train", "valid"], {"train": 3, "valid": 0}, {"pooled": ["train", "valid"]}),  # val wrote nothing
        (["test"], {"test": 3}, {"pooled": ["test"]}),
    ],
)
def test_auto_pools_otherwise_keeping_a_test_split_apart(
    splits: list[str], written: dict, plan: dict
) -> None:
    assert recognise_parts(splits, written) is None
    assert plan_parts("auto", splits, written) == plan


def test_a_mapping_names_the_splits_of_each_part() -> None:
    items = [f"{split}/{i}.jpg" for split in ("a", "b", "c", "d") for i in range(2)]
    mapping = {"train": ("a", "b"), "val": ("c",), "test": ("d",)}
    assert split_images(items, 0.2, 0, mapping, ["a", "b", "c", "d"]) == {
        "train": ["a/0.jpg", "a/1.jpg", "b/0.jpg", "b/1.jpg"],
        "val": ["c/0.jpg", "c/1.jpg"],
        "test": ["d/0.jpg", "d/1.jpg"],
    }
    assert (
        describe_plan(mapping, plan_parts(mapping, [], {}), 0.2)
        == "masks.split mapping: train = a, b; val = c; test = d"
    )


def test_auto_with_a_test_split_pools_the_rest_and_keeps_test_whole() -> None:
    items = [f"train/{i}.jpg" for i in range(10)] + ["test/0.jpg", "test/1.jpg"]
    split = split_images(items, 0.2, 0, "auto", ["train", "test"])
    assert split["test"] == ["test/0.jpg", "test/1.jpg"]
    assert len(split["val"]) == 2 and sorted(split["train"] + split["val"]) == items[:10]
    assert split_images(items[:10], 0.2, 0, "pooled") == {k: v for k, v in split.items() if k != "test"}


def test_a_part_without_written_images_is_an_error() -> None:
    with pytest.raises(
        CocoFormatError,
        match=r"masks.split: the test part \(d\) has no written images; written "
        r"per split: \{'a': 1, 'c': 1\}",
    ):
        split_images(
            ["a/0.jpg", "c/0.jpg"], 0.2, 0, {"train": ("a",), "val": ("c",), "test": ("d",)}, ["a", "c", "d"]
        )

"""Category selection -> contiguous classes, priorities and the palette."""

from __future__ import annotations

import numpy as np
import pytest

from cocoseg.core.params import ConfigError
from cocoseg.masks.labels import VOC_CATEGORIES, build_label_map, palette

# Given out of id order on purpose: 'all' must sort by COCO id.
CATEGORIES = [{"id": 7, "name": "car"}, {"id": 1, "name": "cat"}, {"id": 3, "name": "dog"}]

# The 80 COCO 2017 category names (instances_val2017.json), for checking the VOC preset.
COCO_NAMES = (
    "person",
    "bicycle",
    "car",
    "motorcycle",
    "airplane",
    "bus",
    "train",
    "truck",
    "boat",
    "traffic light",
    "fire hydrant",
    "stop sign",
    "parking meter",
    "bench",
    "bird",
    "cat",
    "dog",
    "horse",
    "sheep",
    "cow",
    "elephant",
    "bear",
    "zebra",
    "giraffe",
    "backpack",
    "umbrella",
    "handbag",
    "tie",
    "suitcase",
    "frisbee",
    "skis",
    "snowboard",
    "sports ball",
    "kite",
    "baseball bat",
    "baseball glove",
    "skateboard",
    "surfboard",
    "tennis racket",
    "bottle",
    "wine glass",
    "cup",
    "fork",
    "knife",
    "spoon",
    "bowl",
    "banana",
    "apple",
    "sandwich",
    "orange",
    "broccoli",
    "carrot",
    "hot dog",
    "pizza",
    "donut",
    "cake",
    "chair",
    "couch",
    "potted plant",
    "bed",
    "dining table",
    "toilet",
    "tv",
    "laptop",
    "mouse",
    "remote",
    "keyboard",
    "cell phone",
    "microwave",
    "oven",
    "toaster",
    "sink",
    "refrigerator",
    "book",
    "clock",
    "vase",
    "scissors",
    "teddy bear",
    "hair drier",
    "toothbrush",
)


def test_all_maps_by_coco_id_order() -> None:
    labels = build_label_map(CATEGORIES, "all", ())
    assert labels.names == ("background", "cat", "dog", "car")
    assert labels.coco_ids == (0, 1, 3, 7)
    assert labels.num_classes == 4
    assert [labels.class_of(i) for i in (1, 3, 7)] == [1, 2, 3]
    assert labels.class_of(2) is None and labels.class_of(0) is None


def test_explicit_list_keeps_list_order_and_leaves_others_out() -> None:
    labels = build_label_map(CATEGORIES, ("car", "cat"), ())
    assert labels.names == ("background", "car", "cat")
    assert labels.coco_ids == (0, 7, 1)
    assert labels.class_of(7) == 1 and labels.class_of(1) == 2
    assert labels.class_of(3) is None  # dog is not selected


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(ConfigError) as err:
        build_label_map(CATEGORIES, ("cat", "horse"), ())
    assert str(err.value) == "masks.categories: unknown category 'horse'; valid names: ['car', 'cat', 'dog']"


def test_duplicate_name_fails() -> None:
    with pytest.raises(ConfigError, match=r"masks.categories: 'cat' is selected twice in \['cat', 'cat'\]"):
        build_label_map(CATEGORIES, ("cat", "cat"), ())


def test_voc_preset_names_exist_in_coco() -> None:
    assert len(VOC_CATEGORIES) == 20 == len(set(VOC_CATEGORIES))
    assert set(VOC_CATEGORIES) <= set(COCO_NAMES)
    assert len(COCO_NAMES) == 80
    coco_categories = [{"id": i + 1, "name": n} for i, n in enumerate(COCO_NAMES)]
    labels = build_label_map(coco_categories, "voc", ())
    assert labels.names == ("background", *VOC_CATEGORIES)
    assert labels.class_of(COCO_NAMES.index("person") + 1) == VOC_CATEGORIES.index("person") + 1
    assert labels.class_of(COCO_NAMES.index("truck") + 1) is None


def test_voc_preset_on_a_dataset_without_those_names_fails_clearly() -> None:
    with pytest.raises(ConfigError) as err:
        build_label_map(CATEGORIES, "voc", ())
    assert str(err.value) == (
        "masks.categories: voc selects the 20 PASCAL VOC classes by their COCO names, and this "
        "data is not COCO (no category 'airplane'); list your own category names instead"
    )


def test_priority_first_listed_is_highest_unlisted_zero() -> None:
    labels = build_label_map(CATEGORIES, "all", ("dog", "car"))
    assert labels.priorities == {3: 2, 7: 1}
    assert labels.priorities.get(1, 0) == 0


def test_priority_must_be_a_selected_category() -> None:
    with pytest.raises(ConfigError) as err:
        build_label_map(CATEGORIES, ("cat",), ("dog",))
    assert str(err.value) == "masks.priority: 'dog' is not a selected category; selected: ['cat']"


def test_classes_beyond_254_make_uint16_masks_with_void_65535() -> None:
    many = [{"id": i, "name": f"c{i}"} for i in range(1, 256)]
    narrow = build_label_map(many[:254], "all", ())
    assert (narrow.num_classes, narrow.void, narrow.dtype) == (255, 255, np.uint8)
    wide = build_label_map(many, "all", ())
    assert (wide.num_classes, wide.void, wide.dtype) == (256, 65535, np.uint16)
    assert wide.to_json()["void"] == 65535


def test_palette_background_black_and_distinct() -> None:
    colours = palette(256)
    assert colours[0] == [0, 0, 0]
    assert colours[1:4] == [[128, 0, 0], [0, 128, 0], [128, 128, 0]]  # PASCAL VOC colour map
    assert len({tuple(c) for c in colours}) == 256
    assert all(0 <= v <= 255 for c in colours for v in c)


def test_to_json() -> None:
    labels = build_label_map(CATEGORIES, ("dog", "cat"), ())
    assert labels.to_json() == {
        "void": 255,
        "classes": [
            {"id": 0, "coco_id": None, "name": "background", "color": [0, 0, 0]},
            {"id": 1, "coco_id": 3, "name": "dog", "color": [128, 0, 0]},
            {"id": 2, "coco_id": 1, "name": "cat", "color": [0, 128, 0]},
        ],
    }


# --- categories by use, supercategories -------------------------------------------------------------

ANIMALS = [
    {"id": 0, "name": "project", "supercategory": "none"},
    {"id": 5, "name": "cat", "supercategory": "animal"},
    {"id": 9, "name": "dog", "supercategory": "animal"},
    {"id": 250, "name": "car", "supercategory": "vehicle"},
    {"id": 91, "name": "bus", "supercategory": "vehicle"},
]


def test_all_is_every_used_category_by_id_and_the_rest_are_listed_unused() -> None:
    labels = build_label_map(ANIMALS, "all", (), use={5: 3, 250: 1, 9: 2, 7: 4})  # 7: no such category
    assert labels.names == ("background", "cat", "dog", "car") and labels.coco_ids == (0, 5, 9, 250)
    assert labels.unused == ({"id": 0, "name": "project"}, {"id": 91, "name": "bus"})


def test_a_supercategory_stands_for_its_used_categories_by_id() -> None:
    use = {0: 0, 5: 1, 9: 1, 250: 1, 91: 1}
    labels = build_label_map(ANIMALS, ("car", "supercategory:animal"), (), use)
    assert labels.names == ("background", "car", "cat", "dog")
    assert build_label_map(ANIMALS, ("supercategory:vehicle",), (), use).coco_ids == (0, 91, 250)
    with pytest.raises(ConfigError) as err:
        build_label_map(ANIMALS, ("supercategory:plant",), (), use)
    assert str(err.value) == (
        "masks.categories: unknown supercategory 'plant' in 'supercategory:plant'; valid "
        "supercategories: ['animal', 'none', 'vehicle']"
    )
    with pytest.raises(ConfigError, match=r"'cat' is selected twice"):
        build_label_map(ANIMALS, ("cat", "supercategory:animal"), (), use)


def test_a_category_named_explicitly_is_kept_even_unused() -> None:
    labels = build_label_map(ANIMALS, ("bus", "cat"), (), use={5: 1})
    assert labels.coco_ids == (0, 91, 5)
    assert labels.unused == (
        {"id": 0, "name": "project"},
        {"id": 9, "name": "dog"},
        {"id": 250, "name": "car"},
    )


def test_category_id_zero_is_a_class_like_any_other() -> None:
    labels = build_label_map([{"id": 0, "name": "_background_"}, {"id": 1, "name": "person"}], "all", ())
    assert labels.class_of(0) == 1 and labels.class_of(1) == 2
    assert [c["coco_id"] for c in labels.to_json()["classes"]] == [None, 0, 1]

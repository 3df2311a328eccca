"""Loading an instances file: the index it builds, and a clear error for a file that is unusable."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from cocoseg.masks.coco import CocoFormatError, load_coco


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "instances_val2017.json"
    path.write_text(json.dumps(data))
    return path


def test_index_is_sorted_and_grouped(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {
            "images": [{"id": 5, "file_name": "b.jpg"}, {"id": 2, "file_name": "a.jpg"}],
            "categories": [{"id": 7, "name": "car"}, {"id": 1, "name": "cat"}],
            "annotations": [
                {"id": 30, "image_id": 5},
                {"id": 10, "image_id": 5},
                {"id": 20, "image_id": 2},
                {"id": 40, "image_id": 9},
                {"id": 50, "image_id": [5]},
                {"id": 60},
            ],
        },
    )
    index = load_coco(path)
    assert index.path == path
    assert [im["id"] for im in index.images] == [2, 5]
    assert [c["id"] for c in index.categories] == [1, 7]
    assert {k: [a["id"] for a in v] for k, v in index.annotations_by_image.items()} == {5: [10, 30], 2: [20]}
    # image_id unknown, unhashable, missing
    assert [a["id"] for a in index.orphan_annotations] == [40, 50, 60]


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ([], "expected a JSON object with images, annotations, categories"),
        ({"images": [], "annotations": {}, "categories": []}, "key 'annotations' is missing or not a list"),
        ({"images": ["x"], "annotations": [], "categories": []}, "images[0] is not an object"),
        (
            {"images": [{"id": "1", "file_name": "a.jpg"}], "annotations": [], "categories": []},
            "images[0] has no integer 'id'",
        ),
        (
            {"images": [{"id": 1, "file_name": "../a.jpg"}], "annotations": [], "categories": []},
            "images[0] (id 1) has no usable 'file_name' (got '../a.jpg': it has an empty, hidden, '.' or '..' part)",
        ),
        (
            {
                "images": [{"id": 1, "file_name": "a.jpg"}, {"id": 1, "file_name": "b.jpg"}],
                "annotations": [],
                "categories": [],
            },
            "images[1] repeats the id 1 of images[0]; each id must be unique",
        ),
        # a second category with an existing id once painted every object of the first as the second
        (
            {
                "images": [],
                "annotations": [],
                "categories": [{"id": 1, "name": "cat"}, {"id": 1, "name": "dog"}],
            },
            "categories[1] repeats the id 1 of categories[0]; each id must be unique",
        ),
        (
            {
                "images": [],
                "annotations": [],
                "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "cat"}],
            },
            (
                "categories[1] (id 2) repeats the name 'cat' of categories[0] (id 1), and their supercategories "
                "(None, None) do not tell them apart; each name must be unique"
            ),
        ),
        (
            {"images": [{"id": True, "file_name": "a.jpg"}], "annotations": [], "categories": []},
            "images[0] has no integer 'id'",
        ),
        (
            {"images": [], "annotations": [], "categories": [{"id": 1}]},
            "categories[0] needs an integer 'id' and a string 'name'",
        ),
        (
            {"images": [], "annotations": [{"image_id": 1}], "categories": []},
            "annotations[0] is not an object with an integer 'id'",
        ),
    ],
)
def test_unusable_file_names_file_and_problem(tmp_path: Path, data: object, problem: str) -> None:
    path = write(tmp_path, data)
    with pytest.raises(CocoFormatError) as err:
        load_coco(path)
    assert str(err.value) == f"{path}: {problem}"


def test_missing_and_invalid_json(tmp_path: Path) -> None:
    with pytest.raises(CocoFormatError, match=r"instances_val2017\.json: annotation file not found$"):
        load_coco(tmp_path / "instances_val2017.json")
    path = tmp_path / "broken.json"
    path.write_bytes(b'{"images": [\xff')
    with pytest.raises(CocoFormatError, match=r"broken\.json: not valid JSON \("):
        load_coco(path)


def test_deeply_nested_json_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_text('{"images": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(CocoFormatError) as err:
        load_coco(path)
    assert str(err.value) == f"{path}: JSON nested too deeply to be a COCO file"


def test_repeated_annotation_ids_keep_the_first_record_and_list_the_rest(tmp_path: Path) -> None:
    data = {
        "images": [{"id": 1, "file_name": "a.jpg"}],
        "categories": [{"id": 1, "name": "cat"}],
        "annotations": [
            {"id": 7, "image_id": 1, "category_id": 1, "segmentation": [[0, 0, 1, 0, 1, 1]]},
            {"id": 7, "image_id": 1, "category_id": 1, "segmentation": [[2, 2, 3, 2, 3, 3]]},
            {"id": 8, "image_id": 1, "category_id": 1},
        ],
    }
    index = load_coco(write(tmp_path, data))
    assert [a["segmentation"] for a in index.annotations_by_image[1] if a["id"] == 7] == [
        [[0, 0, 1, 0, 1, 1]]
    ]
    assert [a["id"] for a in index.annotations_by_image[1]] == [7, 8]
    assert index.duplicate_annotations == [data["annotations"][1]]


def test_records_equal_json_load_and_cross_to_a_worker_as_a_plain_list(tmp_path: Path) -> None:
    """Records are kept as text and parsed when read: what comes out (and what a worker unpickles) is what
    json.load gives, whatever the whitespace, escapes, numbers or key order."""
    annotations = [
        {
            "id": 3,
            "image_id": 1,
            "segmentation": [[0.1, 1e-7, 2.5, 3, 123456789012345678901, 0]],
            "name": "caf\u00e9 \u2603",
            "bbox": [1, 2, 3, 4],
        },
        {"id": 1, "image_id": 1, "segmentation": {"counts": 'a\\"]}b', "size": [2, 2]}},
        {"id": 2, "image_id": 2, "segmentation": [[-0.0, 1.5e300, 3, 4, 5, 6]]},
    ]
    data = {
        "annotations": annotations,
        "info": {"x": [1, 2]},
        "images": [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "b.jpg"}],
        "categories": [],
    }
    path = tmp_path / "instances_val2017.json"
    text = json.dumps(data, indent=2, ensure_ascii=False).replace('"annotations"', '"annot\\u0061tions"')
    path.write_text(text, encoding="utf-8")
    by_image = load_coco(path).annotations_by_image
    assert list(by_image[1]) == [annotations[1], annotations[0]] and list(by_image[2]) == [annotations[2]]
    assert by_image[1][-1] == annotations[0] and by_image[1][:1] == [annotations[1]]
    sent = pickle.loads(pickle.dumps(by_image[1]))
    assert type(sent) is list and sent == [annotations[1], annotations[0]]


def test_the_last_annotations_key_wins_as_in_json_load(tmp_path: Path) -> None:
    path = tmp_path / "instances_val2017.json"
    path.write_text(
        '{"images": [{"id": 1, "file_name": "a.jpg"}], "categories": [],'
        ' "annotations": [{"id": 1, "image_id": 1}], "annotations": [{"id": 2, "image_id": 1}]}'
    )
    assert [a["id"] for a in load_coco(path).annotations_by_image[1]] == [2]


@pytest.mark.parametrize(
    "text",
    [
        '{"images": [], "categories": [], "annotations": [{"id": 1},]}',
        '{"images": [], "categories": [], "annotations": [{"id": 1} {"id": 2}]}',
        '{"images": [], "categories": [], "annotations": [{"id": 1}',
        '{"images": [], "categories": [], "annotations": []} []',
        '{"images": [] "categories": [], "annotations": []}',
        '{"images": [], categories: [], "annotations": []}',
        '{"images": [], "categories": [], "annotations": [1.5e]}',
    ],
)
def test_broken_json_around_the_scanned_annotations(tmp_path: Path, text: str) -> None:
    path = tmp_path / "instances_val2017.json"
    path.write_text(text)
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)
    with pytest.raises(CocoFormatError, match=r"not valid JSON \("):
        load_coco(path)


def test_category_use_counts_kept_annotations_of_listed_images(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {
            "images": [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "b.jpg"}],
            "categories": [
                {"id": 0, "name": "placeholder"},
                {"id": 4, "name": "cat"},
                {"id": 95, "name": "dog"},
            ],
            "annotations": [
                {"id": 1, "image_id": 1, "category_id": 4},
                {"id": 2, "image_id": 2, "category_id": 4, "iscrowd": 0},
                {
                    "id": 3,
                    "image_id": 2,
                    "category_id": 95,
                    "iscrowd": 1,
                },  # a crowd keeps its category (as void)
                {"id": 4, "image_id": 9, "category_id": 0},  # no such image
                {"id": 1, "image_id": 2, "category_id": 0},  # a repeated id: not used
                {"id": 5, "image_id": 1, "category_id": 0, "iscrowd": 2},  # skipped by the worker
                {"id": 6, "image_id": 1, "category_id": True},
            ],
        },
    )
    index = load_coco(path)
    assert index.category_use == {4: 2, 95: 1}
    assert index.annotation_count == 7


def test_images_named_by_url_and_with_subfolders(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {
            "images": [
                {"id": 1, "coco_url": "http://x.org/val2017/000000000139.jpg"},
                {"id": 2, "file_name": "JPEGImages/b.jpg", "coco_url": "http://x.org/c.jpg"},
            ],
            "annotations": [],
            "categories": [],
        },
    )
    assert [im["file_name"] for im in load_coco(path).images] == ["000000000139.jpg", "JPEGImages/b.jpg"]
    path = write(tmp_path, {"images": [{"id": 1}], "annotations": [], "categories": []})
    with pytest.raises(
        CocoFormatError, match=r"images\[0\] \(id 1\) has neither a 'file_name' nor a 'coco_url'"
    ):
        load_coco(path)


def test_a_file_without_annotations_loads_as_images_only(tmp_path: Path) -> None:
    path = write(tmp_path, {"images": [{"id": 1, "file_name": "a.jpg"}], "categories": []})  # image_info_test
    assert load_coco(path).annotation_count == 0


def test_names_shared_across_supercategories_are_disambiguated(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {
            "images": [],
            "annotations": [],
            "categories": [
                {"id": 1, "name": "sleeve", "supercategory": "top"},
                {"id": 2, "name": "sleeve", "supercategory": "dress"},
                {"id": 3, "name": "collar", "supercategory": "top"},
            ],
        },
    )
    assert [c["name"] for c in load_coco(path).categories] == ["sleeve (top)", "sleeve (dress)", "collar"]
    path = write(
        tmp_path,
        {
            "images": [],
            "annotations": [],
            "categories": [
                {"id": 1, "name": "cat", "supercategory": "animal"},
                {"id": 7, "name": "cat", "supercategory": "animal"},
            ],
        },
    )
    with pytest.raises(CocoFormatError) as err:
        load_coco(path)
    assert str(err.value) == (
        f"{path}: categories[1] (id 7) repeats the name 'cat' of categories[0] (id 1), and "
        f"their supercategories ('animal', 'animal') do not tell them apart; each name must be "
        f"unique"
    )

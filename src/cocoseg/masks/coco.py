"""Load a COCO instances file into plain records, with clear errors for a broken file.

Only the file's overall shape is checked here (a mapping with images/annotations/categories lists);
individual bad records are the masks stage's business: it skips and reports them one by one.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cocoseg.core.errors import UserError


class CocoFormatError(UserError, ValueError):
    """The annotation file is not usable at all; the message names the file and the problem."""


@dataclass(frozen=True)
class CocoIndex:
    path: Path
    images: list[dict[str, Any]]  # sorted by id
    categories: list[dict[str, Any]]  # sorted by id
    annotations_by_image: dict[int, list[dict[str, Any]]]  # each list sorted by annotation id
    orphan_annotations: list[dict[str, Any]]  # annotations whose image_id is not in images
    duplicate_annotations: list[dict[str, Any]] = field(default_factory=list)  # ids seen before; not used


def load_coco(path: Path) -> CocoIndex:
    data = _read_json(path)
    images = []
    for i, img in enumerate(data["images"]):
        problem = _image_problem(img)
        if problem:
            raise CocoFormatError(f"{path}: images[{i}] {problem}")
        images.append(img)
    _refuse_repeats(path, "images", [img["id"] for img in images])

    categories = []
    for i, cat in enumerate(data["categories"]):
        if not isinstance(cat, dict) or not _is_int(cat.get("id")) or not isinstance(cat.get("name"), str):
            raise CocoFormatError(f"{path}: categories[{i}] needs an integer 'id' and a string 'name'")
        categories.append(cat)
    # A repeated category id would paint one category's objects as the other, with no sign of it.
    _refuse_repeats(path, "categories", [c["id"] for c in categories])
    _refuse_repeats(path, "categories", [c["name"] for c in categories], "name")

    known = {img["id"] for img in images}
    by_image: dict[int, list[dict]] = defaultdict(list)
    orphans, duplicates, seen = [], [], set()
    for i, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict) or not _is_int(ann.get("id")):
            raise CocoFormatError(f"{path}: annotations[{i}] is not an object with an integer 'id'")
        if ann["id"] in seen:  # the first record with an id is used; later ones are reported, not painted
            duplicates.append(ann)
            continue
        seen.add(ann["id"])
        image_id = ann.get("image_id")  # may be anything, even an unhashable list: check the type first
        (by_image[image_id] if _is_int(image_id) and image_id in known else orphans).append(ann)
    for anns in by_image.values():
        anns.sort(key=lambda a: a["id"])
    return CocoIndex(path, sorted(images, key=lambda im: im["id"]), sorted(categories, key=lambda c: c["id"]),
                     dict(by_image), orphans, duplicates)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise CocoFormatError(f"{path}: annotation file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CocoFormatError(f"{path}: not valid JSON ({err})") from None
    except RecursionError:
        raise CocoFormatError(f"{path}: JSON nested too deeply to be a COCO file") from None
    if not isinstance(data, dict):
        raise CocoFormatError(f"{path}: expected a JSON object with images, annotations, categories")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise CocoFormatError(f"{path}: key {key!r} is missing or not a list")
    return data


def _refuse_repeats(path: Path, key: str, values: list[Any], what: str = "id") -> None:
    first: dict[Any, int] = {}
    for i, value in enumerate(values):
        if value in first:
            raise CocoFormatError(f"{path}: {key}[{i}] repeats the {what} {value!r} of {key}[{first[value]}]; "
                                  f"each {what} must be unique")
        first[value] = i


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # JSON true is not an id


def _image_problem(img: Any) -> str | None:
    if not isinstance(img, dict):
        return "is not an object"
    if not _is_int(img.get("id")):
        return "has no integer 'id'"
    name = img.get("file_name")
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name.startswith("."):
        return f"(id {img.get('id')}) has no usable 'file_name' (got {name!r})"
    return None

"""Load a COCO instances file into plain records, with clear errors for a broken file.

Only the file's overall shape is checked here (a mapping with images/annotations/categories lists);
individual bad records are the masks stage's business: it skips and reports them one by one.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
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


def load_coco(path: Path) -> CocoIndex:
    try:
        with open(path, "rb") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise CocoFormatError(f"{path}: annotation file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CocoFormatError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise CocoFormatError(f"{path}: expected a JSON object with images, annotations, categories")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise CocoFormatError(f"{path}: key {key!r} is missing or not a list")

    images = []
    for i, img in enumerate(data["images"]):
        problem = _image_problem(img)
        if problem:
            raise CocoFormatError(f"{path}: images[{i}] {problem}")
        images.append(img)
    ids = [img["id"] for img in images]
    if len(set(ids)) != len(ids):
        raise CocoFormatError(f"{path}: duplicate image ids")

    categories = []
    for i, cat in enumerate(data["categories"]):
        if not isinstance(cat, dict) or not isinstance(cat.get("id"), int) or not isinstance(cat.get("name"), str):
            raise CocoFormatError(f"{path}: categories[{i}] needs an integer 'id' and a string 'name'")
        categories.append(cat)

    known = set(ids)
    by_image: dict[int, list[dict]] = defaultdict(list)
    orphans = []
    for i, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict) or not isinstance(ann.get("id"), int):
            raise CocoFormatError(f"{path}: annotations[{i}] is not an object with an integer 'id'")
        image_id = ann.get("image_id")  # may be anything, even an unhashable list: check the type first
        (by_image[image_id] if isinstance(image_id, int) and image_id in known else orphans).append(ann)
    for anns in by_image.values():
        anns.sort(key=lambda a: a["id"])
    return CocoIndex(path, sorted(images, key=lambda im: im["id"]), sorted(categories, key=lambda c: c["id"]),
                     dict(by_image), orphans)


def _image_problem(img: Any) -> str | None:
    if not isinstance(img, dict):
        return "is not an object"
    if not isinstance(img.get("id"), int):
        return "has no integer 'id'"
    name = img.get("file_name")
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name.startswith("."):
        return f"(id {img.get('id')}) has no usable 'file_name' (got {name!r})"
    return None

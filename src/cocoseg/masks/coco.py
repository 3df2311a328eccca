"""Load a COCO instances file into plain records, with clear errors for a broken file.

Only the file's overall shape is checked here (a mapping with images/annotations/categories lists);
individual bad records are the masks stage's business: it skips and reports them one by one.

The file is held once, as one string: annotation records are parsed one at a time to index them and
kept as where they lie in that string; a worker parses one image's records when it gets them, so the
main process never holds every parsed record (polygons as Python floats) at once.
"""

from __future__ import annotations

import json
import re
from array import array
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

from cocoseg.core.errors import UserError
from cocoseg.core.layout import image_file_name, relative_name_problem
from cocoseg.core.limits import MAX_LISTED

_DECODER = json.JSONDecoder()  # json.load's own decoder: a record parsed here is what json.load gives
_SPACE = re.compile(r"[ \t\n\r]*")  # JSON's whitespace


class CocoFormatError(UserError, ValueError):
    """The annotation file is not usable at all; the message names the file and the problem."""


class Annotations(Sequence[dict[str, Any]]):
    """One image's annotation records, sorted by id, kept as (start, end) offsets into the file's text
    and parsed when read. Pickled (to a masks worker) as the JSON text of the list, so what the worker
    unpickles is the plain list of dicts that ``json.load`` of the whole file would give."""

    __slots__ = ("_text", "_spans")

    def __init__(self, text: str, spans: array) -> None:
        self._text, self._spans = text, spans  # spans: start, end, start, end, ...

    def __len__(self) -> int:
        return len(self._spans) // 2

    @overload
    def __getitem__(self, i: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, i: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, i: int | slice) -> Any:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        if not -len(self) <= i < len(self):
            raise IndexError(f"annotation {i} of {len(self)}")
        i %= len(self)
        return json.loads(self._text[self._spans[2 * i] : self._spans[2 * i + 1]])

    def to_json(self) -> str:
        text, spans = self._text, self._spans
        return "[" + ",".join(text[spans[k] : spans[k + 1]] for k in range(0, len(spans), 2)) + "]"

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return json.loads, (self.to_json(),)


@dataclass(frozen=True)
class CocoIndex:
    path: Path
    images: list[dict[str, Any]]  # sorted by id; each "file_name" set (from "coco_url" where missing)
    categories: list[dict[str, Any]]  # sorted by id; a name shared across supercategories disambiguated
    annotations_by_image: dict[int, Annotations]  # each sorted by annotation id
    orphan_annotations: list[
        dict[str, Any]
    ]  # annotations whose image_id is not in images (the first MAX_LISTED)
    duplicate_annotations: list[dict[str, Any]] = field(
        default_factory=list
    )  # ids seen before (first MAX_LISTED)
    orphan_count: int = 0  # all of them: a million orphans are counted, not held
    duplicate_count: int = 0
    annotation_count: int = 0  # records in the file's annotations list (0: a file of images only)
    # category id -> kept annotations of it: of a listed image, the first record of its id, iscrowd 0 or 1
    category_use: dict[int, int] = field(default_factory=dict)


class _Records:
    """The annotations array as it is scanned: each record's id, image id (None: not an integer) and
    place in the text; the parsed record itself is dropped."""

    def __init__(self, text: str) -> None:
        self.text, self.ids, self.image_ids, self.spans = text, [], [], array("q")
        self.kept_categories: list[int | None] = []  # a record's category if the record is kept, else None
        self.count, self.bad = 0, None  # bad: index of the first record that is no object with an integer id

    def add(self, record: Any, start: int, end: int) -> None:
        if self.bad is None and not (isinstance(record, dict) and _is_int(record.get("id"))):
            self.bad = self.count
        elif self.bad is None:
            image_id = record.get("image_id")  # may be anything, even an unhashable list
            self.ids.append(record["id"])
            self.image_ids.append(image_id if _is_int(image_id) else None)
            self.spans.extend((start, end))
            # kept as a masks worker decides (image_job.py): an integer category, iscrowd 0, 1 or missing (a
            # crowd region is kept too: as void, which needs its category selected)
            category, crowd = record.get("category_id"), record.get("iscrowd", 0)
            self.kept_categories.append(
                category if type(category) is int and type(crowd) is int and crowd in (0, 1) else None
            )
        self.count += 1

    def record(self, k: int) -> dict[str, Any]:
        return json.loads(self.text[self.spans[2 * k] : self.spans[2 * k + 1]])

    def index(self, known: set[int]) -> tuple[dict[int, Annotations], list[int], list[int], Counter[int]]:
        """Records grouped by image (the first record of an id is used; later ones are reported, not
        painted), the positions of orphans (no listed image) and repeats, in file order, and how many kept
        records paint each category."""
        by_image: dict[int, list[tuple[int, int]]] = defaultdict(list)
        orphans, duplicates, seen, use = [], [], set(), Counter()
        for k, (ann_id, image_id) in enumerate(zip(self.ids, self.image_ids, strict=False)):
            if ann_id in seen:
                duplicates.append(k)
                continue
            seen.add(ann_id)
            if image_id is not None and image_id in known:
                by_image[image_id].append((ann_id, k))
                use[self.kept_categories[k]] += 1
            else:
                orphans.append(k)
        spans = self.spans
        grouped = {
            image_id: Annotations(
                self.text, array("q", [v for _, k in sorted(refs) for v in (spans[2 * k], spans[2 * k + 1])])
            )
            for image_id, refs in by_image.items()
        }
        use.pop(None, None)
        return grouped, orphans, duplicates, use


def load_coco(path: Path) -> CocoIndex:
    """The file's records, checked and indexed; CocoFormatError for a file the masks stage cannot use."""
    data, records = _read_json(path)
    images = []
    for i, img in enumerate(data["images"]):
        problem = _image_problem(img)
        if problem:
            raise CocoFormatError(f"{path}: images[{i}] {problem}")
        img.setdefault("file_name", image_file_name(img))  # LVIS-style: named by coco_url alone
        images.append(img)
    _refuse_repeats(path, "images", [img["id"] for img in images])

    categories = []
    for i, cat in enumerate(data["categories"]):
        if not isinstance(cat, dict) or not _is_int(cat.get("id")) or not isinstance(cat.get("name"), str):
            raise CocoFormatError(f"{path}: categories[{i}] needs an integer 'id' and a string 'name'")
        categories.append(cat)
    # A repeated category id would paint one category's objects as the other, with no sign of it.
    _refuse_repeats(path, "categories", [c["id"] for c in categories])
    _disambiguate_names(path, categories)

    if records.bad is not None:
        raise CocoFormatError(f"{path}: annotations[{records.bad}] is not an object with an integer 'id'")
    by_image, orphans, duplicates, use = records.index({img["id"] for img in images})
    # Only the first MAX_LISTED of each are parsed again, for the report: their count covers the rest.
    return CocoIndex(
        path,
        sorted(images, key=lambda im: im["id"]),
        sorted(categories, key=lambda c: c["id"]),
        by_image,
        [records.record(k) for k in orphans[:MAX_LISTED]],
        [records.record(k) for k in duplicates[:MAX_LISTED]],
        len(orphans),
        len(duplicates),
        records.count,
        dict(use),
    )


def _disambiguate_names(path: Path, categories: list[dict[str, Any]]) -> None:
    """Class names must be unique (labels.json, masks.categories, legends). Categories that share a name
    under different supercategories (a "sleeve" of "top" and one of "dress") are distinct classes of the
    file: each is renamed "<name> (<supercategory>)" rather than refusing the export. A name repeated
    under one supercategory, or where either has none, is refused, naming both ids."""
    first: dict[str, int] = {}
    repeated = set()
    for i, cat in enumerate(categories):
        j = first.setdefault(cat["name"], i)
        if j != i:
            other = categories[j]
            groups = (other.get("supercategory"), cat.get("supercategory"))
            if not all(isinstance(g, str) and g for g in groups) or groups[0] == groups[1]:
                raise CocoFormatError(
                    f"{path}: categories[{i}] (id {cat['id']}) repeats the name {cat['name']!r} of categories[{j}] "
                    f"(id {other['id']}), and their supercategories ({groups[0]!r}, {groups[1]!r}) do not tell them "
                    f"apart; each name must be unique"
                )
            repeated.add(cat["name"])
    for cat in categories:
        if cat["name"] in repeated:
            cat["name"] = f"{cat['name']} ({cat.get('supercategory')})"
    _refuse_repeats(path, "categories", [c["name"] for c in categories], "name")


def _read_json(path: Path) -> tuple[dict[str, Any], _Records]:
    """The file's top-level object (its annotations as ``_Records``), with the file's problems as
    CocoFormatError."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
        text = raw.decode(json.detect_encoding(raw), "surrogatepass")  # as json.loads decodes bytes
        del raw
        data = _parse_top(text)
    except FileNotFoundError:
        raise CocoFormatError(f"{path}: annotation file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CocoFormatError(f"{path}: not valid JSON ({err})") from None
    except RecursionError:
        raise CocoFormatError(f"{path}: JSON nested too deeply to be a COCO file") from None
    if not isinstance(data, dict):
        raise CocoFormatError(f"{path}: expected a JSON object with images, annotations, categories")
    data.setdefault("annotations", _Records(text))  # none at all: a file of images only (build.py says so)
    for key, kind in (("images", list), ("annotations", _Records), ("categories", list)):
        if not isinstance(data.get(key), kind):
            raise CocoFormatError(f"{path}: key {key!r} is missing or not a list")
    return data, data.pop("annotations")


def _parse_top(text: str) -> Any:
    """The top-level value; in an object, the "annotations" array is scanned record by record."""
    pos = _SPACE.match(text).end()
    if text[pos : pos + 1] != "{":
        return json.loads(text)  # not an object (or not JSON): small, or an error either way
    data: dict[str, Any] = {}
    pos = _SPACE.match(text, pos + 1).end()
    if text[pos : pos + 1] == "}":
        return _end(text, pos + 1, data)
    while True:
        if text[pos : pos + 1] != '"':
            raise json.JSONDecodeError("Expecting property name enclosed in double quotes", text, pos)
        key, pos = _DECODER.raw_decode(text, pos)
        pos = _SPACE.match(text, pos).end()
        if text[pos : pos + 1] != ":":
            raise json.JSONDecodeError("Expecting ':' delimiter", text, pos)
        pos = _SPACE.match(text, pos + 1).end()
        if key == "annotations" and text[pos : pos + 1] == "[":  # the last one wins, as in json.load
            data[key] = _Records(text)
            pos = _scan_array(text, pos, data[key].add)
        else:
            data[key], pos = _DECODER.raw_decode(text, pos)
        pos = _SPACE.match(text, pos).end()
        if text[pos : pos + 1] == "}":
            return _end(text, pos + 1, data)
        if text[pos : pos + 1] != ",":
            raise json.JSONDecodeError("Expecting ',' delimiter", text, pos)
        pos = _SPACE.match(text, pos + 1).end()


def _scan_array(text: str, pos: int, add: Callable[[Any, int, int], None]) -> int:
    """``add(value, start, end)`` for each item of the array opening at ``pos``; returns the position
    after its closing bracket."""
    pos = _SPACE.match(text, pos + 1).end()
    if text[pos : pos + 1] == "]":
        return pos + 1
    while True:
        value, end = _DECODER.raw_decode(text, pos)
        add(value, pos, end)
        pos = _SPACE.match(text, end).end()
        if text[pos : pos + 1] == "]":
            return pos + 1
        if text[pos : pos + 1] != ",":
            raise json.JSONDecodeError("Expecting ',' delimiter", text, pos)
        pos = _SPACE.match(text, pos + 1).end()


def _end(text: str, pos: int, data: dict[str, Any]) -> dict[str, Any]:
    pos = _SPACE.match(text, pos).end()
    if pos != len(text):
        raise json.JSONDecodeError("Extra data", text, pos)
    return data


def _refuse_repeats(path: Path, key: str, values: list[Any], what: str = "id") -> None:
    first: dict[Any, int] = {}
    for i, value in enumerate(values):
        if value in first:
            raise CocoFormatError(
                f"{path}: {key}[{i}] repeats the {what} {value!r} of {key}[{first[value]}]; "
                f"each {what} must be unique"
            )
        first[value] = i


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # JSON true is not an id


def _shown(name: Any, limit: int = 80) -> str:
    text = repr(name)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(str(name))} characters)"


def _image_problem(img: Any) -> str | None:
    if not isinstance(img, dict):
        return "is not an object"
    if not _is_int(img.get("id")):
        return "has no integer 'id'"
    name = img.get("file_name")
    if name is None:
        if image_file_name(img) is not None:
            return None  # named by the last part of its coco_url
        if img.get("coco_url") is None:
            return f"(id {img['id']}) has neither a 'file_name' nor a 'coco_url' to name its file"
        name = img["coco_url"]
    problem = relative_name_problem(name)  # a tab or newline would split a row of manifest.tsv
    if problem:
        return f"(id {img.get('id')}) has no usable 'file_name' (got {_shown(name)}: it {problem})"
    return None

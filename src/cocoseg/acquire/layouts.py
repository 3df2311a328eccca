"""Where a COCO-format export keeps each split's annotation file and images, found from a file listing.

Recognised, in this order (the first style that yields a split wins):

- ``roboflow``: ``<split>/_annotations.coco.json``, the images beside it (Roboflow);
- ``coco``: ``annotations/instances_<split>.json`` with the images in ``<split>/``, ``images/<split>/``
  or ``images/`` (COCO itself; CVAT's ``instances_default.json`` + ``images/`` is split ``default``);
- ``single json``: any other COCO instances JSON, the split named after its file (``result.json`` of
  Label Studio -> ``result``), its images in its own folder or an ``images/`` folder beside it or
  one level up (labelme2coco, Label Studio, fashion sets with a sibling ``images/``).

Which folder holds a split's images is decided by where the file names its JSON lists exist: first
among the folders above, most likely first, then among all folders of the export (an LVIS file names
COCO's ``val2017/``). So ``file_name`` values with subfolders (``JPEGImages/x.jpg``, ``images/x.jpg``)
resolve. JSON files of
other formats (panoptic, createml, labelme's per-image files) are told apart by content and ignored.
``find_layout`` is pure (a listing and what each JSON names); ``find_folder_layout`` reads a folder.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from cocoseg.core.errors import UserError
from cocoseg.core.layout import image_file_name, split_name_problem

ROBOFLOW_JSON = "_annotations.coco.json"
STYLES = ("roboflow", "coco", "single json")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
FULL_PARSE_BYTES = 32 << 20  # a JSON up to this size is parsed whole to tell its kind (well under a second)
HEAD_BYTES = 1 << 20  # of a larger one, only the head is read: the top-level keys and the first images
SAMPLE_NAMES = 50  # image names per JSON that are looked up to find its image folder


class LayoutError(UserError):
    """No recognised layout, or an ambiguous one; the message lists what was found."""


@dataclass(frozen=True)
class SplitSource:
    annotations: str  # the split's JSON, relative to the export's root
    images: str  # the folder its file names are relative to ("" = the root)


@dataclass(frozen=True)
class Layout:
    style: str  # one of STYLES
    splits: dict[str, SplitSource]  # by split name, sorted

    def describe(self) -> str:
        return f"{self.style} layout, splits " + ", ".join(
            f"{name} ({source.annotations}, images in {source.images or '.'}/)"
            for name, source in self.splits.items()
        )


def is_ignored(path: str) -> bool:
    """Hidden files and folders, and the ``__MACOSX`` folder macOS adds to zips."""
    return any(part.startswith(".") or part == "__MACOSX" for part in PurePosixPath(path).parts)


def find_layout(files: Collection[str], names: Mapping[str, Sequence[str]]) -> Layout:
    """The layout of an export whose files (relative posix paths) are ``files``; ``names`` holds, for each
    JSON that is a COCO instances file, image file names it lists (a sample; may be empty)."""
    listing = {f for f in files if not is_ignored(f)}
    folders = _folders(listing)
    found: dict[str, dict[str, list[SplitSource]]] = {style: {} for style in STYLES}
    notes = []
    for path in sorted(p for p in names if p in listing):
        style, split, candidates = _candidates(path)
        images = _pick_images(candidates, names[path], listing, folders)
        problem = split_name_problem(split)
        if images is None:
            notes.append(f"{path} (COCO, but none of its images is in the export)")
        elif problem is not None:
            notes.append(f"{path} (COCO, but its split name {split!r} {problem})")
        else:
            found[style].setdefault(split, []).append(SplitSource(path, images))
    for style in STYLES:
        if found[style]:
            return Layout(style, _unique(found[style]))
    raise LayoutError(_nothing_found(listing, names, notes))


def _candidates(path: str) -> tuple[str, str, list[str]]:
    """(style, split name, folders its images may be in, most likely first) of one COCO JSON."""
    pure = PurePosixPath(path)
    here = _folder(pure.parent)
    up = _folder(pure.parent.parent) if here else None
    if pure.name == ROBOFLOW_JSON:
        return "roboflow", pure.parent.name or "default", [here]
    match = re.fullmatch(r"instances_(.+)\.json", pure.name)
    if match and pure.parent.name == "annotations":
        split, root = match[1], _folder(pure.parent.parent)
        return (
            "coco",
            split,
            _unique_list([_join(root, split), _join(root, "images", split), _join(root, "images"), root]),
        )
    split = pure.stem.removeprefix("instances_")
    around = [here, _join(here, "images")]
    if up is not None:
        around += [_join(up, split), _join(up, "images", split), up, _join(up, "images")]
    return "single json", split, _unique_list(around)


def _pick_images(
    candidates: list[str], names: Sequence[str], listing: set[str], folders: set[str]
) -> str | None:
    """The candidate folder under which most of ``names`` exist (the first on a tie), else any folder of the
    export (LVIS files name COCO's val2017/); without names, the first candidate that holds images. None
    when nothing fits."""
    existing = [c for c in candidates if c in folders]
    if names:
        for group in (existing, sorted(folders)):
            hits = [sum(_join(c, n) in listing for n in names) for c in group]
            if max(hits, default=0) > 0:
                return group[hits.index(max(hits))]
        return None
    with_images = [
        c for c in existing if any(_is_image(f) and f.startswith(c + "/" if c else "") for f in listing)
    ]
    return with_images[0] if with_images else None


def _unique(splits: dict[str, list[SplitSource]]) -> dict[str, SplitSource]:
    for name, sources in splits.items():
        if len(sources) > 1:
            raise LayoutError(
                f"two annotation files make a split named {name!r}: {sources[0].annotations} and "
                f"{sources[1].annotations}; keep one, or give the splits in data.local.splits by hand"
            )
    return {name: sources[0] for name, sources in sorted(splits.items())}


def _nothing_found(listing: set[str], names: Mapping[str, Sequence[str]], notes: list[str]) -> str:
    """One line: the JSON files found and why none is a split, and where the images are."""
    jsons = sorted(f for f in listing if f.endswith(".json"))
    said = [*notes, *(f"{f} (not COCO instances)" for f in jsons if f not in names)]
    found = f"{len(jsons)} JSON file(s): {_first(said)}" if jsons else "no JSON file"
    images = [f for f in listing if _is_image(f)]
    where = sorted({(_folder(PurePosixPath(f).parent) or ".") + "/" for f in images})
    found += f", {len(images)} image(s)" + (f" in {_first(where)}" if images else "")
    return (
        f"no COCO export layout recognised: found {found}; expected <split>/{ROBOFLOW_JSON} beside its "
        "images, annotations/instances_<split>.json with <split>/ or images/<split>/, or a COCO JSON beside "
        "an images folder"
    )


def _first(items: Sequence[str], count: int = 5) -> str:
    more = f"; and {len(items) - count} more" if len(items) > count else ""
    return "; ".join(items[:count]) + more


def _folders(listing: set[str]) -> set[str]:
    """Every folder that holds a listed file, at any depth; "" is the root."""
    out = {""}
    for path in listing:
        out.update(_folder(p) for p in PurePosixPath(path).parents)
    return out


def _folder(path: PurePosixPath) -> str:
    return "" if str(path) == "." else path.as_posix()


def _join(*parts: str) -> str:
    return "/".join(p for p in parts if p)


def _unique_list(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _is_image(path: str) -> bool:
    return path.lower().endswith(IMAGE_SUFFIXES)


# --- reading a folder ------------------------------------------------------------------------------


def list_files(root: Path) -> list[str]:
    """Every file under ``root`` as a relative posix path, hidden ones and ``__MACOSX`` left out."""
    out = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not is_ignored(d))
        base = Path(folder).relative_to(root).as_posix()
        out += [_join("" if base == "." else base, f) for f in sorted(files) if not is_ignored(f)]
    return out


def scan_json(path: Path) -> tuple[str, ...] | None:
    """Image file names a COCO instances JSON lists (up to ``SAMPLE_NAMES``; maybe none), or None when
    the file is not one: not an object with ``images`` and ``annotations``, or a panoptic file. A file
    over ``FULL_PARSE_BYTES`` is judged by its head, so that a 450 MB COCO file costs a millisecond."""
    try:
        if path.stat().st_size <= FULL_PARSE_BYTES:
            return _names_of(json.loads(path.read_bytes()))
        with open(path, "rb") as f:
            head = f.read(HEAD_BYTES).decode("utf-8", "replace")
    except (OSError, ValueError, RecursionError):
        return None
    if not head.lstrip().startswith("{") or '"segments_info"' in head:
        return None
    if not re.search(r'"(images|annotations)"\s*:\s*\[', head):
        return None
    found = re.findall(r'"file_name"\s*:\s*("(?:[^"\\]|\\.)*")', head)[:SAMPLE_NAMES]
    return tuple(n for n in (json.loads(s) for s in found) if image_file_name({"file_name": n}))


def _names_of(data: object) -> tuple[str, ...] | None:
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        return None
    annotations = data.get("annotations")
    if not isinstance(annotations, list) or any(
        isinstance(a, dict) and "segments_info" in a for a in annotations[:5]
    ):
        return None  # no annotations list, or a panoptic file
    names = (image_file_name(im) for im in data["images"][:SAMPLE_NAMES] if isinstance(im, dict))
    return tuple(n for n in names if n is not None)


def scan_folder(root: Path) -> tuple[list[str], dict[str, tuple[str, ...]]]:
    """What ``find_layout`` needs of a folder: its files, and the image names of each COCO JSON among them."""
    files = list_files(root)
    return files, {
        f: found for f in files if f.endswith(".json") and (found := scan_json(root / f)) is not None
    }


def find_folder_layout(root: Path) -> Layout:
    """``find_layout`` over a folder on disk; errors name the folder."""
    try:
        return find_layout(*scan_folder(root))
    except LayoutError as err:
        raise LayoutError(f"{root}: {err}") from None

"""The download stage for real COCO 2017: whole archives, or only the images a subset needs.

Either way the stage ends by writing ``manifest.json`` in the raw folder: what the extract stage
must unpack (archives) or copy (subset folders). The raw folder is a persistent DVC output, so a
rerun after an interruption resumes partial downloads and skips archives already verified.
"""

from __future__ import annotations

import json
import logging
import zipfile
from pathlib import Path
from typing import Any

from cocoseg.acquire.coco_http import download_archives, download_subset
from cocoseg.acquire.extract import write_manifest
from cocoseg.core.layout import (
    ANNOTATIONS_ARCHIVE,
    COCO_MD5,
    COCO_SIZES,
    VOC_CATEGORIES,
    annotation_file,
    annotation_member,
    archive_names,
    archive_stem,
    image_archive,
)
from cocoseg.core.params import ConfigError, Params

log = logging.getLogger(__name__)


def fetch_coco(params: Params, raw_dir: Path) -> None:
    coco, splits = params.data.coco, list(params.data.splits)
    # Subset mode never fetches the image archives, so it needs no checksum for them.
    image_zips = [image_archive(s) for s in splits] if coco.max_images is None else []
    md5s = _checksums(params, [ANNOTATIONS_ARCHIVE, *image_zips])
    # Official sizes are checked only for the official archives (a mirror may serve others).
    sizes = {
        name: COCO_SIZES.get(name) if md5s.get(name) == COCO_MD5.get(archive_stem(name)) else None
        for name in md5s
    }
    if coco.max_images is None:
        download_archives(coco.base_url, splits, raw_dir, md5s, sizes, coco.stall_seconds)
        write_manifest(raw_dir, "coco2017", archive_names(splits), [])
        return

    # Subset mode: the annotations archive only, then N images one by one, in parallel.
    download_archives(
        coco.base_url,
        [],
        raw_dir,
        {ANNOTATIONS_ARCHIVE: md5s[ANNOTATIONS_ARCHIVE]},
        {ANNOTATIONS_ARCHIVE: sizes[ANNOTATIONS_ARCHIVE]},
        coco.stall_seconds,
    )
    for split in splits:
        annotations = read_annotations(raw_dir / ANNOTATIONS_ARCHIVE, split)
        category_ids = _category_filter(params, annotations) if coco.subset_categories_only else None
        result = download_subset(
            coco.base_url,
            split,
            raw_dir,
            annotations,
            coco.max_images,
            params.base.seed,
            category_ids,
            coco.workers,
            stall_seconds=coco.stall_seconds,
        )
        log.info(
            "%s: %d images requested, %d fetched, %d already here, %d failed",
            split,
            result.requested,
            result.fetched,
            result.reused,
            result.failed,
        )
        _remove_unlisted_images(raw_dir, split)
    write_manifest(raw_dir, "coco2017-subset", [], ["annotations", *splits])


def read_annotations(archive: Path, split: str) -> dict[str, Any]:
    """The split's annotation file from the archive, with the shape subset mode relies on checked."""
    member = annotation_member(split)
    try:
        with zipfile.ZipFile(archive) as zf, zf.open(member) as f:
            data = json.load(f)
    except KeyError:
        raise ConfigError(f"{archive}: has no member {member!r}") from None
    except (
        zipfile.BadZipFile,
        json.JSONDecodeError,
        UnicodeDecodeError,
        RecursionError,
        NotImplementedError,
        RuntimeError,
    ) as err:
        raise ConfigError(f"{archive}: cannot read {member} ({type(err).__name__}: {err})") from None
    problem = _shape_problem(data)
    if problem:
        raise ConfigError(f"{archive}: {member}: {problem}")
    return data


def _shape_problem(data: Any) -> str | None:
    if not isinstance(data, dict) or not all(
        isinstance(data.get(k), list) for k in ("images", "annotations")
    ):
        return "expected a JSON object with 'images' and 'annotations' lists"
    for i, image in enumerate(data["images"]):
        if not isinstance(image, dict) or type(image.get("id")) is not int:
            return f"images[{i}] is not an object with an integer 'id'"
    for i, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict):
            return f"annotations[{i}] is not an object"
    categories = data.get("categories", [])
    if not isinstance(categories, list) or not all(
        isinstance(c, dict) and isinstance(c.get("name"), str) for c in categories
    ):
        return "'categories' must be a list of objects, each with a string 'name'"
    return None


def _remove_unlisted_images(raw_dir: Path, split: str) -> None:
    """Delete images left by an earlier subset (another seed or size): extract copies the whole folder."""
    listed = json.loads(annotation_file(raw_dir, split).read_text())["images"]
    keep = {image["file_name"] for image in listed}
    stale = [p for p in (raw_dir / split).iterdir() if p.is_file() and p.name not in keep]
    for path in stale:
        path.unlink()
    if stale:
        log.info("%s: removed %d images of an earlier subset", split, len(stale))


def _checksums(params: Params, names: list[str]) -> dict[str, str | None]:
    coco = params.data.coco
    if not coco.verify_checksums:
        log.warning("data.coco.verify_checksums is false: archives are NOT checked against their MD5")
        return {name: None for name in names}
    missing = [n for n in names if archive_stem(n) not in coco.md5]
    if missing:
        raise ConfigError(
            f"data.coco.md5: no checksum for {archive_stem(missing[0])!r}; give one, or set "
            f"data.coco.verify_checksums: false explicitly"
        )
    return {name: coco.md5[archive_stem(name)] for name in names}


def _category_filter(params: Params, annotations: dict[str, Any]) -> set[int] | None:
    selection = params.masks.categories
    if selection == "all":
        return None
    names = set(VOC_CATEGORIES if selection == "voc" else selection)
    return {
        c["id"] for c in annotations.get("categories", []) if c["name"] in names and type(c.get("id")) is int
    }

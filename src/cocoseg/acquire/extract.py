"""The extract stage: data/coco from what download (and import) left in data/raw, whatever the source.

data/coco is always the layout the masks stage reads: ``annotations/instances_<split>.json`` and
``<split>/<file name>`` for each split of ``data.splits``, with ``contents.tsv`` listing every file and its
digest. The download manifest's ``source`` says where they come from:

- ``sample``, ``coco2017``, ``coco2017-subset``: COCO's archives unzipped, COCO's folders copied;
- ``archive``: the user's export unpacked, its layout found (``cocoseg.acquire.layouts``), each split
  put in place (``cocoseg.acquire.export``);
- ``local``: the splits the import stage wrote under data/raw/local, hard-linked (they are this
  project's files, not the user's).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path, PurePosixPath

from cocoseg.acquire.export import place_split
from cocoseg.acquire.layouts import LayoutError, find_layout, scan_folder
from cocoseg.acquire.store import link_or_copy
from cocoseg.acquire.unpack import ExtractError, extract_archive, safe_member_path, unpack
from cocoseg.core.contents import copy_with_digest, digest_file, format_contents
from cocoseg.core.files import atomic_dir, write_json, write_text
from cocoseg.core.layout import COCO_CONTENTS, MANIFEST, annotation_member, archive_names

log = logging.getLogger(__name__)

__all__ = [
    "ExtractError",
    "extract_archive",
    "extract_coco",
    "safe_member_path",
    "verify_extracted",
    "write_manifest",
]

UNPACKED = ".export"  # where an export is unpacked inside the temporary data/coco, removed before it is done


def verify_extracted(root: Path, splits: tuple[str, ...], shown_root: Path | None = None) -> None:
    """Check ``root``; messages name paths under ``shown_root`` (the final folder, not a temporary one)."""
    shown = shown_root or root
    for split in splits:
        ann = annotation_member(split)
        if not (root / ann).is_file():
            raise ExtractError(f"{shown / ann}: expected annotation file is missing after extraction")
        images = root / split
        if not images.is_dir() or not any(images.iterdir()):
            raise ExtractError(f"{shown / split}: expected image folder is missing or empty after extraction")


def extract_coco(
    raw_dir: Path, out_dir: Path, splits: tuple[str, ...], local_dir: Path | None = None
) -> dict[str, int]:
    """Fill ``out_dir`` (replaced whole, atomically) from ``raw_dir`` (the download stage's folder) as its
    manifest says, or from ``local_dir`` (data/raw/local) when the manifest's source is ``local``; without
    a manifest, the official archives of ``splits`` are expected. Returns files written per archive,
    folder or split.

    ``out_dir/contents.tsv`` lists every file with its digest: the masks stage depends on it, so that
    ``dvc status`` checks data/coco once, as this stage's output, instead of once more as its input.
    """
    manifest = _read_manifest(raw_dir, splits)
    counts: dict[str, int] = {}
    digests: dict[str, str] = {}
    with atomic_dir(out_dir) as tmp:
        if manifest["source"] == "local":
            counts = _link_local(local_dir or raw_dir.parent / "local", splits, tmp, digests)
        elif manifest["source"] == "archive":
            for name in manifest["archives"]:
                counts.update(_extract_export(raw_dir / name, splits, tmp, digests))
        else:
            for name in manifest["archives"]:
                counts[name] = extract_archive(raw_dir / name, tmp, digests)
                log.info("extract: %s -> %d files", name, counts[name])
            for name in manifest["folders"]:
                counts[name] = _copy_folder(raw_dir, name, tmp, digests)
                log.info("extract: copied %s/ -> %d files", name, counts[name])
        verify_extracted(tmp, splits, shown_root=out_dir)
        write_text(tmp / COCO_CONTENTS, format_contents(digests))  # last: newer than every file it lists
    return counts


def _extract_export(
    archive: Path, splits: tuple[str, ...], tmp: Path, digests: dict[str, str]
) -> dict[str, int]:
    """Unpack the user's export, find its layout, and put ``splits`` in place under ``tmp``."""
    scratch = tmp / UNPACKED
    unpacked: dict[str, str] = {}
    unpack(archive, scratch, unpacked)
    try:
        layout = find_layout(*scan_folder(scratch))
    except LayoutError as err:
        raise LayoutError(f"{archive}: {err}") from None
    log.info("extract: %s: %s", archive.name, layout.describe())
    lacking = [s for s in splits if s not in layout.splits]
    if lacking:
        raise ExtractError(
            f"{archive}: data.splits: the export has no split {lacking[0]!r}; its splits: "
            f"{list(layout.splits)} ({layout.style} layout)"
        )
    counts = {}
    for split in splits:
        source = layout.splits[split]
        placed = place_split(split, scratch / source.annotations, scratch / source.images, tmp, link_or_copy)
        for path, relative in placed.files:
            digests[relative] = unpacked[path.relative_to(scratch).as_posix()]
        counts[split] = len(placed.files)
    shutil.rmtree(scratch)
    return counts


def _link_local(
    local_dir: Path, splits: tuple[str, ...], tmp: Path, digests: dict[str, str]
) -> dict[str, int]:
    """Hard-link each split the import stage wrote (data/raw/local/<split>, already in data/coco's layout)."""
    counts = {}
    for split in splits:
        folder = local_dir / split
        if not (folder / annotation_member(split)).is_file():
            raise ExtractError(
                f"{folder}: split {split!r} was not imported; data.local.splits needs an entry "
                f"for each split of data.splits (dvc repro runs its import stage)"
            )
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        for path in files:
            relative = path.relative_to(folder).as_posix()
            link_or_copy(path, tmp / relative)
            digests[relative] = digest_file(path)
        counts[split] = len(files)
        log.info("extract: linked %s -> %d files", folder, len(files))
    return counts


def _copy_folder(raw_dir: Path, name: str, target: Path, digests: dict[str, str]) -> int:
    folder = raw_dir / name
    if not folder.is_dir():
        raise ExtractError(f"{folder}: folder listed in {raw_dir / MANIFEST} is missing")
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    for path in files:
        relative = path.relative_to(raw_dir).as_posix()
        dest = target / relative
        dest.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "rb") as src, open(dest, "wb") as out:
            digests[relative] = copy_with_digest(src, out)
    return len(files)


def write_manifest(raw_dir: Path, source: str, archives: list[str], folders: list[str]) -> None:
    """The download stage's note to extract: the source, which archives to unpack, which folders to copy."""
    write_json(raw_dir / MANIFEST, {"source": source, "archives": archives, "folders": folders})


def _read_manifest(raw_dir: Path, splits: tuple[str, ...]) -> dict:
    path = raw_dir / MANIFEST
    if not path.is_file():
        return {"source": "coco2017", "archives": archive_names(splits), "folders": []}
    try:
        manifest = json.loads(path.read_text())
        entries = {"archives": list(manifest["archives"]), "folders": list(manifest["folders"])}
        source = str(manifest.get("source", "coco2017"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError, KeyError, TypeError) as err:
        raise ExtractError(f"{path}: unreadable manifest ({err}); rerun the download stage") from None
    for key, names in entries.items():
        for name in names:
            # a name must stay inside the raw folder: never an absolute path, '..' or a drive
            if (
                not isinstance(name, str)
                or not name
                or PurePosixPath(name).name != name
                or name in (".", "..")
            ):
                raise ExtractError(
                    f"{path}: {key} entry {name!r} is not a plain name inside {raw_dir}; "
                    f"rerun the download stage"
                )
    return {"source": source, **entries}

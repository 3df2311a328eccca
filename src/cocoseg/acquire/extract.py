"""Unpack COCO archives safely and check that what the masks stage needs is there."""

from __future__ import annotations

import json
import logging
import shutil
import zipfile
from pathlib import Path, PurePosixPath

from cocoseg.core.errors import UserError
from cocoseg.core.files import atomic_dir, write_json
from cocoseg.core.layout import MANIFEST, annotation_member, archive_names

log = logging.getLogger(__name__)


class ExtractError(UserError, RuntimeError):
    """An archive is missing, corrupt, unsafe, or lacks an expected file; the message names it."""


def safe_member_path(target: Path, member: str, archive: Path) -> Path:
    """Where ``member`` lands under ``target``; refuse absolute paths and any '..' escape."""
    pure = PurePosixPath(member.replace("\\", "/"))
    if pure.is_absolute() or ".." in pure.parts or (pure.parts and pure.parts[0].endswith(":")):
        raise ExtractError(f"{archive}: member {member!r} would be written outside {target}; refusing")
    dest = (target / pure).resolve()
    if not dest.is_relative_to(target.resolve()):
        raise ExtractError(f"{archive}: member {member!r} would be written outside {target}; refusing")
    return dest


def extract_archive(archive: Path, target: Path) -> int:
    """Extract every member of a zip archive into ``target``; return the number of files written."""
    if not archive.is_file():
        raise ExtractError(f"{archive}: archive not found (did the download stage run?)")
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as err:
        raise ExtractError(f"{archive}: not a valid zip archive ({err})") from None
    count = 0
    with zf:
        members = zf.infolist()
        for info in members:  # check every path before writing anything
            safe_member_path(target, info.filename, archive)
        for info in members:
            dest = safe_member_path(target, info.filename, archive)
            if info.is_dir():
                dest.mkdir(parents=True, exist_ok=True)
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                with zf.open(info) as src, open(dest, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
            except (zipfile.BadZipFile, OSError, EOFError) as err:
                raise ExtractError(f"{archive}: member {info.filename!r} is corrupt ({err})") from None
            count += 1
    return count


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


def extract_coco(raw_dir: Path, out_dir: Path, splits: tuple[str, ...]) -> dict[str, int]:
    """Unpack what ``raw_dir/manifest.json`` lists into ``out_dir`` (replaced whole, atomically).

    The manifest, written by the download stage, names the archives to unzip and the folders to
    copy (subset mode writes ``annotations/`` and ``<split>/`` directly); without one, the official
    archives of ``splits`` are expected.
    """
    manifest = _read_manifest(raw_dir, splits)
    counts: dict[str, int] = {}
    with atomic_dir(out_dir) as tmp:
        for name in manifest["archives"]:
            counts[name] = extract_archive(raw_dir / name, tmp)
            log.info("extract: %s -> %d files", name, counts[name])
        for name in manifest["folders"]:
            folder = raw_dir / name
            if not folder.is_dir():
                raise ExtractError(f"{folder}: folder listed in {raw_dir / MANIFEST} is missing")
            shutil.copytree(folder, tmp / name, dirs_exist_ok=True)
            counts[name] = sum(1 for p in folder.rglob("*") if p.is_file())
            log.info("extract: copied %s/ -> %d files", name, counts[name])
        verify_extracted(tmp, splits, shown_root=out_dir)
    return counts


def write_manifest(raw_dir: Path, source: str, archives: list[str], folders: list[str]) -> None:
    """The download stage's note to extract: which archives to unzip, which folders to copy."""
    write_json(raw_dir / MANIFEST, {"source": source, "archives": archives, "folders": folders})


def _read_manifest(raw_dir: Path, splits: tuple[str, ...]) -> dict:
    path = raw_dir / MANIFEST
    if not path.is_file():
        return {"archives": archive_names(splits), "folders": []}
    try:
        manifest = json.loads(path.read_text())
        return {"archives": list(manifest["archives"]), "folders": list(manifest["folders"])}
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ExtractError(f"{path}: unreadable manifest ({err}); rerun the download stage") from None

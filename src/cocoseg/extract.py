"""Unpack COCO archives safely and check that what the masks stage needs is there."""

from __future__ import annotations

import logging
import shutil
import zipfile
from pathlib import Path, PurePosixPath

from cocoseg.io import atomic_dir

log = logging.getLogger(__name__)


class ExtractError(RuntimeError):
    """An archive is missing, corrupt, unsafe, or lacks an expected file; the message names it."""


def archive_names(splits: tuple[str, ...]) -> list[str]:
    return ["annotations_trainval2017.zip", *(f"{split}.zip" for split in splits)]


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
        ann = Path("annotations") / f"instances_{split}.json"
        if not (root / ann).is_file():
            raise ExtractError(f"{shown / ann}: expected annotation file is missing after extraction")
        images = root / split
        if not images.is_dir() or not any(images.iterdir()):
            raise ExtractError(f"{shown / split}: expected image folder is missing or empty after extraction")


def extract_coco(raw_dir: Path, out_dir: Path, splits: tuple[str, ...]) -> dict[str, int]:
    """Unpack the archives of ``splits`` from ``raw_dir`` into ``out_dir`` (replaced whole, atomically).

    A raw folder that already holds the unpacked layout (subset mode writes ``annotations/`` and
    ``<split>/`` directly) is copied instead of unzipped.
    """
    counts: dict[str, int] = {}
    with atomic_dir(out_dir) as tmp:
        for name in archive_names(splits):
            archive = raw_dir / name
            unpacked = raw_dir / ("annotations" if name.startswith("annotations") else name[:-4])
            if not archive.exists() and unpacked.is_dir():
                shutil.copytree(unpacked, tmp / unpacked.name, dirs_exist_ok=True)
                counts[name] = sum(1 for p in unpacked.rglob("*") if p.is_file())
            else:
                counts[name] = extract_archive(archive, tmp)
            log.info("extract: %s -> %d files", name, counts[name])
        verify_extracted(tmp, splits, shown_root=out_dir)
    return counts

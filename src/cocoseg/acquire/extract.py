"""Unpack COCO archives safely and check that what the masks stage needs is there."""

from __future__ import annotations

import json
import logging
import shutil
import zipfile
from pathlib import Path, PurePosixPath

from cocoseg.core.contents import copy_with_digest, format_contents
from cocoseg.core.errors import UserError
from cocoseg.core.files import atomic_dir, write_json, write_text
from cocoseg.core.layout import COCO_CONTENTS, MANIFEST, annotation_member, archive_names
from cocoseg.core.stage import machine_refusal

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


# Deflate cannot shrink data more than ~1032:1; a member packed tighter than this, or a whole archive,
# is a zip bomb, not a dataset (COCO's JPEGs barely shrink; its JSON shrinks about 7:1).
MAX_RATIO = 200
_SUPPORTED = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}


def extract_archive(archive: Path, target: Path, digests: dict[str, str] | None = None) -> int:
    """Extract every member of a zip archive into ``target``; return the number of files written.

    ``digests`` receives each written file's digest (``cocoseg.core.contents``), by member name.

    Every member is checked before the first byte is written: its path, its compression, that it is
    not encrypted, that no name is both a file and a folder, and that the declared sizes fit the free
    space at a sane compression ratio. zipfile stops a member at its declared size (and then fails
    its CRC), so the declared sizes bound what is written.
    """
    if not archive.is_file():
        raise ExtractError(f"{archive}: archive not found (did the download stage run?)")
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
        raise ExtractError(f"{archive}: not a valid zip archive ({err})") from None
    count = 0
    digests = {} if digests is None else digests
    with zf:
        members = zf.infolist()
        check_members(archive, target, members)
        for info in members:
            dest = safe_member_path(target, info.filename, archive)
            if info.is_dir():
                dest.mkdir(parents=True, exist_ok=True)
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                with zf.open(info) as src, open(dest, "wb") as out:
                    digests[info.filename] = copy_with_digest(src, out)
            except (zipfile.BadZipFile, OSError, EOFError, ValueError, RuntimeError,
                    NotImplementedError) as err:
                if machine_refusal(err):  # disk full, permission: the machine's refusal, not the archive's
                    raise ExtractError(f"{archive}: cannot write member {info.filename!r}: "
                                       f"{machine_refusal(err, with_file=False)}") from None
                raise ExtractError(f"{archive}: member {info.filename!r} is corrupt ({err})") from None
            count += 1
    return count


def check_members(archive: Path, target: Path, members: list[zipfile.ZipInfo]) -> None:
    """Refuse an archive that cannot be unpacked whole and safely, before anything is written."""
    kinds: dict[str, str] = {}  # normalised path -> "file" | "folder"
    total = packed = 0
    for info in members:
        name = info.filename
        dest = safe_member_path(target, name, archive)
        if info.flag_bits & 0x1:
            raise ExtractError(f"{archive}: member {name!r} is encrypted; unpack it by hand with its password")
        if info.compress_type not in _SUPPORTED:
            raise ExtractError(f"{archive}: member {name!r} uses compression method {info.compress_type}, "
                               f"which cannot be unpacked here (supported: stored, deflate, bzip2, lzma)")
        key = dest.relative_to(target.resolve()).as_posix()
        kind = "folder" if info.is_dir() else "file"
        parents = [p.as_posix() for p in PurePosixPath(key).parents if p.as_posix() != "."]
        clash = [p for p in parents if kinds.get(p) == "file"]
        if kinds.get(key, kind) != kind or (kind == "file" and key in kinds) or clash:
            raise ExtractError(f"{archive}: member {name!r} clashes with another member of the same name "
                               f"{'(' + clash[0] + ' is a file)' if clash else '(a file and a folder, or twice)'}")
        kinds[key] = kind
        kinds.update({p: kinds.get(p, "folder") for p in parents})
        if info.file_size > (1 << 20) and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            raise ExtractError(f"{archive}: member {name!r} claims {info.file_size} bytes from "
                               f"{info.compress_size} (over {MAX_RATIO}:1); refusing a likely zip bomb")
        total += info.file_size
        packed += info.compress_size
    if total > (1 << 20) and total > MAX_RATIO * max(packed, 1):
        raise ExtractError(f"{archive}: members claim {total} bytes from {packed} (over {MAX_RATIO}:1); "
                           f"refusing a likely zip bomb")
    target.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(target).free
    if total > free:
        raise ExtractError(f"{archive}: unpacking needs {total / 1e9:.2f} GB, only {free / 1e9:.2f} GB free "
                           f"under {target}")


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
    archives of ``splits`` are expected. ``out_dir/contents.tsv`` lists every file with its digest:
    the masks stage depends on it, so that ``dvc status`` checks data/coco once, as this stage's
    output, instead of once more as the masks stage's input.
    """
    manifest = _read_manifest(raw_dir, splits)
    counts: dict[str, int] = {}
    digests: dict[str, str] = {}
    with atomic_dir(out_dir) as tmp:
        for name in manifest["archives"]:
            counts[name] = extract_archive(raw_dir / name, tmp, digests)
            log.info("extract: %s -> %d files", name, counts[name])
        for name in manifest["folders"]:
            counts[name] = _copy_folder(raw_dir, name, tmp, digests)
            log.info("extract: copied %s/ -> %d files", name, counts[name])
        verify_extracted(tmp, splits, shown_root=out_dir)
        write_text(tmp / COCO_CONTENTS, format_contents(digests))  # last: newer than every file it lists
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
    """The download stage's note to extract: which archives to unzip, which folders to copy."""
    write_json(raw_dir / MANIFEST, {"source": source, "archives": archives, "folders": folders})


def _read_manifest(raw_dir: Path, splits: tuple[str, ...]) -> dict:
    path = raw_dir / MANIFEST
    if not path.is_file():
        return {"archives": archive_names(splits), "folders": []}
    try:
        manifest = json.loads(path.read_text())
        entries = {"archives": list(manifest["archives"]), "folders": list(manifest["folders"])}
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError, KeyError, TypeError) as err:
        raise ExtractError(f"{path}: unreadable manifest ({err}); rerun the download stage") from None
    for key, names in entries.items():
        for name in names:
            # a name must stay inside the raw folder: never an absolute path, '..' or a drive
            if not isinstance(name, str) or not name or PurePosixPath(name).name != name or name in (".", ".."):
                raise ExtractError(f"{path}: {key} entry {name!r} is not a plain name inside {raw_dir}; "
                                   f"rerun the download stage")
    return entries

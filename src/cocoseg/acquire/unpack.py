"""Unpack zip and tar archives safely: every member is checked before the first byte is written.

Refused, with one line naming the archive and the member: absolute paths, ``..`` escapes, links that
point outside the archive, devices and other special files, encrypted or unknown compression, a name
that is both a file and a folder (or given twice), and sizes that do not fit the disk or that a dataset
cannot have (a bomb). A link to another member is written as a copy of that member's bytes.
"""

from __future__ import annotations

import posixpath
import shutil
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from cocoseg.core.contents import copy_with_digest
from cocoseg.core.errors import UserError
from cocoseg.core.stage import machine_refusal


class ExtractError(UserError, RuntimeError):
    """An archive is missing, corrupt, unsafe, or lacks an expected file; the message names it."""


# Deflate cannot shrink data more than ~1032:1; a member packed tighter than this, or a whole archive,
# is a bomb, not a dataset (COCO's JPEGs barely shrink; its JSON shrinks about 7:1).
MAX_RATIO = 200
_SUPPORTED = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
_TAR_ERRORS = (tarfile.TarError, OSError, EOFError, ValueError, RuntimeError)


@dataclass(frozen=True)
class Member:
    """What the checks need of one member, zip or tar alike."""

    name: str
    is_dir: bool
    size: int  # bytes once unpacked
    packed: int | None = None  # bytes in the archive, where the format says (zip); None for tar


def safe_member_path(target: Path, member: str, archive: Path) -> Path:
    """Where ``member`` lands under ``target``; refuse absolute paths and any '..' escape."""
    pure = PurePosixPath(member.replace("\\", "/"))
    if pure.is_absolute() or ".." in pure.parts or (pure.parts and pure.parts[0].endswith(":")):
        raise ExtractError(f"{archive}: member {member!r} would be written outside {target}; refusing")
    dest = (target / pure).resolve()
    if not dest.is_relative_to(target.resolve()):
        raise ExtractError(f"{archive}: member {member!r} would be written outside {target}; refusing")
    return dest


def unpack(archive: Path, target: Path, digests: dict[str, str] | None = None) -> int:
    """Unpack a zip or a tar (plain, gzip, bzip2 or xz), told apart by content, not by name (a Roboflow
    URL has no suffix); return the number of files written. ``digests`` receives each file's digest
    (``cocoseg.core.contents``) by its path under ``target``."""
    if not archive.is_file():
        raise ExtractError(f"{archive}: archive not found (did the download stage run?)")
    with open(archive, "rb") as f:
        head = f.read(4)
    if head.startswith(b"PK") or archive.suffix.lower() == ".zip" or not tarfile.is_tarfile(archive):
        return extract_archive(archive, target, digests)
    return extract_tar(archive, target, digests)


def extract_archive(archive: Path, target: Path, digests: dict[str, str] | None = None) -> int:
    """Extract every member of a zip archive into ``target``; return the number of files written.

    ``digests`` receives each written file's digest (``cocoseg.core.contents``), by its path under
    ``target``. zipfile stops a member at its declared size (and then fails its CRC), so the declared
    sizes checked beforehand bound what is written.
    """
    if not archive.is_file():
        raise ExtractError(f"{archive}: archive not found (did the download stage run?)")
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
        raise ExtractError(f"{archive}: not a valid zip archive ({err})") from None
    digests = {} if digests is None else digests
    with zf:
        infos = zf.infolist()
        for info in infos:
            _check_zip_member(archive, info)
        check_members(
            archive, target, [Member(i.filename, i.is_dir(), i.file_size, i.compress_size) for i in infos]
        )
        for info in infos:
            try:
                with zf.open(info) as src:
                    _write_member(archive, target, info.filename, info.is_dir(), src, digests)
            except (
                zipfile.BadZipFile,
                OSError,
                EOFError,
                ValueError,
                RuntimeError,
                NotImplementedError,
            ) as err:
                raise _member_error(archive, info.filename, err) from None
    return sum(not info.is_dir() for info in infos)


def _check_zip_member(archive: Path, info: zipfile.ZipInfo) -> None:
    if info.flag_bits & 0x1:
        raise ExtractError(
            f"{archive}: member {info.filename!r} is encrypted; unpack it by hand with its password"
        )
    if info.compress_type not in _SUPPORTED:
        raise ExtractError(
            f"{archive}: member {info.filename!r} uses compression method {info.compress_type}, "
            f"which cannot be unpacked here (supported: stored, deflate, bzip2, lzma)"
        )


def extract_tar(archive: Path, target: Path, digests: dict[str, str] | None = None) -> int:
    """Extract a tar archive (any compression tarfile reads) into ``target``; return the files written.

    The member list is read whole first (for a compressed tar, one extra pass of decompression), so
    that nothing is written unless every member passes.
    """
    digests = {} if digests is None else digests
    try:
        with tarfile.open(archive, "r:*") as tf:
            members = tf.getmembers()
            by_name = {posixpath.normpath(m.name): m for m in members}
            for info in members:
                _check_tar_member(archive, target, by_name, info)
            check_members(
                archive, target, [Member(i.name, i.isdir(), _tar_member(by_name, i).size) for i in members]
            )
            for info in members:
                src = None if info.isdir() else tf.extractfile(_tar_member(by_name, info))
                _write_member(archive, target, info.name, info.isdir(), src, digests)
    except ExtractError:
        raise
    except _TAR_ERRORS as err:
        if machine_refusal(err):  # disk full, permission: the machine's refusal, not the archive's
            raise ExtractError(f"{archive}: cannot unpack: {machine_refusal(err, with_file=False)}") from None
        raise ExtractError(f"{archive}: not a valid tar archive, or a corrupt one ({err})") from None
    return sum(not info.isdir() for info in members)


def _member_error(archive: Path, name: str, err: BaseException) -> ExtractError:
    """A member that could not be written: the machine's refusal (disk full, permission) said as such,
    anything else a corrupt member."""
    refusal = machine_refusal(err, with_file=False)
    if refusal:
        return ExtractError(f"{archive}: cannot write member {name!r}: {refusal}")
    return ExtractError(f"{archive}: member {name!r} is corrupt ({err})")


def _check_tar_member(
    archive: Path, target: Path, by_name: dict[str, tarfile.TarInfo], info: tarfile.TarInfo
) -> None:
    """Regular files, folders, and links to files inside; nothing else (devices, fifos, links out)."""
    if not (info.isfile() or info.isdir() or info.issym() or info.islnk()):
        raise ExtractError(f"{archive}: member {info.name!r} is a device or another special file; refusing")
    safe_member_path(target, info.name, archive)
    linked = _link_target(by_name, info)
    if (info.issym() or info.islnk()) and (linked is None or not linked.isfile()):
        raise ExtractError(
            f"{archive}: member {info.name!r} links to {info.linkname!r}, which is not a "
            f"file in the archive; refusing"
        )


def _link_target(by_name: dict[str, tarfile.TarInfo], info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    """The member whose bytes ``info`` holds: itself, or the member a link names (a symlink's path is
    relative to its folder, a hard link's to the archive's root); None when that is no member (outside
    the archive, or missing). ``by_name``: the members by normalised name."""
    if not (info.issym() or info.islnk()):
        return info
    base = posixpath.dirname(info.name) if info.issym() else ""
    return by_name.get(posixpath.normpath(posixpath.join(base, info.linkname)))


def _tar_member(by_name: dict[str, tarfile.TarInfo], info: tarfile.TarInfo) -> tarfile.TarInfo:
    """``_link_target`` of a member that passed ``_check_tar_member``."""
    linked = _link_target(by_name, info)
    assert linked is not None
    return linked


def check_members(archive: Path, target: Path, members: list[Member]) -> None:
    """Refuse an archive that cannot be unpacked whole and safely, before anything is written."""
    kinds: dict[str, str] = {}  # normalised path -> "file" | "folder"
    total = packed = 0
    for member in members:
        name = member.name
        dest = safe_member_path(target, name, archive)
        key = dest.relative_to(target.resolve()).as_posix()
        kind = "folder" if member.is_dir else "file"
        parents = [p.as_posix() for p in PurePosixPath(key).parents if p.as_posix() != "."]
        clash = [p for p in parents if kinds.get(p) == "file"]
        if kinds.get(key, kind) != kind or (kind == "file" and key in kinds) or clash:
            raise ExtractError(
                f"{archive}: member {name!r} clashes with another member of the same name "
                f"{'(' + clash[0] + ' is a file)' if clash else '(a file and a folder, or twice)'}"
            )
        kinds[key] = kind
        kinds.update({p: kinds.get(p, "folder") for p in parents})
        if (
            member.packed is not None
            and member.size > (1 << 20)
            and member.size > MAX_RATIO * max(member.packed, 1)
        ):
            raise ExtractError(
                f"{archive}: member {name!r} claims {member.size} bytes from "
                f"{member.packed} (over {MAX_RATIO}:1); refusing a likely zip bomb"
            )
        total += member.size
        packed += member.packed if member.packed is not None else 0
    is_zip = any(m.packed is not None for m in members)
    if not is_zip:
        packed = archive.stat().st_size  # a tar's members carry no packed size: the whole file's
    if total > (1 << 20) and total > MAX_RATIO * max(packed, 1):
        raise ExtractError(
            f"{archive}: members claim {total} bytes from {packed} (over {MAX_RATIO}:1); "
            f"refusing a likely {'zip' if is_zip else 'tar'} bomb"
        )
    target.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(target).free
    if total > free:
        raise ExtractError(
            f"{archive}: unpacking needs {total / 1e9:.2f} GB, only {free / 1e9:.2f} GB free under {target}"
        )


def _write_member(
    archive: Path, target: Path, name: str, is_dir: bool, src: IO[bytes] | None, digests: dict[str, str]
) -> None:
    dest = safe_member_path(target, name, archive)
    if is_dir:
        dest.mkdir(parents=True, exist_ok=True)
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    assert src is not None  # only folders have no bytes
    with open(dest, "wb") as out:
        digests[dest.relative_to(target.resolve()).as_posix()] = copy_with_digest(src, out)

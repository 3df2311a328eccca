"""Unpacking tar archives with the zip checks: good archives of each compression, and each unsafe member
refused with one line before anything is written."""

from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from cocoseg.acquire.unpack import ExtractError, unpack


def sha256_128(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]


def add_file(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


def add_entry(tf: tarfile.TarFile, name: str, kind: bytes, linkname: str = "") -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    tf.addfile(info)


def write_tar(path: Path, build, mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tf:
        build(tf)
    return path


def export(tf: tarfile.TarFile) -> None:
    add_entry(tf, "./train", tarfile.DIRTYPE)
    add_file(tf, "./train/_annotations.coco.json", b"{}")
    add_file(tf, "./train/a.jpg", b"A")


def files_under(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("mode", ["w", "w:gz", "w:bz2", "w:xz"])
def test_tar_of_any_compression_unpacks_with_digests(tmp_path: Path, mode: str) -> None:
    archive = write_tar(tmp_path / "export", export, mode)  # no suffix, as a Roboflow URL gives
    digests: dict[str, str] = {}
    assert unpack(archive, tmp_path / "out", digests) == 2
    assert files_under(tmp_path / "out") == {"train/_annotations.coco.json": b"{}", "train/a.jpg": b"A"}
    assert digests == {"train/_annotations.coco.json": sha256_128(b"{}"), "train/a.jpg": sha256_128(b"A")}


def test_zip_is_told_from_tar_by_content(tmp_path: Path) -> None:
    archive = tmp_path / "export"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("valid/b.jpg", b"B")
    assert unpack(archive, tmp_path / "out") == 1
    assert files_under(tmp_path / "out") == {"valid/b.jpg": b"B"}


def test_links_to_files_inside_are_written_as_copies(tmp_path: Path) -> None:
    def build(tf: tarfile.TarFile) -> None:
        export(tf)
        add_entry(tf, "./train/hard.jpg", tarfile.LNKTYPE, "./train/a.jpg")  # hard link: from the root
        add_entry(tf, "./valid/soft.jpg", tarfile.SYMTYPE, "../train/a.jpg")  # symlink: from its folder

    unpack(write_tar(tmp_path / "x.tgz", build), tmp_path / "out")
    out = tmp_path / "out"
    assert files_under(out)["train/hard.jpg"] == files_under(out)["valid/soft.jpg"] == b"A"
    assert not (out / "valid" / "soft.jpg").is_symlink()
    assert (out / "train" / "hard.jpg").stat().st_ino != (out / "train" / "a.jpg").stat().st_ino


def _bomb(tf: tarfile.TarFile) -> None:
    add_file(tf, "zeros.jpg", bytes(8 << 20))  # 8 MiB that gzip packs into about 8 KB


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda tf: add_file(tf, "/etc/evil", b"x"), r"member '/etc/evil' would be written outside"),
        (
            lambda tf: add_file(tf, "train/../../evil", b"x"),
            r"member 'train/\.\./\.\./evil' would be written outside",
        ),
        (
            lambda tf: add_entry(tf, "train/link", tarfile.SYMTYPE, "/etc/passwd"),
            r"member 'train/link' links to '/etc/passwd', which is not a file in the archive; refusing",
        ),
        (
            lambda tf: add_entry(tf, "train/link", tarfile.SYMTYPE, "../../outside.jpg"),
            r"member 'train/link' links to '\.\./\.\./outside\.jpg', which is not a file in the archive",
        ),
        (
            lambda tf: add_entry(tf, "train/link", tarfile.LNKTYPE, "train/missing.jpg"),
            r"member 'train/link' links to 'train/missing\.jpg', which is not a file in the archive",
        ),
        (
            lambda tf: add_entry(tf, "train/dir-link", tarfile.SYMTYPE, "."),
            r"member 'train/dir-link' links to '\.', which is not a file in the archive",
        ),
        (
            lambda tf: add_entry(tf, "dev/sda", tarfile.BLKTYPE),
            r"member 'dev/sda' is a device or another special file",
        ),
        (
            lambda tf: add_entry(tf, "fifo", tarfile.FIFOTYPE),
            r"member 'fifo' is a device or another special file",
        ),
        (
            lambda tf: (add_file(tf, "a.jpg", b"1"), add_file(tf, "a.jpg", b"2")),
            r"member 'a\.jpg' clashes with another member of the same name \(a file and a folder, or twice\)",
        ),
        (
            lambda tf: (add_file(tf, "a", b"1"), add_file(tf, "a/b.jpg", b"2")),
            r"member 'a/b\.jpg' clashes with another member of the same name \(a is a file\)",
        ),
        (_bomb, r"members claim 838861\d bytes from \d+ \(over 200:1\); refusing a likely tar bomb"),
    ],
)
def test_unsafe_tar_is_refused_before_anything_is_written(tmp_path: Path, build, message: str) -> None:
    def everything(tf: tarfile.TarFile) -> None:
        export(tf)  # good members first: they must not be written either
        build(tf)

    archive = write_tar(tmp_path / "x.tar.gz", everything)
    out = tmp_path / "out"
    with pytest.raises(ExtractError, match=rf"^{archive}: {message}"):
        unpack(archive, out)
    assert files_under(out) == {}
    assert not (tmp_path / "evil").exists() and not (tmp_path.parent / "evil").exists()


def test_neither_zip_nor_tar_and_a_truncated_tar_fail_clearly(tmp_path: Path) -> None:
    (tmp_path / "page.html").write_bytes(b"<html>Sign in to Roboflow</html>")
    with pytest.raises(ExtractError, match=r"page\.html: not a valid zip archive"):
        unpack(tmp_path / "page.html", tmp_path / "out")
    data = write_tar(
        tmp_path / "x.tgz", lambda tf: add_file(tf, "a.jpg", bytes(range(256)) * 400)
    ).read_bytes()
    (tmp_path / "x.tgz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ExtractError, match=r"x\.tgz: not a valid tar archive, or a corrupt one \("):
        unpack(tmp_path / "x.tgz", tmp_path / "out")

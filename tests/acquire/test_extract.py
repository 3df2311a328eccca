"""Unpacking archives: the good case, unsafe member paths, corrupt archives and missing files."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from cocoseg.acquire.extract import (
    ExtractError,
    extract_archive,
    extract_coco,
    safe_member_path,
    write_manifest,
)

SPLITS = ("val2017",)


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def good_archives(raw: Path, images: dict[str, bytes] | None = None) -> Path:
    raw.mkdir(parents=True, exist_ok=True)
    write_zip(
        raw / "annotations_trainval2017.zip",
        {"annotations/": b"", "annotations/instances_val2017.json": b"{}"},
    )
    write_zip(raw / "val2017.zip", images or {"val2017/": b"", "val2017/a.jpg": b"A", "val2017/b.jpg": b"BB"})
    return raw


def entries(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_extracts_good_archives(tmp_path: Path) -> None:
    raw = good_archives(tmp_path / "raw")
    counts = extract_coco(raw, tmp_path / "coco", SPLITS)
    assert counts == {"annotations_trainval2017.zip": 1, "val2017.zip": 2}
    assert entries(tmp_path / "coco") == [
        "annotations",
        "annotations/instances_val2017.json",
        "contents.tsv",
        "val2017",
        "val2017/a.jpg",
        "val2017/b.jpg",
    ]
    assert (tmp_path / "coco" / "val2017" / "b.jpg").read_bytes() == b"BB"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["coco", "raw"]  # no temporary folder left


def sha256_128(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]


def test_contents_lists_every_file_with_its_digest_and_follows_one_byte(tmp_path: Path) -> None:
    """What the masks stage depends on instead of data/coco: it must change when any file does."""
    raw = good_archives(tmp_path / "raw")
    extract_coco(raw, tmp_path / "coco", SPLITS)
    contents = (tmp_path / "coco" / "contents.tsv").read_text()
    assert contents == (
        "path\tsha256_128\n"
        f"annotations/instances_val2017.json\t{sha256_128(b'{}')}\n"
        f"val2017/a.jpg\t{sha256_128(b'A')}\nval2017/b.jpg\t{sha256_128(b'BB')}\n"
    )
    extract_coco(raw, tmp_path / "again", SPLITS)
    assert (tmp_path / "again" / "contents.tsv").read_text() == contents  # no times, no paths outside
    write_zip(raw / "val2017.zip", {"val2017/": b"", "val2017/a.jpg": b"A", "val2017/b.jpg": b"BC"})
    extract_coco(raw, tmp_path / "coco", SPLITS)
    changed = (tmp_path / "coco" / "contents.tsv").read_text()
    assert changed == contents.replace(sha256_128(b"BB"), sha256_128(b"BC"))


def test_replaces_an_older_extraction_whole(tmp_path: Path) -> None:
    raw = good_archives(tmp_path / "raw")
    (tmp_path / "coco" / "val2017").mkdir(parents=True)
    (tmp_path / "coco" / "val2017" / "stale.jpg").write_bytes(b"old")
    extract_coco(raw, tmp_path / "coco", SPLITS)
    assert not (tmp_path / "coco" / "val2017" / "stale.jpg").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["coco", "raw"]


def test_manifest_folders_are_copied_and_leftover_archives_ignored(tmp_path: Path) -> None:
    raw = good_archives(tmp_path / "raw", {"val2017/old.jpg": b"OLD"})  # left by an earlier archives run
    (raw / "annotations").mkdir()
    (raw / "annotations" / "instances_val2017.json").write_text("{}")
    (raw / "val2017").mkdir()
    (raw / "val2017" / "a.jpg").write_bytes(b"A")
    write_manifest(raw, "coco2017-subset", [], ["annotations", "val2017"])
    counts = extract_coco(raw, tmp_path / "coco", SPLITS)
    assert counts == {"annotations": 1, "val2017": 1}
    assert sorted(p.name for p in (tmp_path / "coco" / "val2017").iterdir()) == ["a.jpg"]
    assert (tmp_path / "coco" / "contents.tsv").read_text().splitlines()[1:] == [
        f"annotations/instances_val2017.json\t{sha256_128(b'{}')}",
        f"val2017/a.jpg\t{sha256_128(b'A')}",
    ]


def test_manifest_naming_a_missing_folder_fails_clearly(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    write_manifest(raw, "coco2017-subset", [], ["annotations"])
    with pytest.raises(ExtractError, match=r"raw/annotations: folder listed in .*manifest.json is missing"):
        extract_coco(raw, tmp_path / "coco", SPLITS)


@pytest.mark.parametrize(
    "member", ["../evil.txt", "/abs.txt", "val2017/../../evil.txt", "C:/evil.txt", "..\\evil.txt"]
)
def test_unsafe_member_is_refused(tmp_path: Path, member: str) -> None:
    work = tmp_path / "work"
    raw = good_archives(work / "raw", {"val2017/a.jpg": b"A", member: b"pwned"})
    out = work / "coco"
    with pytest.raises(ExtractError) as err:
        extract_coco(raw, out, SPLITS)
    assert str(err.value).startswith(f"{raw / 'val2017.zip'}: member {member!r} would be written outside ")
    assert str(err.value).endswith("; refusing")
    assert not out.exists()  # nothing half-made: not even the annotations extracted before
    assert sorted(p.name for p in work.iterdir()) == ["raw"]
    assert not list(tmp_path.rglob("evil.txt")) and not Path("/abs.txt").exists()
    assert entries(tmp_path) == [
        "work",
        "work/raw",
        "work/raw/annotations_trainval2017.zip",
        "work/raw/val2017.zip",
    ]


def test_unsafe_member_checked_before_anything_is_written(tmp_path: Path) -> None:
    archive = write_zip(tmp_path / "x.zip", {"ok.txt": b"1", "../evil.txt": b"2"})
    target = tmp_path / "target"
    target.mkdir()
    with pytest.raises(ExtractError, match=r"member '\.\./evil\.txt'"):
        extract_archive(archive, target)
    assert list(target.iterdir()) == []


def test_safe_member_path(tmp_path: Path) -> None:
    assert safe_member_path(tmp_path, "a/b.jpg", Path("x.zip")) == (tmp_path / "a" / "b.jpg").resolve()
    assert safe_member_path(tmp_path, "a/./b.jpg", Path("x.zip")) == (tmp_path / "a" / "b.jpg").resolve()
    with pytest.raises(ExtractError, match=r"^x\.zip: member 'a/\.\./\.\./b\.jpg' would be written outside "):
        safe_member_path(tmp_path, "a/../../b.jpg", Path("x.zip"))


def test_corrupt_zip_fails_clearly(tmp_path: Path) -> None:
    raw = good_archives(tmp_path / "raw")
    (raw / "val2017.zip").write_bytes(b"PK\x03\x04 this is not really a zip")
    with pytest.raises(ExtractError) as err:
        extract_coco(raw, tmp_path / "coco", SPLITS)
    assert str(err.value).startswith(f"{raw / 'val2017.zip'}: not a valid zip archive (")
    assert not (tmp_path / "coco").exists()


def test_truncated_zip_fails_clearly(tmp_path: Path) -> None:
    raw = good_archives(tmp_path / "raw")
    data = (raw / "val2017.zip").read_bytes()
    (raw / "val2017.zip").write_bytes(data[: len(data) // 2])
    with pytest.raises(ExtractError, match=r"val2017\.zip: not a valid zip archive"):
        extract_coco(raw, tmp_path / "coco", SPLITS)


def test_corrupt_member_fails_clearly(tmp_path: Path) -> None:
    raw = good_archives(tmp_path / "raw", {"val2017/a.jpg": b"A" * 1000})
    data = bytearray((raw / "val2017.zip").read_bytes())
    at = data.index(b"A" * 1000)
    data[at : at + 4] = b"BBBB"  # stored member: the CRC no longer matches
    (raw / "val2017.zip").write_bytes(bytes(data))
    with pytest.raises(ExtractError, match=r"val2017\.zip: member 'val2017/a\.jpg' is corrupt \("):
        extract_coco(raw, tmp_path / "coco", SPLITS)
    assert not (tmp_path / "coco").exists()


def test_missing_archive_fails_clearly(tmp_path: Path) -> None:
    raw = good_archives(tmp_path / "raw")
    (raw / "val2017.zip").unlink()
    with pytest.raises(ExtractError, match=r"val2017\.zip: archive not found \(did the download stage run"):
        extract_coco(raw, tmp_path / "coco", SPLITS)


def test_missing_annotation_file_fails_verification(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    write_zip(raw / "annotations_trainval2017.zip", {"annotations/instances_train2017.json": b"{}"})
    write_zip(raw / "val2017.zip", {"val2017/a.jpg": b"A"})
    out = tmp_path / "coco"
    with pytest.raises(ExtractError) as err:
        extract_coco(raw, out, SPLITS)
    # names the final path the stage promised, not the temporary folder it was checked in
    assert str(err.value) == (
        f"{out / 'annotations' / 'instances_val2017.json'}: expected annotation file "
        f"is missing after extraction"
    )
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"]


def test_empty_image_folder_fails_verification(tmp_path: Path) -> None:
    raw = good_archives(tmp_path / "raw", {"val2017/": b""})
    with pytest.raises(ExtractError) as err:
        extract_coco(raw, tmp_path / "coco", SPLITS)
    assert str(err.value) == (
        f"{tmp_path / 'coco' / 'val2017'}: expected image folder is missing or empty after extraction"
    )


# --- hostile archives (issue 9): one line each, nothing written, the previous data/coco kept ----------


def _patch_headers(path: Path, name: bytes, method: int | None = None, flags: int | None = None) -> None:
    """Rewrite a member's compression method or flag bits in its local and central headers."""
    data = bytearray(path.read_bytes())
    for signature, flag_at, method_at, name_at in ((b"PK\x03\x04", 6, 8, 30), (b"PK\x01\x02", 8, 10, 46)):
        start = 0
        while (at := data.find(signature, start)) >= 0:
            start = at + 4
            if data[at + name_at : at + name_at + len(name)] != name:
                continue
            if method is not None:
                data[at + method_at : at + method_at + 2] = method.to_bytes(2, "little")
            if flags is not None:
                data[at + flag_at : at + flag_at + 2] = flags.to_bytes(2, "little")
    path.write_bytes(bytes(data))


def _zip_bomb(path: Path) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("val2017/a.jpg", b"A")
        zf.writestr("val2017/zeros.jpg", bytes(8 << 20))  # 8 MiB from about 8 KB


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (
            _zip_bomb,
            (
                r"member 'val2017/zeros\.jpg' claims 8388608 bytes from \d+ \(over 200:1\); refusing a likely "
                r"zip bomb"
            ),
        ),
        (
            lambda p: _patch_headers(p, b"val2017/b.jpg", method=99),
            r"member 'val2017/b\.jpg' uses compression method 99, which cannot be unpacked here",
        ),
        (
            lambda p: _patch_headers(p, b"val2017/b.jpg", flags=1),
            r"member 'val2017/b\.jpg' is encrypted; unpack it by hand with its password",
        ),
        (
            lambda p: write_zip(p, {"val2017/a.jpg": b"A", "val2017/a.jpg/": b""}),
            r"member 'val2017/a\.jpg/' clashes with another member of the same name",
        ),
        (
            lambda p: write_zip(p, {"val2017/a.jpg/": b"", "val2017/a.jpg": b"A"}),
            r"member 'val2017/a\.jpg' clashes with another member of the same name",
        ),
        (
            lambda p: write_zip(p, {"val2017/a": b"A", "val2017/a/b.jpg": b"B"}),
            r"member 'val2017/a/b\.jpg' clashes with another member of the same name \(val2017/a is a file\)",
        ),
    ],
)
def test_hostile_archive_is_refused_and_previous_extraction_kept(
    tmp_path: Path, damage, message: str
) -> None:
    raw = good_archives(tmp_path / "raw")
    extract_coco(raw, tmp_path / "coco", SPLITS)
    before = entries(tmp_path / "coco")
    damage(raw / "val2017.zip")
    with pytest.raises(ExtractError, match=rf"^{raw / 'val2017.zip'}: {message}"):
        extract_coco(raw, tmp_path / "coco", SPLITS)
    assert entries(tmp_path / "coco") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["coco", "raw"]


def test_archive_larger_than_free_space_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = good_archives(tmp_path / "raw", {"val2017/a.jpg": bytes(5000)})
    monkeypatch.setattr("shutil.disk_usage", lambda path: type("U", (), {"free": 1000})())
    with pytest.raises(ExtractError, match=r"val2017\.zip: unpacking needs 0\.00 GB, only 0\.00 GB free"):
        extract_coco(raw, tmp_path / "coco", SPLITS)


@pytest.mark.parametrize("folder", ["/etc", "../raw2", "a/b", ""])
def test_manifest_naming_a_folder_outside_raw_is_refused(tmp_path: Path, folder: str) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    write_manifest(raw, "coco2017-subset", [], [folder])
    with pytest.raises(ExtractError, match=rf"folders entry '{folder}' is not a plain name inside "):
        extract_coco(raw, tmp_path / "coco", SPLITS)


def test_hostile_archive_gives_the_stage_one_line(tmp_path: Path) -> None:
    from helpers import assert_one_error, run_stage

    raw = good_archives(tmp_path / "raw" / "download")
    _patch_headers(raw / "val2017.zip", b"val2017/b.jpg", flags=1)
    (tmp_path / "params.yaml").write_text("{}\n")
    result = run_stage("extract", "--raw", raw.parent, "--out", tmp_path / "coco", cwd=tmp_path)
    assert_one_error(result, "member 'val2017/b.jpg' is encrypted")

"""Unpacking archives: the good case, unsafe member paths, corrupt archives and missing files."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from cocoseg.acquire.extract import ExtractError, extract_archive, extract_coco, safe_member_path, write_manifest

SPLITS = ("val2017",)


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def good_archives(raw: Path, images: dict[str, bytes] | None = None) -> Path:
    raw.mkdir(parents=True, exist_ok=True)
    write_zip(raw / "annotations_trainval2017.zip",
              {"annotations/": b"", "annotations/instances_val2017.json": b"{}"})
    write_zip(raw / "val2017.zip", images or {"val2017/": b"", "val2017/a.jpg": b"A", "val2017/b.jpg": b"BB"})
    return raw


def entries(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_extracts_good_archives(tmp_path: Path) -> None:
    raw = good_archives(tmp_path / "raw")
    counts = extract_coco(raw, tmp_path / "coco", SPLITS)
    assert counts == {"annotations_trainval2017.zip": 1, "val2017.zip": 2}
    assert entries(tmp_path / "coco") == ["annotations", "annotations/instances_val2017.json", "val2017",
                                          "val2017/a.jpg", "val2017/b.jpg"]
    assert (tmp_path / "coco" / "val2017" / "b.jpg").read_bytes() == b"BB"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["coco", "raw"]  # no temporary folder left


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


def test_manifest_naming_a_missing_folder_fails_clearly(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    write_manifest(raw, "coco2017-subset", [], ["annotations"])
    with pytest.raises(ExtractError, match=r"raw/annotations: folder listed in .*manifest.json is missing"):
        extract_coco(raw, tmp_path / "coco", SPLITS)


@pytest.mark.parametrize("member", ["../evil.txt", "/abs.txt", "val2017/../../evil.txt", "C:/evil.txt",
                                    "..\\evil.txt"])
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
    assert entries(tmp_path) == ["work", "work/raw", "work/raw/annotations_trainval2017.zip",
                                 "work/raw/val2017.zip"]


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
    data[at:at + 4] = b"BBBB"  # stored member: the CRC no longer matches
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
    assert str(err.value) == (f"{out / 'annotations' / 'instances_val2017.json'}: expected annotation file "
                              f"is missing after extraction")
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"]


def test_empty_image_folder_fails_verification(tmp_path: Path) -> None:
    raw = good_archives(tmp_path / "raw", {"val2017/": b""})
    with pytest.raises(ExtractError) as err:
        extract_coco(raw, tmp_path / "coco", SPLITS)
    assert str(err.value) == (f"{tmp_path / 'coco' / 'val2017'}: expected image folder is missing or empty "
                              f"after extraction")

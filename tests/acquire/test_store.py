"""The download store: what publish_downloads links into the stage output, and what it leaves out."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from cocoseg.acquire.extract import ExtractError
from cocoseg.acquire.store import link_or_copy, publish_downloads


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def write_store(store: Path) -> None:
    """A subset-mode store, plus what a store holds besides: a part, a sidecar, another run's archive."""
    files = {
        "annotations/instances_val2017.json": b"{}",
        "val2017/1.jpg": b"a",
        "val2017/2.jpg": b"b",
        "val2017/3.jpg.part": b"half",
        "annotations_trainval2017.zip": b"zip",
        "annotations_trainval2017.zip.verified": b"{}",
        "val2017.zip": b"old archives run",
    }
    for name, data in files.items():
        (store / name).parent.mkdir(parents=True, exist_ok=True)
        (store / name).write_bytes(data)
    manifest = {
        "source": "coco2017-subset",
        "archives": ["annotations_trainval2017.zip"],
        "folders": ["annotations", "val2017"],
    }
    (store / "manifest.json").write_text(json.dumps(manifest))


def test_publish_links_exactly_what_the_manifest_lists(tmp_path: Path) -> None:
    store, out = tmp_path / "downloads", tmp_path / "raw"
    write_store(store)
    before = {name: (store / name).read_bytes() for name in files_under(store)}
    assert publish_downloads(store, out) == 5
    assert files_under(out) == [
        "annotations/instances_val2017.json",
        "annotations_trainval2017.zip",
        "manifest.json",
        "val2017/1.jpg",
        "val2017/2.jpg",
    ]
    for name in files_under(out):
        assert os.path.samefile(out / name, store / name)  # a hard link: the bytes are on disk once
    assert {name: (store / name).read_bytes() for name in files_under(store)} == before  # store untouched

    (store / "val2017" / "2.jpg").unlink()  # a later run with fewer images replaces the output whole
    (out / "val2017" / "stale.jpg").write_bytes(b"x")
    publish_downloads(store, out)
    assert "val2017/stale.jpg" not in files_under(out) and "val2017/2.jpg" not in files_under(out)


def test_link_or_copy_copies_where_no_hard_link_can_be_made(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "a").write_bytes(b"data")

    def cross_device(src, dst):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", cross_device)
    assert link_or_copy(tmp_path / "a", tmp_path / "sub" / "b") is False
    assert (tmp_path / "sub" / "b").read_bytes() == b"data"
    assert not os.path.samefile(tmp_path / "a", tmp_path / "sub" / "b")


def test_unreadable_manifest_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "downloads").mkdir()
    (tmp_path / "downloads" / "manifest.json").write_text("{not json")
    with pytest.raises(ExtractError, match=r"downloads/manifest.json: unreadable download manifest"):
        publish_downloads(tmp_path / "downloads", tmp_path / "raw")
    assert not (tmp_path / "raw").exists()

"""data.source: archive, over the local HTTP test server: a Roboflow-like export as a zip, by a URL without
a suffix; a wrong checksum; an archive without a recognised layout; a split it lacks; a tar.gz by path."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import pytest
import yaml
from helpers import assert_one_error, run_stage
from http_server import FaultyFileServer
from local_exports import write_roboflow, zip_folder

from cocoseg.acquire.archive import store_name
from cocoseg.core.params import ArchiveConfig

SPLITS = ("test", "train", "valid")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def served(tmp_path: Path):
    """(server, the export folder); the server has the export zipped at /ds/AbC123 (as Roboflow's URLs
    look) and a zip of a folder with no COCO file at /other.zip."""
    export = write_roboflow(tmp_path / "export")
    (tmp_path / "www" / "ds").mkdir(parents=True)
    zip_folder(export, tmp_path / "www" / "ds" / "AbC123", prefix="My-Project-1/")
    (tmp_path / "yolo" / "images").mkdir(parents=True)
    (tmp_path / "yolo" / "images" / "a.jpg").write_bytes(b"x")
    (tmp_path / "yolo" / "data.json").write_text(json.dumps({"names": ["box"]}))
    zip_folder(tmp_path / "yolo", tmp_path / "www" / "other.zip")
    with FaultyFileServer(tmp_path / "www") as server:
        yield server, export


def run_data_stages(work: Path, archive: dict, splits: tuple[str, ...] = SPLITS) -> tuple:
    """params.yaml with ``data.archive``, then the download and extract stages as dvc.yaml runs them."""
    (work / "params.yaml").write_text(
        yaml.safe_dump({"data": {"source": "archive", "splits": list(splits), "archive": archive}})
    )
    download = run_stage("download", "--out", "data/raw/download", "--store", "data/downloads", cwd=work)
    if download.returncode != 0:
        return download, None
    return download, run_stage("extract", "--raw", "data/raw", "--out", "data/coco", cwd=work)


def test_a_roboflow_zip_by_url_becomes_data_coco(served, tmp_path: Path) -> None:
    server, export = served
    url = f"{server.url}/ds/AbC123?key=s3cret"
    archive = {"url": url, "sha256": sha256(server.root / "ds" / "AbC123")}
    download, extract = run_data_stages(tmp_path, archive)
    assert download.returncode == 0 and extract.returncode == 0, download.stderr + extract.stderr
    coco = tmp_path / "data" / "coco"
    for split in SPLITS:
        assert (coco / "annotations" / f"instances_{split}.json").read_bytes() == (
            export / split / "_annotations.coco.json"
        ).read_bytes()
        assert sorted(p.name for p in (coco / split).iterdir()) == sorted(
            p.name for p in (export / split).glob("*.jpg")
        )
    listed = (coco / "contents.tsv").read_text().splitlines()
    assert listed[0] == "path\tsha256_128" and len(listed) == 1 + 3 + 6  # 3 JSONs, 6 images
    assert f"train/train_0.jpg\t{sha256(export / 'train' / 'train_0.jpg')[:32]}" in listed
    assert not (coco / ".export").exists() and "roboflow layout" in extract.stderr
    name = store_name(ArchiveConfig(url=url, sha256=archive["sha256"]))
    assert name == f"{archive['sha256'][:16]}-AbC123"
    raw, store = tmp_path / "data" / "raw" / "download", tmp_path / "data" / "downloads"
    assert sorted(p.name for p in raw.iterdir()) == sorted([name, "manifest.json"])
    assert (raw / name).stat().st_ino == (store / name).stat().st_ino  # linked from the store
    again, _ = run_data_stages(tmp_path, archive)
    assert again.returncode == 0 and server.counts["/ds/AbC123"] == 1  # verified once, never fetched again


def test_a_wrong_checksum_is_one_line_and_keeps_nothing(served, tmp_path: Path) -> None:
    server, _ = served
    download, _ = run_data_stages(tmp_path, {"url": f"{server.url}/ds/AbC123", "sha256": "0" * 64})
    assert_one_error(
        download, "SHA-256 mismatch for ", f"expected {'0' * 64}, got {sha256(server.root / 'ds' / 'AbC123')}"
    )
    assert not (tmp_path / "data" / "raw").exists()
    assert sorted(p.name for p in (tmp_path / "data" / "downloads").iterdir()) == []


def test_an_archive_without_a_recognised_layout_lists_what_it_holds(served, tmp_path: Path) -> None:
    server, _ = served
    download, extract = run_data_stages(
        tmp_path, {"url": f"{server.url}/other.zip", "sha256": sha256(server.root / "other.zip")}
    )
    assert download.returncode == 0, download.stderr
    assert_one_error(
        extract,
        "other.zip: no COCO export layout recognised: found 1 JSON file(s): data.json "
        "(not COCO instances), 1 image(s) in images/; expected <split>/_annotations.coco.json",
    )
    assert not (tmp_path / "data" / "coco").exists()


def test_a_split_the_archive_lacks_is_refused_with_those_it_has(served, tmp_path: Path) -> None:
    server, _ = served
    _, extract = run_data_stages(
        tmp_path, {"url": f"{server.url}/ds/AbC123", "verify_checksum": False}, splits=("train", "val")
    )
    assert_one_error(
        extract,
        "AbC123: data.splits: the export has no split 'val'; its splits: "
        "['test', 'train', 'valid'] (roboflow layout)",
    )


def test_a_tar_gz_by_path_without_a_checksum(tmp_path: Path) -> None:
    export = write_roboflow(tmp_path / "export", {"train": 2, "valid": 1})
    with tarfile.open(tmp_path / "export.tar.gz", "w:gz") as tf:
        tf.add(export, arcname=".")
    (tmp_path / "work").mkdir()
    download, extract = run_data_stages(
        tmp_path / "work", {"url": "../export.tar.gz", "verify_checksum": False}, splits=("train", "valid")
    )
    assert download.returncode == 0 and extract.returncode == 0, download.stderr + extract.stderr
    assert "is NOT checked against a SHA-256" in download.stderr
    coco = tmp_path / "work" / "data" / "coco"
    assert sorted(p.relative_to(coco).as_posix() for p in coco.rglob("*.jpg")) == [
        "train/train_0.jpg",
        "train/train_1.jpg",
        "valid/valid_0.jpg",
    ]


def test_a_missing_checksum_is_refused_before_any_download(served, tmp_path: Path) -> None:
    server, _ = served
    download, _ = run_data_stages(tmp_path, {"url": f"{server.url}/ds/AbC123"})
    assert_one_error(download, "data.archive.sha256: None is not allowed; expected the archive's SHA-256")
    assert server.counts["/ds/AbC123"] == 0

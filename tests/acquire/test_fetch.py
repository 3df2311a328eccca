"""fetch_coco against a local mirror from build_mirror: archives, subset, checksums, the stage script."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from helpers import REPO  # noqa: E402
from http_server import FaultyFileServer

from cocoseg.acquire.extract import extract_coco
from cocoseg.acquire.fetch import fetch_coco, read_annotations
from cocoseg.acquire.http import ChecksumError
from cocoseg.acquire.mirror import build_mirror
from cocoseg.core.params import ConfigError, parse_params

SPLIT = "val2017"
ANN_ZIP = "annotations_trainval2017.zip"
CAT, DOG = 1, 3
CAT_IMAGES = {2, 5, 7}  # every image holds a dog; these three also hold a cat


def write_source(root: Path) -> dict:
    """8 random 16x16 JPEGs and their instances JSON, in the unpacked COCO layout."""
    rng = np.random.default_rng(0)
    (root / SPLIT).mkdir(parents=True)
    (root / "annotations").mkdir()
    images, annotations = [], []
    for image_id in range(1, 9):
        name = f"{image_id:012d}.jpg"
        ok, jpeg = cv2.imencode(".jpg", rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
        (root / SPLIT / name).write_bytes(jpeg.tobytes())
        images.append(
            {
                "id": image_id,
                "file_name": name,
                "height": 16,
                "width": 16,
                "coco_url": f"http://images.cocodataset.org/{SPLIT}/{name}",
            }
        )
        for category_id in [DOG, CAT] if image_id in CAT_IMAGES else [DOG]:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": category_id,
                    "iscrowd": 0,
                    "area": 16.0,
                    "bbox": [1, 1, 4, 4],
                    "segmentation": [[1, 1, 5, 1, 5, 5, 1, 5]],
                }
            )
    coco = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": CAT, "name": "cat"}, {"id": DOG, "name": "dog"}],
    }
    (root / "annotations" / f"instances_{SPLIT}.json").write_text(json.dumps(coco))
    return coco


@pytest.fixture
def mirror(tmp_path):
    """(server, md5s, source JSON); the server serves a mirror built from a tiny COCO folder."""
    coco = write_source(tmp_path / "src")
    md5s = build_mirror(tmp_path / "src", tmp_path / "www")
    with FaultyFileServer(tmp_path / "www") as server:
        yield server, md5s, coco


def raw_params(url: str, md5: dict | None, seed: int = 0, categories: str | list = "all", **coco) -> dict:
    coco_section = {"base_url": url, "workers": 4, **coco, **({} if md5 is None else {"md5": md5})}
    return {
        "base": {"seed": seed},
        "data": {"source": "coco2017", "coco": coco_section},
        "masks": {"categories": categories},
    }


def make_params(url, md5, **kw):
    return parse_params(raw_params(url, md5, **kw))


def image_requests(server) -> int:
    return sum(n for path, n in server.counts.items() if path.startswith(f"/{SPLIT}/"))


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_archives_mode_fetches_both_archives_extracts_and_skips_on_rerun(mirror, tmp_path):
    server, md5s, coco = mirror
    raw, out = tmp_path / "raw", tmp_path / "coco"
    params = make_params(server.url, md5s)
    fetch_coco(params, raw)
    www = server.root
    assert (raw / ANN_ZIP).read_bytes() == (www / "annotations" / ANN_ZIP).read_bytes()
    assert (raw / "val2017.zip").read_bytes() == (www / "zips" / "val2017.zip").read_bytes()
    assert not list(raw.glob("*.part"))
    manifest = json.loads((raw / "manifest.json").read_text())
    assert manifest == {"source": "coco2017", "archives": [ANN_ZIP, "val2017.zip"], "folders": []}

    extract_coco(raw, out, (SPLIT,))
    assert json.loads((out / "annotations" / f"instances_{SPLIT}.json").read_text()) == coco
    assert names(out / SPLIT) == sorted(image["file_name"] for image in coco["images"])

    before = dict(server.counts)
    assert before == {f"/annotations/{ANN_ZIP}": 1, "/zips/val2017.zip": 1}
    fetch_coco(params, raw)
    assert server.counts == before  # both archives verified by their sidecars: no request at all


def test_wrong_md5_fails_naming_file_and_both_checksums(mirror, tmp_path):
    server, md5s, _ = mirror
    raw = tmp_path / "raw"
    with pytest.raises(ChecksumError) as info:
        fetch_coco(make_params(server.url, {**md5s, SPLIT: "0" * 32}), raw)
    message = str(info.value)
    assert str(raw / "val2017.zip") in message
    assert "0" * 32 in message and md5s[SPLIT] in message
    assert not (raw / "val2017.zip").exists()
    assert not (raw / "val2017.zip.part").exists()


def test_checksums_off_warns_and_missing_md5_key_fails(mirror, tmp_path, caplog):
    server, md5s, _ = mirror
    with caplog.at_level(logging.WARNING, logger="cocoseg"):
        fetch_coco(make_params(server.url, {}, verify_checksums=False), tmp_path / "raw")
    assert "verify_checksums is false" in caplog.text
    zips = tmp_path / "raw" / "val2017.zip", server.root / "zips" / "val2017.zip"
    assert zips[0].read_bytes() == zips[1].read_bytes()

    before = dict(server.counts)
    partial = {"annotations_trainval2017": md5s["annotations_trainval2017"]}
    with pytest.raises(ConfigError, match=r"data\.coco\.md5: no checksum for 'val2017'"):
        fetch_coco(make_params(server.url, partial), tmp_path / "raw2")
    assert server.counts == before  # config errors come before any request


def test_subset_fetches_annotations_and_n_images_only(mirror, tmp_path):
    server, md5s, coco = mirror
    raw, out = tmp_path / "raw", tmp_path / "coco"
    fetch_coco(make_params(server.url, md5s, max_images=2), raw)
    assert server.counts["/zips/val2017.zip"] == 0
    assert server.counts[f"/annotations/{ANN_ZIP}"] == 1
    assert image_requests(server) == 2
    fetched = names(raw / SPLIT)
    assert len(fetched) == 2
    manifest = json.loads((raw / "manifest.json").read_text())
    assert manifest == {"source": "coco2017-subset", "archives": [], "folders": ["annotations", SPLIT]}

    filtered = json.loads((raw / "annotations" / f"instances_{SPLIT}.json").read_text())
    ids = {image["id"] for image in coco["images"] if image["file_name"] in fetched}
    assert sorted(image["file_name"] for image in filtered["images"]) == fetched
    assert filtered["annotations"] == [a for a in coco["annotations"] if a["image_id"] in ids]
    assert filtered["categories"] == coco["categories"]

    extract_coco(raw, out, (SPLIT,))
    assert names(out / SPLIT) == fetched
    assert json.loads((out / "annotations" / f"instances_{SPLIT}.json").read_text()) == filtered


def test_subset_category_filter_is_seeded_and_reuses_on_rerun(mirror, tmp_path):
    server, md5s, coco = mirror
    params = make_params(
        server.url, md5s, max_images=2, seed=3, categories=["cat"], subset_categories_only=True
    )
    fetch_coco(params, tmp_path / "a")
    chosen = names(tmp_path / "a" / SPLIT)
    ids = {image["id"] for image in coco["images"] if image["file_name"] in chosen}
    assert len(ids) == 2 and ids <= CAT_IMAGES
    filtered = json.loads((tmp_path / "a" / "annotations" / f"instances_{SPLIT}.json").read_text())
    for image_id in ids:
        assert any(a["image_id"] == image_id and a["category_id"] == CAT for a in filtered["annotations"])

    before = dict(server.counts)
    fetch_coco(params, tmp_path / "a")
    assert server.counts == before  # same seed, same images, all reused; the archive is not fetched again
    assert names(tmp_path / "a" / SPLIT) == chosen
    fetch_coco(params, tmp_path / "b")  # a fresh folder picks the same images
    assert names(tmp_path / "b" / SPLIT) == chosen


def test_subset_extract_ignores_archives_and_images_of_earlier_runs(mirror, tmp_path):
    server, md5s, _ = mirror
    raw, out = tmp_path / "raw", tmp_path / "coco"
    fetch_coco(make_params(server.url, md5s), raw)  # archives mode leaves val2017.zip behind
    fetch_coco(make_params(server.url, md5s, max_images=5, seed=1), raw)  # another subset leaves images
    fetch_coco(make_params(server.url, md5s, max_images=2, seed=2), raw)
    assert (raw / "val2017.zip").is_file()
    filtered = json.loads((raw / "annotations" / f"instances_{SPLIT}.json").read_text())
    extract_coco(raw, out, (SPLIT,))
    assert names(out / SPLIT) == sorted(image["file_name"] for image in filtered["images"])
    assert len(filtered["images"]) == 2


def test_subset_needs_no_checksum_for_the_unused_image_archive(mirror, tmp_path):
    server, md5s, _ = mirror
    only_annotations = {"annotations_trainval2017": md5s["annotations_trainval2017"]}
    fetch_coco(make_params(server.url, only_annotations, max_images=2), tmp_path / "raw")
    assert len(names(tmp_path / "raw" / SPLIT)) == 2


def run_download_stage(tmp_path: Path, params: dict) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return subprocess.run(
        [
            sys.executable,
            str(REPO / "stages" / "download.py"),
            "--params",
            str(path),
            "--out",
            str(tmp_path / "raw"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_download_stage_subset_succeeds(mirror, tmp_path):
    server, md5s, _ = mirror
    result = run_download_stage(tmp_path, raw_params(server.url, md5s, max_images=2))
    assert result.returncode == 0, result.stderr
    assert len(names(tmp_path / "raw" / SPLIT)) == 2
    assert server.counts["/zips/val2017.zip"] == 0


def test_download_stage_output_can_be_deleted_and_restored_without_a_request(mirror, tmp_path):
    """DVC deletes a cached output before it reruns the stage: the store beside it keeps the downloads."""
    server, md5s, _ = mirror
    assert run_download_stage(tmp_path, raw_params(server.url, md5s)).returncode == 0
    raw, store = tmp_path / "raw", tmp_path / "data" / "downloads"  # the store's default, under the cwd
    assert names(raw) == [ANN_ZIP, "manifest.json", "val2017.zip"]
    assert (raw / "val2017.zip").stat().st_ino == (store / "val2017.zip").stat().st_ino  # linked, not copied
    before = dict(server.counts)
    shutil.rmtree(raw)
    result = run_download_stage(tmp_path, raw_params(server.url, md5s))
    assert result.returncode == 0, result.stderr
    assert server.counts == before  # both archives reused from the store
    assert (raw / "val2017.zip").read_bytes() == (server.root / "zips" / "val2017.zip").read_bytes()


def test_download_stage_404_is_one_clear_error(mirror, tmp_path):
    _, md5s, _ = mirror
    (tmp_path / "empty").mkdir()
    with FaultyFileServer(tmp_path / "empty") as empty:
        result = run_download_stage(tmp_path, raw_params(empty.url, md5s, max_images=2))
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1, result.stderr
    assert f"{empty.url}/annotations/{ANN_ZIP}" in errors[0] and "HTTP 404" in errors[0]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (
            b'{"images": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
            "cannot read annotations/instances_val2017.json (RecursionError: ",
        ),
        (
            b'{"images": [{"file_name": "a.jpg"}], "annotations": []}',
            "images[0] is not an object with an integer 'id'",
        ),
        (
            b'{"images": [], "annotations": [], "categories": [{"id": 1}]}',
            "'categories' must be a list of objects",
        ),
    ],
)
def test_hostile_annotation_file_in_subset_mode_is_one_line(tmp_path, content, problem):
    archive = tmp_path / "annotations_trainval2017.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("annotations/instances_val2017.json", content)
    with pytest.raises(ConfigError) as err:
        read_annotations(archive, "val2017")
    assert str(err.value).startswith(f"{archive}: ") and problem in str(err.value)

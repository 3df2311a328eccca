import hashlib
import json

import cv2
import numpy as np
import pytest
from http_server import FaultyFileServer

from cocoseg.acquire.coco_http import (
    SubsetResult,
    download_archives,
    download_subset,
    rewrite_url,
    select_images,
)

SPLIT = "val2017"


def make_split(www):
    """12 tiny JPEGs under www/val2017 and their instances JSON; ids out of order, category 2 on 4 images."""
    rng = np.random.default_rng(0)
    (www / SPLIT).mkdir(parents=True)
    images, annotations = [], []
    for i in range(12):
        image_id = 1000 - 37 * i  # listed in descending id order: selection must sort by id itself
        name = f"{image_id:012d}.jpg"
        ok, jpeg = cv2.imencode(".jpg", rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
        (www / SPLIT / name).write_bytes(jpeg.tobytes())
        image = {"id": image_id, "file_name": name, "height": 16, "width": 16}
        if i != 5:  # one entry without coco_url takes the <base>/<split>/<file_name> fallback
            image["coco_url"] = f"http://images.cocodataset.org/{SPLIT}/{name}"
        images.append(image)
        annotations.append({"id": 2 * i, "image_id": image_id, "category_id": 1})
        if i % 3 == 0:
            annotations.append({"id": 2 * i + 1, "image_id": image_id, "category_id": 2})
    return {
        "info": {"year": 2017},
        "licenses": [{"id": 1}],
        "categories": [{"id": 1}, {"id": 2}],
        "images": images,
        "annotations": annotations,
    }


@pytest.fixture
def coco(tmp_path):
    www = tmp_path / "www"
    annotations = make_split(www)
    with FaultyFileServer(www) as server:
        yield server, annotations, tmp_path / "raw"


def fetch(server, annotations, raw, max_images=5, seed=0, category_ids=None, workers=4):
    return download_subset(
        server.url,
        SPLIT,
        raw,
        annotations,
        max_images,
        seed,
        category_ids,
        workers,
        backoff=0,
        progress=False,
    )


def expected_names(annotations, n, seed):
    ordered = sorted(annotations["images"], key=lambda image: image["id"])
    return sorted(ordered[i]["file_name"] for i in np.random.default_rng(seed).choice(12, n, replace=False))


def test_subset_fetches_seeded_images_in_parallel_and_filters_json(coco):
    server, annotations, raw = coco
    server.latency = 0.1  # holds each request open long enough for the pool to overlap them
    result = fetch(server, annotations, raw)
    names = expected_names(annotations, 5, seed=0)
    assert result == SubsetResult(requested=5, fetched=5, reused=0, failed=0, failures=())
    assert sorted(p.name for p in (raw / SPLIT).iterdir()) == names
    for name in names:
        assert (raw / SPLIT / name).read_bytes() == (server.root / SPLIT / name).read_bytes()
    assert server.counts == {f"/{SPLIT}/{name}": 1 for name in names}
    assert server.max_in_flight == 4
    written = json.loads((raw / "annotations" / f"instances_{SPLIT}.json").read_text())
    ids = {image["id"] for image in annotations["images"] if image["file_name"] in names}
    assert {image["id"] for image in written["images"]} == ids
    assert written["annotations"] == [a for a in annotations["annotations"] if a["image_id"] in ids]
    assert {k: written[k] for k in ("info", "licenses", "categories")} == {
        k: annotations[k] for k in ("info", "licenses", "categories")
    }


def test_same_seed_gives_same_images_and_another_seed_differs(coco):
    server, annotations, raw = coco
    fetch(server, annotations, raw / "a", seed=3)
    fetch(server, annotations, raw / "b", seed=3)
    first = sorted(p.name for p in (raw / "a" / SPLIT).iterdir())
    assert first == sorted(p.name for p in (raw / "b" / SPLIT).iterdir()) == expected_names(annotations, 5, 3)
    other = [image["file_name"] for image in select_images(annotations, 5, seed=4, category_ids=None)]
    assert sorted(other) != first


def test_category_filter_keeps_only_images_with_those_categories(coco):
    server, annotations, raw = coco
    result = fetch(server, annotations, raw, max_images=10, category_ids={2})
    with_cat2 = {a["image_id"] for a in annotations["annotations"] if a["category_id"] == 2}
    names = sorted(image["file_name"] for image in annotations["images"] if image["id"] in with_cat2)
    assert (result.requested, result.fetched) == (4, 4)
    assert sorted(p.name for p in (raw / SPLIT).iterdir()) == names


def test_rerun_reuses_images_already_present(coco):
    server, annotations, raw = coco
    fetch(server, annotations, raw)
    result = fetch(server, annotations, raw)
    assert result == SubsetResult(requested=5, fetched=0, reused=5, failed=0, failures=())
    assert sum(server.counts.values()) == 5


def test_undecodable_image_is_refetched_once_then_reported(coco):
    server, annotations, raw = coco
    bad = annotations["images"][2]["file_name"]
    (server.root / SPLIT / bad).write_bytes(b"\xff\xd8 not really a jpeg")
    result = fetch(server, annotations, raw, max_images=12)
    reason = f"{server.url}/{SPLIT}/{bad} does not decode as an image after 2 fetches"
    assert result.failures == ((bad, reason),)
    assert (result.requested, result.fetched, result.failed) == (12, 11, 1)
    assert server.counts[f"/{SPLIT}/{bad}"] == 2
    assert sorted(p.name for p in (raw / SPLIT).iterdir()) == sorted(
        image["file_name"] for image in annotations["images"] if image["file_name"] != bad
    )
    written = json.loads((raw / "annotations" / f"instances_{SPLIT}.json").read_text())
    assert annotations["images"][2]["id"] not in {a["image_id"] for a in written["annotations"]}


def test_missing_image_is_reported_with_its_status(coco):
    server, annotations, raw = coco
    missing = annotations["images"][0]["file_name"]
    server.status_for[f"/{SPLIT}/{missing}"] = 404
    result = fetch(server, annotations, raw, max_images=12)
    reason = f"failed to download {server.url}/{SPLIT}/{missing}: HTTP 404 Not Found"
    assert result.failures == ((missing, reason),)
    assert server.counts[f"/{SPLIT}/{missing}"] == 1
    assert not list((raw / SPLIT).glob("*.part"))


def test_download_archives_fetches_official_layout(coco):
    server, _, raw = coco
    (server.root / "zips").mkdir()
    (server.root / "annotations").mkdir()
    (server.root / "zips" / "val2017.zip").write_bytes(b"images")
    (server.root / "annotations" / "annotations_trainval2017.zip").write_bytes(b"notes")
    md5s = {"annotations_trainval2017.zip": hashlib.md5(b"notes").hexdigest(), "val2017.zip": None}
    paths = download_archives(server.url, ["val2017"], raw, md5s, {"val2017.zip": 6})
    assert paths == [raw / "annotations_trainval2017.zip", raw / "val2017.zip"]
    assert [p.read_bytes() for p in paths] == [b"notes", b"images"]
    with pytest.raises(ValueError, match=r"no MD5 given for \['val2017.zip'\]"):
        download_archives(server.url, ["val2017"], raw, {"annotations_trainval2017.zip": None}, {})


@pytest.mark.parametrize(
    ("coco_url", "base", "expected"),
    [
        (
            "http://images.cocodataset.org/val2017/000000000139.jpg",
            "http://127.0.0.1:8000",
            "http://127.0.0.1:8000/val2017/000000000139.jpg",
        ),
        (
            "http://images.cocodataset.org/val2017/000000000139.jpg",
            "http://mirror.example/coco/",
            "http://mirror.example/coco/val2017/000000000139.jpg",
        ),
        (None, "http://127.0.0.1:8000", "http://127.0.0.1:8000/train2017/000000000139.jpg"),
        ("", "http://127.0.0.1:8000/", "http://127.0.0.1:8000/train2017/000000000139.jpg"),
    ],
)
def test_rewrite_url(coco_url, base, expected):
    assert rewrite_url(coco_url, base, "train2017", "000000000139.jpg") == expected


@pytest.mark.parametrize("name", ["../../escape.jpg", "/etc/passwd", "", None, "a\\b.jpg"])
def test_unsafe_file_name_is_a_reported_failure_not_a_traceback(coco, name):
    server, annotations, raw = coco
    annotations["images"][3]["file_name"] = name
    result = fetch(server, annotations, raw, max_images=12)
    assert result.failures == ((str(name), f"unsafe file_name {name!r}"),)
    assert (result.requested, result.fetched, result.failed) == (12, 11, 1)
    assert [p for p in raw.rglob("*") if p.is_file() and p.parent.name not in (SPLIT, "annotations")] == []
    assert not (raw.parent / "escape.jpg").exists()


def test_annotation_without_category_id_selects_nothing(coco):
    server, annotations, raw = coco
    for a in annotations["annotations"][:4]:
        del a["category_id"]
    annotations["annotations"][4]["category_id"] = [2]  # unhashable
    chosen = select_images(annotations, 12, 0, {1, 2})
    lacking = {a["image_id"] for a in annotations["annotations"][:5]}
    kept = {a["image_id"] for a in annotations["annotations"][5:] if a["category_id"] in (1, 2)}
    assert {image["id"] for image in chosen} == kept
    assert lacking - kept == lacking - {image["id"] for image in chosen}

"""Hostile servers and records for the download stage (issue 21, classes 8 and 9): a server that never
answers, goes silent after its headers or trickles ends the download within data.coco.stall_seconds, retries
included (200-380 s before); subset records of the wrong type fail their image, not the stage, and a subset
of which no image arrives fails download itself, not extract later."""

from __future__ import annotations

import json
import socket
import sys
import time
from pathlib import Path

import pytest
import yaml
from helpers import REPO, assert_one_error, jpeg_bytes
from http_server import FaultyFileServer
from proctree import GB, assert_contained, watch

from cocoseg.acquire import http
from cocoseg.acquire.http import DownloadError, download_file
from cocoseg.acquire.mirror import build_mirror

SPLIT = "val2017"


@pytest.fixture
def silent_socket():
    """A port that takes connections (the kernel's backlog) and never answers: no status line, no headers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()


@pytest.fixture
def server(tmp_path: Path):
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "f.bin").write_bytes(bytes(300_000))
    with FaultyFileServer(tmp_path / "www") as srv:
        yield srv


@pytest.mark.parametrize("how", ["no headers", "silent after headers", "trickle"])
def test_a_stall_ends_within_the_stall_budget_whatever_retries_remain(
    server: FaultyFileServer, silent_socket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    url = silent_socket + "/f.bin" if how == "no headers" else f"{server.url}/f.bin"
    if how == "silent after headers":
        server.stall_after = 1000
    elif how == "trickle":
        server.trickle = 0.05  # 20 bytes a second, under MIN_RATE
    start = time.monotonic()
    with pytest.raises(
        DownloadError, match=r"failed to download .*/f\.bin: no progress for 2 s over \d attempts"
    ):
        download_file(url, tmp_path / "f.bin", retries=50, backoff=0, progress=False, stall_seconds=2)
    assert 1.9 < time.monotonic() - start < 5  # 50 retries left, yet about stall_seconds
    assert not (tmp_path / "f.bin").exists()


def test_default_budget_is_a_minute() -> None:
    from cocoseg.core.params import CocoConfig

    assert http.STALL_SECONDS == CocoConfig().stall_seconds == 60


def test_the_stage_gives_up_on_a_silent_server_in_its_budget(silent_socket: str, tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text(
        yaml.safe_dump(
            {
                "data": {
                    "source": "coco2017",
                    "coco": {"base_url": silent_socket, "stall_seconds": 2, "max_images": 2},
                }
            }
        )
    )
    result = watch(
        [sys.executable, str(REPO / "stages" / "download.py"), "--out", "raw", "--store", "store"],
        tmp_path,
        timeout=60,
    )
    assert_one_error(
        result,
        f"failed to download {silent_socket}/annotations/annotations_trainval2017.zip: no progress for 2 s",
    )
    assert result.seconds < 10
    assert_contained(result, limit=GB)
    assert not (tmp_path / "raw").exists()


# --- class 9: subset records of the wrong type ------------------------------------------------------------


def write_source(root: Path, images: list[dict]) -> None:
    (root / SPLIT).mkdir(parents=True)
    (root / "annotations").mkdir()
    for image in images:
        if isinstance(image["file_name"], str):
            (root / SPLIT / image["file_name"]).write_bytes(jpeg_bytes(16, 16))
    annotations = [
        {
            "id": k,
            "image_id": image["id"],
            "category_id": 1,
            "iscrowd": 0,
            "segmentation": [[1, 1, 5, 1, 5, 5]],
        }
        for k, image in enumerate(images, 1)
    ]
    annotations.append({"id": 99, "image_id": [1, 2], "category_id": 1})  # an unhashable image_id
    (root / "annotations" / f"instances_{SPLIT}.json").write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "cat"}]})
    )


def download_subset_stage(tmp_path: Path, images: list[dict], **coco: object):
    write_source(tmp_path / "src", images)
    md5s = build_mirror(tmp_path / "src", tmp_path / "www")
    with FaultyFileServer(tmp_path / "www") as server:
        (tmp_path / "params.yaml").write_text(
            yaml.safe_dump(
                {
                    "data": {
                        "source": "coco2017",
                        "coco": {"base_url": server.url, "md5": md5s, "max_images": 8, "workers": 2, **coco},
                    },
                    "masks": {"categories": ["cat"]},
                }
            )
        )
        return watch(
            [sys.executable, str(REPO / "stages" / "download.py"), "--out", "raw", "--store", "store"],
            tmp_path,
            timeout=120,
        )


def test_records_of_the_wrong_type_fail_their_image_only(tmp_path: Path) -> None:
    """coco_url an int or a dict, an image_id a list, a file_name an int: tracebacks before."""
    images = [
        {"id": 1, "file_name": "a.jpg", "coco_url": 5},
        {"id": 2, "file_name": "b.jpg", "coco_url": {"x": 1}},
        {"id": 3, "file_name": 7},
        {"id": 4, "file_name": "d.jpg"},
        {"id": 5, "file_name": "e.jpg", "coco_url": "http://images.cocodataset.org/val2017/e.jpg"},
    ]
    result = download_subset_stage(tmp_path, images)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "not fetching image 1: coco_url 5 is not a URL" in result.stderr
    assert "not fetching image 2: coco_url {'x': 1} is not a URL" in result.stderr
    assert "not fetching image 3: unsafe file_name 7" in result.stderr
    kept = json.loads((tmp_path / "raw" / "annotations" / f"instances_{SPLIT}.json").read_text())
    assert [image["id"] for image in kept["images"]] == [4, 5]
    assert sorted(p.name for p in (tmp_path / "raw" / SPLIT).iterdir()) == ["d.jpg", "e.jpg"]
    assert_contained(result, limit=GB)


def test_a_subset_of_which_no_image_arrives_fails_download(tmp_path: Path) -> None:
    """It exited 0 and failed only later, in extract."""
    images = [
        {"id": k, "file_name": f"{k}.jpg", "coco_url": f"http://images.cocodataset.org/nowhere/{k}.jpg"}
        for k in (1, 2, 3)
    ]
    result = download_subset_stage(tmp_path, images)
    assert_one_error(
        result,
        f"{SPLIT}: no image of the subset could be fetched (3 selected; the first failure: ",
        "HTTP 404",
    )
    assert not (tmp_path / "raw").exists()
    assert_contained(result, limit=GB)

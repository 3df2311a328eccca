"""Hostile input to the masks stage, round two (issue 21, classes 1, 7, 10 and 11): records that would take
memory without a ceiling, names no file system takes, files the stage may not read, and a SIGKILL of the
stage. Each runs the stage script as a user would and holds it to the bar: a report entry or one ERROR
line, the exit code, the previous outputs intact, the process tree under 2 GB and nothing left running."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import REPO, assert_one_error, write_coco
from proctree import GB, assert_contained, left_behind, session_pids, watch

from cocoseg.core.limits import MAX_LISTED, MAX_POLYGON_COORDINATES, MAX_POLYGON_STEPS, MAX_RLE_CHARS

SQUARE = [[2, 2, 10, 2, 10, 10, 2, 10]]


def image(image_id: int, name: str | None = None, h: int = 16, w: int = 16) -> dict:
    return {"id": image_id, "file_name": name or f"{image_id:03d}.jpg", "height": h, "width": w}


def ann(ann_id: int, image_id: int, segmentation: object) -> dict:
    return {"id": ann_id, "image_id": image_id, "category_id": 1, "iscrowd": 0, "segmentation": segmentation}


def masks_stage(tmp_path: Path, preview: int = 0, workers: int = 1, timeout: float = 180, **kw: object):
    (tmp_path / "params.yaml").write_text(json.dumps({"masks": {"workers": workers, "preview": preview}}))
    return watch(
        [sys.executable, str(REPO / "stages" / "masks.py"), "--coco", "coco", "--out", "masks"],
        tmp_path,
        timeout=timeout,
        **kw,
    )


def big_jpeg(side: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", np.full((side, side, 3), 90, np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 50])
    assert ok
    return buf.tobytes()


def test_records_without_a_memory_ceiling_are_skipped_and_the_report_stays_small(tmp_path: Path) -> None:
    """One image's polygon of 2.4M coordinates, a polygon whose edges zigzag across the image 200k times, an
    RLE counts string of 40 MB; an 8000x8000 image with 9 full-frame objects; a million annotations of no
    image (a 150 MB report and 2.3 GB in the stage before); a preview of a 64-megapixel image (3.9 GB)."""
    rng = np.random.default_rng(0)
    zigzag = np.stack([np.tile([0.0, 63.0], 100_000), np.linspace(0, 63, 200_000)], 1).ravel().tolist()
    anns = [
        ann(1, 1, [rng.uniform(0, 63, 2_400_000).round(1).tolist()]),
        ann(2, 1, [zigzag]),
        ann(3, 1, {"size": [64, 64], "counts": "0" * 40_000_000}),
        ann(4, 1, SQUARE),
    ]
    full = {"size": [8000, 8000], "counts": [0, 64_000_000]}
    anns += [ann(10 + k, 2, full) for k in range(9)] + [ann(20, 3, [[100, 100, 7000, 100, 7000, 7000]])]
    orphans = ",".join(f'{{"id":{k},"image_id":999999,"category_id":1}}' for k in range(100, 1_000_100))
    images = [image(1, h=64, w=64), image(2, h=8000, w=8000), image(3, h=8000, w=8000)]
    write_coco(tmp_path / "coco", images, anns, files={"002.jpg": big_jpeg(8000), "003.jpg": big_jpeg(8000)})
    path = tmp_path / "coco" / "annotations" / "instances_val2017.json"
    path.write_text(path.read_text().replace('"annotations": [', f'"annotations": [{orphans},', 1))

    result = masks_stage(tmp_path, preview=4, workers=2, timeout=300)
    assert result.returncode == 0, result.stderr
    assert_contained(result)
    report = json.loads((tmp_path / "masks" / "report.json").read_text())
    assert (tmp_path / "masks" / "report.json").stat().st_size < 1 << 20
    assert report["counts"]["annotations_skipped"] == 1_000_000 + 3
    assert report["omitted"] == {
        "skipped_annotations": 1_000_000 - MAX_LISTED
    }  # the orphans beyond the first
    assert len(report["skipped_annotations"]) == MAX_LISTED + 3
    assert report["skipped_images"] == [
        {
            "split": "val2017",
            "image_id": 2,
            "file_name": "002.jpg",
            "reason": "its annotations' boxes hold over 536870912 pixels together (9 annotations "
            "of a 8000x8000 image)",
        }
    ]
    reasons = {e["annotation_id"]: e["reason"] for e in report["skipped_annotations"] if e["image_id"] == 1}
    assert reasons == {
        1: f"malformed segmentation: polygons of 2400000 coordinates, over the limit of {MAX_POLYGON_COORDINATES}",
        2: f"malformed segmentation: polygon edges 12800000 pixels long, over the limit of {MAX_POLYGON_STEPS}",
        3: f"malformed segmentation: RLE counts string of 40000000 characters, over the limit of {MAX_RLE_CHARS}",
    }
    assert report["counts"]["images_written"] == 2
    preview = cv2.imread(str(tmp_path / "masks" / "preview" / "003.png"))
    assert (
        preview.shape[1] <= 3 * 1024 + 8 and preview.shape[0] <= 1024 + 64
    )  # three panels, captions, legend


def test_a_name_no_file_system_takes_stops_the_stage_in_one_line(tmp_path: Path) -> None:
    """A file_name of 300 bytes gave a worker traceback; a tab would split a row of manifest.tsv."""
    long = "x" * 296 + ".jpg"
    write_coco(
        tmp_path / "coco",
        [image(1), image(2, name=long)],
        [ann(1, 1, SQUARE), ann(2, 2, SQUARE)],
        files={long: None},
    )
    result = masks_stage(tmp_path)
    assert_one_error(
        result,
        "instances_val2017.json: images[1] (id 2) has no usable 'file_name' (got 'xxxxxx",
        "... (300 characters): it has a part longer than 255 bytes)",
    )
    assert not (tmp_path / "masks").exists()
    assert_contained(result, limit=GB)

    write_coco(
        tmp_path / "coco", [image(1), image(2, name="a\tb.jpg")], [ann(1, 1, SQUARE), ann(2, 2, SQUARE)]
    )
    result = masks_stage(tmp_path)
    assert_one_error(
        result,
        "images[1] (id 2) has no usable 'file_name' (got 'a\\tb.jpg': it holds a "
        "backslash or a control character)",
    )
    assert not (tmp_path / "masks").exists()


def without_file_permission_override() -> None:
    """Run as root without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH: file permissions then apply to it."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if (
            libc.prctl(24, cap, 0, 0, 0) != 0
        ):  # PR_CAPBSET_DROP: gone from the bounding set, so from exec'd code
            raise OSError(ctypes.get_errno(), "PR_CAPBSET_DROP")


@pytest.mark.parametrize(
    ("unreadable", "message"),
    [
        (
            "coco/annotations/instances_val2017.json",
            "permission denied: coco/annotations/instances_val2017.json",
        ),
        (
            "coco/val2017",
            "while making the masks of val2017/001.jpg (image id 1): permission denied: coco/val2017/001.jpg",
        ),
    ],
)
def test_an_unreadable_file_or_folder_is_one_line(tmp_path: Path, unreadable: str, message: str) -> None:
    """A PermissionError traceback before. Root reads anything, so the stage runs without that privilege."""
    if sys.platform != "linux":
        pytest.skip("drops a Linux capability to make file permissions apply to root")
    write_coco(tmp_path / "coco", [image(1), image(2)], [ann(1, 1, SQUARE), ann(2, 2, SQUARE)])
    masks_stage(tmp_path)
    before = {p: p.read_bytes() for p in (tmp_path / "masks").rglob("*") if p.is_file()}
    (tmp_path / unreadable).chmod(0)
    try:
        result = masks_stage(tmp_path, preexec_fn=without_file_permission_override)
    finally:
        (tmp_path / unreadable).chmod(0o755)
    assert_one_error(result, message)
    assert {p: p.read_bytes() for p in (tmp_path / "masks").rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["coco", "masks", "params.yaml"]
    assert_contained(result, limit=GB)


def test_workers_end_when_the_stage_is_killed(tmp_path: Path) -> None:
    """A SIGKILL of the stage's main process left its workers running (still alive 90 s later)."""
    side = 1500
    images = [image(i, h=side, w=side) for i in range(1, 41)]
    anns = [ann(i, i, [[10, 10, side - 10, 10, side - 10, side - 10, 10, side - 10]]) for i in range(1, 41)]
    write_coco(tmp_path / "coco", images, anns)
    (tmp_path / "params.yaml").write_text(json.dumps({"masks": {"workers": 2, "preview": 0}}))
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "stages" / "masks.py"), "--coco", "coco", "--out", "masks"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while len(session_pids(proc.pid)) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    workers = [pid for pid in session_pids(proc.pid) if pid != proc.pid]
    assert len(workers) >= 2, "the stage ended before its workers were seen"
    os.kill(proc.pid, signal.SIGKILL)  # the main process only, as the out-of-memory killer would
    proc.wait()
    assert left_behind(proc.pid, grace=3.0) == []
    assert not (tmp_path / "masks").exists()

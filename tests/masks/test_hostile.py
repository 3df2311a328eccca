"""Hostile input to the masks stage, class by class (issue 9): each case as it was reported, and the fixed
outcome: one line and exit 1 for what stops the stage, a report entry for what skips a record, the
previous outputs intact and no temporary folder left."""

from __future__ import annotations

import faulthandler
import hashlib
import json
import os
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import REPO, assert_one_error, jpeg_bytes, params_file, run_stage
from PIL import Image
from pycocotools import mask as mask_utils

import cocoseg.masks.build as build_module
import cocoseg.masks.image_job as image_job
from cocoseg.core.images import read_image
from cocoseg.core.params import MasksConfig
from cocoseg.masks.build import build_masks
from cocoseg.masks.coco import CocoFormatError
from cocoseg.masks.decode import decode_region
from cocoseg.masks.image_file import ImageRejected, Listed, check_image
from cocoseg.masks.workers import WorkerDied

H, W = 427, 640  # the size of the image in the report


def image(image_id: int, name: str | None = None, h: int = 16, w: int = 16) -> dict:
    return {"id": image_id, "file_name": name or f"{image_id:03d}.jpg", "height": h, "width": w}


def ann(ann_id: int, image_id: int, segmentation: object, category_id: int = 1) -> dict:
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": category_id,
        "iscrowd": 0,
        "segmentation": segmentation,
    }


SQUARE = [[2, 2, 10, 2, 10, 10, 2, 10]]


def build(root: Path, out: Path, **cfg) -> dict:
    return build_masks(root, out, ("val2017",), MasksConfig(**{"preview": 0, "workers": 1, **cfg}), seed=0)


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def reasons(report: dict) -> dict[int, str]:
    return {s["image_id"]: s["reason"] for s in report["skipped_images"]}


# --- polygon coordinates far outside the image -------------------------------------------------------


@pytest.mark.parametrize("far", [1e9, -1e9, 1e12])
def test_far_polygon_costs_no_more_than_an_ordinary_one(far: float) -> None:
    """pycocotools took 47 s and 11 GB at 1e8 and segfaulted at 1e9; the stage sat at 0 images."""
    poly = [100.0, 100.0, far, 200.0, 300.0, 400.0]
    start = time.perf_counter()
    region = decode_region([poly], H, W)
    assert time.perf_counter() - start < 0.5
    assert 0 < region.area < H * W


def test_far_polygons_keep_pycocotools_pixels() -> None:
    """Where pycocotools can still run (a few image sizes out), the closed form gives its very pixels."""
    rng = np.random.default_rng(0)
    for _ in range(40):
        poly = rng.uniform(-20 * W, 21 * W, size=8).tolist()
        expected = mask_utils.decode(mask_utils.frPyObjects([poly], H, W)[0])
        np.testing.assert_array_equal(decode_region([poly], H, W).mask, expected)


def test_coordinates_beyond_double_precision_are_reported() -> None:
    with pytest.raises(ValueError, match=r"polygon 0 has a coordinate beyond \+-1e\+15"):
        decode_region([[0, 0, 1e300, 0, 5, 5]], H, W)


# --- a worker that dies ---------------------------------------------------------------------------


def _kill_on(image_id: int, sig: int) -> Callable:
    real = build_module.process_image

    def process(settings, image, *rest):  # patched before the fork, so it runs in the worker
        if image["id"] == image_id:
            faulthandler.disable()  # pytest's fault handler would print a stack dump for the SIGSEGV
            os.kill(os.getpid(), sig)
        return real(settings, image, *rest)

    return process


@pytest.mark.parametrize(
    ("workers", "sig", "how"),
    [(2, signal.SIGKILL, "killed by SIGKILL"), (1, signal.SIGSEGV, "killed by SIGSEGV")],
)
def test_dead_worker_ends_the_stage_in_seconds_naming_the_image(
    make_coco: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    workers: int,
    sig: int,
    how: str,
) -> None:
    root = make_coco([image(i) for i in range(1, 21)], [ann(i, i, SQUARE) for i in range(1, 21)])
    out = tmp_path / "masks"
    build(root, out)
    before = snapshot(out)
    monkeypatch.setattr(build_module, "process_image", _kill_on(13, sig))
    start = time.perf_counter()
    with pytest.raises(WorkerDied) as err:
        build(root, out, workers=workers)
    assert time.perf_counter() - start < 10  # it used to hang for ever
    assert how in str(err.value) and "val2017/013.jpg (image id 13)" in str(err.value)
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["coco", "masks"]


def test_killed_worker_gives_the_stage_one_line(make_coco: Callable[..., Path], tmp_path: Path) -> None:
    """The stage script itself, with a worker SIGKILLed mid-run: one line, exit 1, within seconds."""
    root = make_coco([image(i) for i in range(1, 31)], [ann(i, i, SQUARE) for i in range(1, 31)])
    params = params_file(tmp_path, {"workers": 2})
    script = (
        "import os, runpy, sys\n"
        "import cocoseg.masks.build as b\n"
        "real = b.process_image\n"
        "def process(s, image, *rest):\n"
        "    if image['id'] == 17:\n"
        "        os.kill(os.getpid(), 9)\n"
        "    return real(s, image, *rest)\n"
        "b.process_image = process\n"
        f"sys.argv = ['masks.py', '--params', {str(params)!r}, '--coco', {str(root)!r}, '--out', 'm']\n"
        f"runpy.run_path({str(REPO / 'stages' / 'masks.py')!r}, run_name='__main__')\n"
    )
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert time.perf_counter() - start < 30
    assert_one_error(result, "killed by SIGKILL", "val2017/017.jpg (image id 17)")
    assert not (tmp_path / "m").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


# --- a killed run's temporary folder -----------------------------------------------------------------


def test_next_run_cleans_what_a_killed_run_left(make_coco: Callable[..., Path], tmp_path: Path) -> None:
    root = make_coco([image(1)], [ann(1, 1, SQUARE)])
    out = tmp_path / "masks"
    build(root, out)
    before = snapshot(out)
    stale = tmp_path / ".masks.k1ll3d.tmp"  # what atomic_dir leaves when the process is killed
    (stale / "semantic").mkdir(parents=True)
    (stale / "semantic" / "001.png").write_bytes(b"half")
    build(root, out)
    assert not stale.exists() and snapshot(out) == before
    # killed between its two renames: the previous folder waits under .masks.old, and is put back
    os.replace(out, tmp_path / ".masks.old")
    build(root, out, val_fraction=0.5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["coco", "masks"]


# --- two images whose masks would share a name ---------------------------------------------------------


@pytest.mark.parametrize("names", [("img.jpg", "img.png"), ("IMG.jpg", "img.jpg")])
def test_colliding_mask_names_are_refused_with_one_line(
    make_coco: Callable[..., Path], tmp_path: Path, names: tuple[str, str]
) -> None:
    root = make_coco([image(1, names[0]), image(2, names[1])], [ann(1, 1, SQUARE), ann(2, 2, SQUARE)])
    with pytest.raises(
        CocoFormatError,
        match=rf"images '{names[0]}' \(id 1\) and '{names[1]}' \(id 2\) would "
        rf"both have masks named '{names[1][:3]}\.png'",
    ):
        build(root, tmp_path / "masks", preview=4)
    result = run_stage(
        "masks",
        "--params",
        params_file(tmp_path, {"preview": 4}),
        "--coco",
        root,
        "--out",
        tmp_path / "m",
        cwd=tmp_path,
    )
    assert_one_error(result, "would both have masks named")
    assert not (tmp_path / "masks").exists() and not (tmp_path / "m").exists()


# --- duplicate ids -----------------------------------------------------------------------------------


def test_duplicate_category_id_stops_the_stage_with_one_line(
    make_coco: Callable[..., Path], tmp_path: Path
) -> None:
    categories = [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}, {"id": 1, "name": "car"}]
    root = make_coco([image(1)], [ann(1, 1, SQUARE)], categories=categories)
    result = run_stage(
        "masks", "--params", params_file(tmp_path), "--coco", root, "--out", tmp_path / "m", cwd=tmp_path
    )
    assert_one_error(result, "categories[2] repeats the id 1 of categories[0]")


def test_duplicate_annotation_id_paints_the_first_and_reports_the_rest(
    make_coco: Callable[..., Path], tmp_path: Path
) -> None:
    root = make_coco([image(1), image(2)], [ann(5, 1, SQUARE), ann(5, 2, SQUARE), ann(6, 2, SQUARE)])
    report = build(root, tmp_path / "masks")
    assert report["skipped_annotations"] == [
        {
            "split": "val2017",
            "annotation_id": 5,
            "image_id": 2,
            "reason": "annotation id 5 was used by an earlier record, which is the one painted",
        }
    ]
    assert report["counts"]["annotations"] == 3 and report["counts"]["annotations_painted"] == 2


# --- too many objects, deep JSON ---------------------------------------------------------------------


def test_more_objects_than_the_instance_map_holds_skips_the_image(
    make_coco: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert image_job.MAX_INSTANCES == 65535  # uint16 ids; the limit is lowered below to keep the test fast
    monkeypatch.setattr(image_job, "MAX_INSTANCES", 3)
    anns = [ann(10 + k, 1, [[k, 0, k + 1, 0, k + 1, 5]]) for k in range(4)] + [ann(20, 2, SQUARE)]
    root = make_coco([image(1), image(2)], anns)
    report = build(root, tmp_path / "masks")
    assert reasons(report) == {1: "4 objects do not fit the instance map, which holds 3"}
    assert report["counts"]["annotations_in_skipped_images"] == 4
    assert not (tmp_path / "masks" / "semantic" / "val2017" / "001.png").exists()


def test_deeply_nested_json_gives_one_line(make_coco: Callable[..., Path], tmp_path: Path) -> None:
    root = make_coco([image(1)], [ann(1, 1, SQUARE)])
    (root / "annotations" / "instances_val2017.json").write_text(
        '{"images": ' + "[" * 200_000 + "]" * 200_000 + "}"
    )
    result = run_stage(
        "masks", "--params", params_file(tmp_path), "--coco", root, "--out", tmp_path / "m", cwd=tmp_path
    )
    assert_one_error(result, "JSON nested too deeply to be a COCO file")


# --- image files --------------------------------------------------------------------------------------


def _with_sof_size(data: bytes, height: int, width: int) -> bytes:
    sof = data.index(b"\xff\xc0")
    return data[: sof + 5] + struct.pack(">HH", height, width) + data[sof + 9 :]


def _jpeg_with_thumbnail(h: int = 16, w: int = 16) -> bytes:
    """A JPEG of noise whose EXIF (APP1) segment embeds a whole small JPEG, end marker included."""
    noise = np.random.default_rng(0).integers(0, 256, (h, w, 3), np.uint8)
    main, thumb = cv2.imencode(".jpg", noise)[1].tobytes(), jpeg_bytes(8, 8, 200)
    payload = b"Exif\x00\x00" + thumb
    app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    return main[:2] + app1 + main[2:]


def test_header_claiming_144_megapixels_is_skipped_before_decoding(tmp_path: Path) -> None:
    bomb = _with_sof_size(jpeg_bytes(8, 8), 12000, 12000)
    assert len(bomb) < 1000
    (tmp_path / "bomb.jpg").write_bytes(bomb)
    start = time.perf_counter()
    with pytest.raises(ImageRejected, match=r"12000x12000 is 144.0 megapixels, over the budget of 64.0"):
        check_image(tmp_path / "bomb.jpg", MasksConfig().max_pixels)
    assert time.perf_counter() - start < 0.1


def test_file_too_big_for_any_image_in_the_budget_is_not_read(tmp_path: Path) -> None:
    (tmp_path / "huge.jpg").write_bytes(jpeg_bytes(8, 8) + bytes(9 << 20))
    with pytest.raises(ImageRejected, match=r"the file is larger than any image of 1.0 megapixels"):
        check_image(tmp_path / "huge.jpg", 1_000_000)


@pytest.mark.parametrize("listed", [False, True], ids=["hashed", "listed"])
def test_large_files_are_checked_alike_whether_or_not_contents_tsv_lists_their_digest(
    tmp_path: Path, listed: bool
) -> None:
    """With a listed digest only the file's head and last bytes are read; files bigger than that head
    must still be accepted or refused exactly as when the whole file is read to hash it."""
    noise = np.random.default_rng(2).integers(0, 256, (400, 500, 3), np.uint8)
    baseline = cv2.imencode(".jpg", noise, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
    progressive = cv2.imencode(".jpg", noise, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()
    assert min(len(baseline), len(progressive)) > 2 * 65536  # beyond the head that is walked first
    cases = {
        "whole": baseline,
        "bytes after the end marker": baseline + b"\x00trailing",
        "progressive": progressive,
        "cut in the image data": baseline[:-5000],
        "cut between two scans": progressive[: progressive.rindex(b"\xff\xda")],
    }
    refused = {
        "cut in the image data": "ends inside the JPEG image data",
        "cut between two scans": "ends before the JPEG end-of-image marker",
    }
    path = tmp_path / "x.jpg"
    for name, data in cases.items():
        path.write_bytes(data)
        given = Listed("ab" * 16, time.time_ns() + 10**9) if listed else None
        if name in refused:
            with pytest.raises(ImageRejected, match=refused[name]):
                check_image(path, MasksConfig().max_pixels, given)
            continue
        checked = check_image(path, MasksConfig().max_pixels, given)
        assert (checked.height, checked.width) == (400, 500), name
        assert checked.digest == ("ab" * 16 if listed else hashlib.sha256(data).hexdigest()[:32]), name


def test_image_files_the_training_reader_could_not_use_are_skipped(
    make_coco: Callable[..., Path], tmp_path: Path
) -> None:
    good = jpeg_bytes(16, 16)
    thumb = _jpeg_with_thumbnail()
    tga = tmp_path / "x.tga"
    Image.new("RGB", (16, 16), (10, 20, 30)).save(tga, format="TGA")
    png = cv2.imencode(".png", np.full((16, 16, 3), 77, np.uint8))[1].tobytes()
    noise = np.random.default_rng(1).integers(0, 256, (16, 16, 3), np.uint8)
    progressive = cv2.imencode(".jpg", noise, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()
    assert progressive.count(b"\xff\xda") > 1  # several scans
    files = {
        "001.jpg": good + b"\x00garbage after the end marker",  # every decoder reads it: accepted
        "002.jpg": thumb[: len(thumb) - 100],  # cut short; the thumbnail's end marker is still near the end
        "003.jpg": tga.read_bytes(),  # a TGA named .jpg: PIL reads it, OpenCV (training) cannot
        "004.jpg": _with_sof_size(good, 12000, 12000),
        "005.png": png,
        "006.jpg": thumb,
        "007.jpg": progressive,
        "008.jpg": progressive[: progressive.rindex(b"\xff\xda")],  # cut between two scans
        "009.jpg": progressive[: len(progressive) // 2],
    }
    images = [image(i, name) for i, name in enumerate(files, start=1)]
    root = make_coco(images, [ann(i, i, SQUARE) for i in range(1, len(files) + 1)], files=files)
    assert b"\xff\xd9" in files["002.jpg"][-1024:]  # what the old end-marker check looked for
    report = build(root, tmp_path / "masks", max_pixels=1_000_000)
    assert reasons(report) == {
        2: "image file unreadable (truncated: the file ends inside the JPEG image data)",
        3: "image file unreadable (the training image reader (OpenCV) cannot decode it)",
        4: "image too large (12000x12000 is 144.0 megapixels, over the budget of 1.0 (masks.max_pixels))",
        8: "image file unreadable (truncated: the file ends before the JPEG end-of-image marker)",
        9: "image file unreadable (truncated: the file ends inside the JPEG image data)",
    }
    split = json.loads((tmp_path / "masks" / "split.json").read_text())
    for item in split["train"] + split["val"]:  # whatever was accepted, the training reader reads
        assert read_image(root / item).shape == (16, 16, 3)

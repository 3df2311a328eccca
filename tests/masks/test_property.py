"""Generated hostile annotation records thrown at the masks stage (hypothesis, derandomised for CI).

Whatever the records, the stage either writes masks or stops with one CocoFormatError; it never raises
anything else and never hangs (each example runs the real stage, its worker process included, under
pytest-timeout). Every record is accounted for: painted, crowd, unselected or skipped with a reason.
And every mask it writes agrees with pycocotools' ``annToMask`` on the records pycocotools can rasterise.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import jpeg_bytes, write_coco
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from cocoseg.core.params import MasksConfig
from cocoseg.masks.build import build_masks
from cocoseg.masks.coco import CocoFormatError

CATEGORIES = [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]
FEASIBLE = 1e4  # pycocotools rasterises polygons with coordinates this size at once; far beyond, it cannot

junk = st.one_of(
    st.none(), st.booleans(), st.text(max_size=3), st.just({}), st.just([[]]), st.integers(-3, 3)
)


def mostly(usual: st.SearchStrategy, other: st.SearchStrategy, tenths: int = 7) -> st.SearchStrategy:
    """``usual`` about ``tenths`` times in ten, else ``other`` (one_of would weigh every branch of both alike)."""
    return st.integers(0, 99).flatmap(lambda k: usual if k < 10 * tenths else other)  # hypothesis favours 0


def coordinates(h: int, w: int) -> st.SearchStrategy:
    near = st.floats(-2.0 * max(h, w), 3.0 * max(h, w), allow_nan=False)  # beyond -1x: the closed form
    mid = st.floats(-FEASIBLE, FEASIBLE, allow_nan=False)
    far = st.sampled_from([1e9, -1e9, 1e12, -1e12, 4e8, 1e300, float("nan"), float("inf")])
    return mostly(st.one_of(near, near.map(round), st.integers(-3, 30)), mostly(mid, far, 5), 9)


def polygons(h: int, w: int) -> st.SearchStrategy:
    point = coordinates(h, w)
    ring = st.integers(3, 7).flatmap(lambda n: st.lists(point, min_size=2 * n, max_size=2 * n))
    odd = st.lists(point, min_size=0, max_size=9)  # too short, odd length, empty
    return mostly(st.lists(mostly(ring, st.one_of(odd, junk), 8), min_size=1, max_size=3), st.just([]), 9)


def rles(h: int, w: int) -> st.SearchStrategy:
    def from_mask(bits: list[bool], compressed: bool) -> dict:
        mask = np.asfortranarray(np.resize(np.array(bits or [False], np.uint8), (h, w)))
        rle = mask_utils.encode(mask)
        if compressed:
            return {"size": [h, w], "counts": rle["counts"].decode()}
        flat = mask.ravel(order="F")
        edges = np.flatnonzero(np.diff(np.concatenate([[0], flat, [2]])) != 0)  # run starts, 0s first
        counts = np.diff(np.concatenate([[0], edges]))[: len(edges)].tolist()
        return {"size": [h, w], "counts": [int(c) for c in counts] if flat[0] == 0 else [0, *counts]}

    valid = st.builds(from_mask, st.lists(st.booleans(), max_size=h * w), st.booleans())
    garbage = st.fixed_dictionaries(
        {
            "size": st.one_of(st.just([h, w]), st.lists(st.integers(0, 30), max_size=3)),
            "counts": st.one_of(st.text(max_size=12), st.lists(st.integers(-2, 2 * h * w), max_size=6), junk),
        }
    )
    return st.one_of(valid, garbage)


@st.composite
def datasets(draw: st.DrawFn) -> tuple[int, int, list[dict]]:
    h, w = draw(st.integers(1, 24)), draw(st.integers(1, 24))
    records = []
    for i in range(draw(st.integers(0, 6))):
        one = st.just(1)
        record = {
            "id": draw(mostly(st.just(i + 1), mostly(st.integers(1, 3), junk, 9), 8)),
            "image_id": draw(mostly(one, st.one_of(st.just(2), junk), 9)),
            "category_id": draw(mostly(one, mostly(st.sampled_from([2, 3]), junk, 5), 8)),
            "iscrowd": draw(mostly(st.just(0), mostly(one, junk, 6), 7)),
            "segmentation": draw(mostly(polygons(h, w), mostly(rles(h, w), junk, 7), 6)),
        }
        if draw(st.integers(0, 9)) == 9:
            del record[draw(st.sampled_from(["category_id", "iscrowd", "segmentation"]))]
        records.append(record)
    return h, w, records


def reference(record: dict, h: int, w: int) -> np.ndarray | None:
    """pycocotools' mask of a record, or None where pycocotools cannot rasterise it."""
    segmentation = record["segmentation"]
    if (
        isinstance(segmentation, list)
        and max((abs(v) for p in segmentation for v in p), default=0) > FEASIBLE
    ):
        return None
    coco = COCO()
    coco.dataset = {
        "images": [{"id": 1, "height": h, "width": w}],
        "categories": CATEGORIES,
        "annotations": [{**record, "id": 1, "image_id": 1}],
    }
    coco.createIndex()
    return coco.annToMask(coco.anns[1])


def run_stage_on(root: Path, h: int, w: int, records: list[dict]) -> dict | None:
    write_coco(
        root,
        [{"id": 1, "file_name": "a.jpg", "height": h, "width": w}],
        records,
        CATEGORIES,
        files={"a.jpg": jpeg_bytes(h, w)},
    )
    cfg = MasksConfig(categories=["cat"], keep_empty_images=True, preview=1, workers=1)
    try:
        return build_masks(root, root.parent / "masks", ("val2017",), cfg, seed=0)
    except CocoFormatError:  # one line at the stage: a file-level problem (say, a non-integer id)
        return None


def check_agreement(out: Path, h: int, w: int, records: list[dict], report: dict) -> None:
    firsts: dict[int, dict] = {}
    for record in records:  # the first record with an id is the one used
        firsts.setdefault(record["id"], record)
    skipped = {
        s["annotation_id"]
        for s in report["skipped_annotations"]  # a repeated id skips the later record
        if s["image_id"] == 1 and "used by an earlier record" not in s["reason"]
    }
    table = json.loads((out / "instance" / "val2017" / "instances.jsonl").read_text())
    painted = {row["annotation_id"]: row for row in table["instances"]}
    crowd = [
        r
        for i, r in firsts.items()
        if i not in skipped
        and i not in painted
        and r.get("image_id") == 1
        and r.get("category_id") == 1
        and type(r.get("category_id")) is int
        and r.get("iscrowd") == 1
    ]
    expected = np.zeros((h, w), np.uint8)
    for layer, value in ((crowd, 255), ([firsts[i] for i in painted], 1)):
        for record in layer:
            mask = reference(record, h, w)
            if mask is None:
                return  # beyond what pycocotools can rasterise: nothing to compare with
            if value == 1:
                assert painted[record["id"]]["area"] == int(mask.sum())
                expected[mask > 0] = 1
            else:
                expected[(mask > 0) & (expected == 0)] = 255
    semantic = cv2.imread(str(out / "semantic" / "val2017" / "a.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(semantic, expected)


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(datasets())
@pytest.mark.timeout(120)
def test_generated_records_never_crash_and_agree_with_pycocotools(data: tuple[int, int, list[dict]]) -> None:
    h, w, records = data
    work = Path(tempfile.mkdtemp(prefix="cocoseg-property-"))
    try:
        report = run_stage_on(work / "coco", h, w, records)
        if report is None:
            return
        counts = report["counts"]
        assert counts["images_written"] == 1
        assert counts["annotations"] == len(records)  # every record is accounted for ...
        assert (
            counts["annotations_painted"]
            + counts["annotations_crowd"]
            + counts["annotations_unselected"]
            + counts["annotations_skipped"]
        ) == len(records)  # ... painted, crowd, unselected or skipped
        assert all(s["reason"] for s in report["skipped_annotations"])
        check_agreement(work / "masks", h, w, records, report)
    finally:
        shutil.rmtree(work)

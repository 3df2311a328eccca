"""decode_box must equal pycocotools' full decode, cropped, on every mask."""

import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from cocoseg.masks.decode import decode_region, to_rle
from cocoseg.masks.rle import decode_box, parse_counts

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "coco2017-val-mini"


def assert_matches_pycocotools(mask: np.ndarray) -> None:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    assert parse_counts(rle["counts"]).sum() == mask.size
    if not mask.any():
        return
    x, y, w, h = (int(v) for v in mask_utils.toBbox(rle))
    box = (y, y + h, x, x + w)
    np.testing.assert_array_equal(decode_box(rle["counts"], mask.shape[0], box), mask[y:y + h, x:x + w])


@pytest.mark.parametrize("seed", range(20))
def test_random_masks_match(seed: int) -> None:
    rng = np.random.default_rng(seed)
    h, w = rng.integers(1, 60, size=2)
    mask = rng.random((h, w)) < rng.uniform(0.05, 0.95)
    assert_matches_pycocotools(mask)


@pytest.mark.parametrize("mask", [
    np.ones((5, 7), bool),  # the first run of zeros has length 0
    np.pad(np.ones((1, 1), bool), ((3, 2), (4, 1))),  # a single pixel
    np.zeros((4, 4), bool),
    np.eye(40, dtype=bool),  # many runs: differences and long values in the string
    np.tri(300, 200, dtype=bool),  # long runs need several characters each
])
def test_edge_masks_match(mask: np.ndarray) -> None:
    assert_matches_pycocotools(mask)


@pytest.mark.skipif(not REAL.is_dir(), reason="../shared/data/coco2017-val-mini is not present")
def test_every_real_coco_annotation_matches_pycocotools() -> None:
    data = json.loads((REAL / "annotations" / "instances_val2017.json").read_text())
    sizes = {im["id"]: (im["height"], im["width"]) for im in data["images"]}
    for ann in data["annotations"]:
        h, w = sizes[ann["image_id"]]
        region = decode_region(ann["segmentation"], h, w)
        np.testing.assert_array_equal(region.mask, mask_utils.decode(to_rle(ann["segmentation"], h, w)))

"""decode_boxes must equal pycocotools' full decode, cropped to the tight box, on every mask."""

import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from cocoseg.masks.decode import decode_regions, to_rle
from cocoseg.masks.rle import decode_boxes

REAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "coco2017-val-mini"


def encode(mask: np.ndarray) -> bytes:
    return mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"]


def assert_matches_pycocotools(masks: list[np.ndarray]) -> None:
    """Decode all masks (one image size) in one batch; each must match its own decode."""
    height, width = masks[0].shape
    decoded = decode_boxes([encode(m) for m in masks], height, width)
    for mask, (pixels, (y0, y1, x0, x1), area) in zip(masks, decoded, strict=True):
        assert area == int(mask.sum())
        if not mask.any():
            assert pixels.shape == (0, 0) and (y0, y1, x0, x1) == (0, 0, 0, 0)
            continue
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        assert (y0, y1, x0, x1) == (rows[0], rows[-1] + 1, cols[0], cols[-1] + 1)  # tight
        assert pixels.dtype == np.uint8
        np.testing.assert_array_equal(pixels, mask[y0:y1, x0:x1])


@pytest.mark.parametrize("seed", range(20))
def test_random_masks_match_one_by_one_and_in_a_batch(seed: int) -> None:
    rng = np.random.default_rng(seed)
    h, w = rng.integers(1, 60, size=2)
    masks = [rng.random((h, w)) < rng.uniform(0.01, 0.99) for _ in range(rng.integers(1, 6))]
    masks.append(np.zeros((h, w), bool))
    for mask in masks:
        assert_matches_pycocotools([mask])
    assert_matches_pycocotools(masks)


EDGE_MASKS = [
    np.ones((5, 7), bool),  # the first run of zeros has length 0
    np.pad(np.ones((1, 1), bool), ((3, 2), (4, 1))),  # a single pixel
    np.zeros((4, 4), bool),
    np.eye(40, dtype=bool),  # many runs: differences and long values in the string
    np.tri(300, 200, dtype=bool),  # long runs need several characters each
    np.pad(np.ones((2, 50), bool), ((0, 298), (75, 75))),  # a run that crosses columns: full-height rows
]


@pytest.mark.parametrize("mask", EDGE_MASKS)
def test_edge_masks_match(mask: np.ndarray) -> None:
    assert_matches_pycocotools([mask])


def test_a_bad_string_does_not_disturb_its_neighbours() -> None:
    good = np.eye(6, dtype=bool)
    strings = [
        encode(good),
        b"",
        b"0a\x01",
        encode(good)[:-1] + b"o",
        encode(np.ones((6, 5), bool)),
        b"@",
        b"o" * 13 + b"0",
        encode(good),
    ]
    results = decode_boxes(strings, 6, 6)
    assert results[1] == "empty counts string"
    assert results[2] == "counts string has characters outside the RLE alphabet"
    assert results[3] == "counts string ends in the middle of a value"  # 'o': the "more" bit set
    assert results[4] == "runs cover 30 pixels, the image has 36"
    assert results[5] == "a run length is negative or too large"  # '@' is -16
    assert results[6] == "a run length is negative or too large"  # 14 characters: over 60 bits
    for i in (0, 7):
        pixels, box, area = results[i]
        np.testing.assert_array_equal(pixels, good.astype(np.uint8))
        assert (box, area) == ((0, 6, 0, 6), 6)


@pytest.mark.skipif(not REAL.is_dir(), reason="../shared/data/coco2017-val-mini is not present")
def test_every_real_coco_annotation_matches_pycocotools() -> None:
    data = json.loads((REAL / "annotations" / "instances_val2017.json").read_text())
    by_image: dict[int, list[dict]] = {}
    for ann in data["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    checked = 0
    for image in data["images"]:
        h, w = image["height"], image["width"]
        anns = by_image.get(image["id"], [])
        for ann, region in zip(anns, decode_regions([a["segmentation"] for a in anns], h, w), strict=True):
            np.testing.assert_array_equal(region.mask, mask_utils.decode(to_rle(ann["segmentation"], h, w)))
            checked += 1
    assert checked == len(data["annotations"]) == 624

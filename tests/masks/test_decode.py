"""Decoding COCO segmentations: exact agreement with pycocotools, and a clear reason for each bad input."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools.coco import COCO

from cocoseg.acquire.sample import encode_compressed_rle, encode_uncompressed_rle
from cocoseg.masks.decode import MalformedAnnotation, decode_region

H, W = 10, 12


def ann_to_mask(segmentation: object, height: int = H, width: int = W) -> np.ndarray:
    """pycocotools' official rasterisation, for reference."""
    coco = COCO()
    coco.dataset = {
        "images": [{"id": 1, "height": height, "width": width}],
        "categories": [{"id": 1}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": segmentation}],
    }
    coco.createIndex()
    return coco.annToMask(coco.anns[1])


def blob_mask() -> np.ndarray:
    mask = np.zeros((H, W), np.uint8)
    mask[2:5, 3:9] = 1
    mask[6:9, 0:2] = 1  # two parts, one touching the left border
    mask[0, 11] = 1  # a single pixel in the top-right corner
    return mask


def test_polygon_with_several_parts_equals_ann_to_mask() -> None:
    polys = [[1.0, 1.0, 5.5, 1.0, 5.5, 4.2, 1.0, 4.2], [7.0, 5.0, 11.0, 9.0, 7.0, 9.0], [2, 7, 4, 7, 3, 9.5]]
    region = decode_region(polys, H, W)
    expected = ann_to_mask(polys)
    assert expected.sum() > 0
    np.testing.assert_array_equal(region.mask, expected)
    assert region.mask.dtype == np.uint8 and region.mask.shape == (H, W)
    assert region.area == int(expected.sum())


def test_compressed_rle_round_trip() -> None:
    mask = blob_mask()
    rle = encode_compressed_rle(mask)
    assert isinstance(rle["counts"], str)
    region = decode_region(rle, H, W)
    np.testing.assert_array_equal(region.mask, mask)
    np.testing.assert_array_equal(region.mask, ann_to_mask(rle))
    assert region.area == 6 * 3 + 2 * 3 + 1


def test_uncompressed_rle_round_trip() -> None:
    mask = blob_mask()
    mask[0, 0] = 1  # starts with a foreground pixel, so counts begin with a zero-length run
    rle = encode_uncompressed_rle(mask)
    assert isinstance(rle["counts"], list) and rle["counts"][0] == 0
    region = decode_region(rle, H, W)
    np.testing.assert_array_equal(region.mask, mask)
    np.testing.assert_array_equal(region.mask, ann_to_mask(rle))


def test_box_is_tight_and_area_is_pixel_count() -> None:
    mask = np.zeros((H, W), np.uint8)
    mask[3:7, 2:5] = 1
    mask[8, 9] = 1
    region = decode_region(encode_compressed_rle(mask), H, W)
    assert region.box == (3, 9, 2, 10)  # y0, y1, x0, x1, half-open
    assert region.area == 13
    np.testing.assert_array_equal(region.pixels, mask[3:9, 2:10])


def test_polygon_box_matches_pixels() -> None:
    region = decode_region([[2.0, 3.0, 8.0, 3.0, 8.0, 6.0, 2.0, 6.0]], H, W)
    ys, xs = np.nonzero(region.mask)
    assert region.box == (ys.min(), ys.max() + 1, xs.min(), xs.max() + 1)
    assert region.area == len(ys)


def test_full_image_box() -> None:
    region = decode_region(encode_uncompressed_rle(np.ones((H, W), np.uint8)), H, W)
    assert region.box == (0, H, 0, W) and region.area == H * W


@pytest.mark.parametrize("encode", [encode_compressed_rle, encode_uncompressed_rle])
def test_empty_rle_has_area_zero(encode) -> None:
    region = decode_region(encode(np.zeros((H, W), np.uint8)), H, W)
    assert region.area == 0
    assert region.box == (0, 0, 0, 0)
    assert not region.mask.any()


@pytest.mark.parametrize(
    ("segmentation", "reason"),
    [
        ([[10.0, 10.0, 20.0, 20.0]], "polygon 0 has 4 coordinates (need an even number >= 6)"),
        (
            [[1, 1, 5, 1, 5, 5], [1, 1, 5, 1, 5, 5, 1]],
            "polygon 1 has 7 coordinates (need an even number >= 6)",
        ),
        ([], "empty segmentation list"),
        ([[1, 1, 5, "x", 5, 5]], "polygon 0 is not a list of numbers"),
        ([[1, 1, 5, float("nan"), 5, 5]], "polygon 0 is not a list of numbers"),
        ([[1, 1, 5, float("inf"), 5, 5]], "polygon 0 is not a list of numbers"),
        ([[1, 1, 5, True, 5, 5]], "polygon 0 is not a list of numbers"),
        ([1, 1, 5, 1, 5, 5], "polygon 0 is not a list of numbers"),  # flat list: not wrapped in a list
        (
            {"size": [H, W + 1], "counts": [H * (W + 1)]},
            f"RLE size [{H}, {W + 1}] does not match the image size [{H}, {W}]",
        ),
        ({"size": [H], "counts": "abc"}, f"RLE 'size' must be [height, width], got [{H}]"),
        ({"counts": [H * W]}, "RLE 'size' must be [height, width], got None"),
        ({"size": [H, W], "counts": [5, 3]}, f"uncompressed RLE covers 8 pixels, image has {H * W}"),
        (
            {"size": [H, W], "counts": [H * W + 2, -2]},
            "uncompressed RLE 'counts' must be non-negative integers",
        ),
        ({"size": [H, W], "counts": 17}, "RLE 'counts' must be a string or a list, got int"),
        ("polygon", "segmentation must be a polygon list or an RLE object, got str"),
        (None, "segmentation must be a polygon list or an RLE object, got NoneType"),
    ],
)
def test_malformed_segmentations_raise_with_reason(segmentation: object, reason: str) -> None:
    with pytest.raises(MalformedAnnotation) as err:
        decode_region(segmentation, H, W)
    assert str(err.value) == reason


def test_corrupt_compressed_rle_raises() -> None:
    with pytest.raises(MalformedAnnotation, match=r"^RLE cannot be decoded \("):
        decode_region({"size": [H, W], "counts": "garbage!!"}, H, W)

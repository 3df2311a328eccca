"""The closed-form polygon rasteriser against pycocotools' rleFrPoly, pixel for pixel."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from cocoseg.masks.polygon import polygon_counts


def closed_form(poly: list[float], h: int, w: int) -> np.ndarray:
    return mask_utils.decode(
        mask_utils.frPyObjects({"size": [h, w], "counts": polygon_counts(poly, h, w)}, h, w)
    )


def pycocotools(poly: list[float], h: int, w: int) -> np.ndarray:
    return mask_utils.decode(mask_utils.frPyObjects([poly], h, w)[0])


@pytest.mark.parametrize("reach", [1, 3, 30, 300])  # coordinates up to this many image sizes away
def test_random_polygons_equal_pycocotools(reach: int) -> None:
    rng = np.random.default_rng(reach)
    for i in range(150):
        h, w = int(rng.integers(1, 50)), int(rng.integers(1, 50))
        size = max(h, w)
        poly = rng.uniform(-reach * size, (reach + 1) * size, size=2 * int(rng.integers(3, 9)))
        if i % 3 == 0:
            poly = np.round(poly)  # integer vertices land exactly on pycocotools' sample columns
        if i % 4 == 0:
            poly[2:4] = poly[0:2]  # a repeated vertex: an edge of length 0
        np.testing.assert_array_equal(closed_form(poly.tolist(), h, w), pycocotools(poly.tolist(), h, w))


@pytest.mark.parametrize(
    "poly",
    [
        [0, 0, 12, 0, 12, 10, 0, 10],  # the whole frame, edges on the border
        [-5, -5, 20, -5, 20, 20, -5, 20],  # larger than the frame
        [3, 3, 3, 3, 3, 3],  # a point
        [0, 5, 12, 5, 6, 5],  # flat
        [2.5, 0, 2.5, 10, 9.5, 10, 9.5, 0],  # vertical edges between pixel centres
        [1, 1, 11, 2, 1, 3, 11, 4, 1, 5, 11, 6],  # self-intersecting zigzag
    ],
)
def test_degenerate_polygons_equal_pycocotools(poly: list[float]) -> None:
    np.testing.assert_array_equal(closed_form(poly, 10, 12), pycocotools(poly, 10, 12))


def test_far_coordinates_cost_what_the_image_costs() -> None:
    counts = polygon_counts([-1e12, -1e12, 1e12, -1e12, 1e12, 1e12, -1e12, 1e12], 427, 640)
    assert counts == [0, 427 * 640]  # every pixel inside
    assert polygon_counts([1e9, 1e9, 2e9, 1e9, 2e9, 2e9], 427, 640) == [427 * 640]  # none

"""Painting objects into semantic and instance maps: every overlap rule, pixel by pixel, on 8x8 canvases."""

from __future__ import annotations

import numpy as np
import pytest

from cocoseg.acquire.sample import encode_compressed_rle
from cocoseg.masks.decode import Region, decode_region
from cocoseg.masks.paint import VOID, PaintObject, paint_masks, paint_order

H = W = 8


def grid(text: str) -> np.ndarray:
    """Rows of characters -> uint8 array: '.' is 0, 'V' is VOID, digits are themselves."""
    rows = [line.strip() for line in text.strip().splitlines()]
    values = {".": 0, "V": VOID}
    return np.array([[values[c] if c in values else int(c) for c in row] for row in rows], np.uint8)


def rect(y0: int, y1: int, x0: int, x1: int) -> Region:
    mask = np.zeros((H, W), np.uint8)
    mask[y0:y1, x0:x1] = 1
    return decode_region(encode_compressed_rle(mask), H, W)


def obj(region: Region, class_id: int, priority: int = 0) -> PaintObject:
    return PaintObject(region, class_id, priority)


BIG = rect(0, 5, 0, 5)  # 25 pixels
SMALL = rect(3, 6, 3, 6)  # 9 pixels, 4 of them shared with BIG


def paint(objects: list[PaintObject], overlap: str, crowd: list[Region] = (), crowd_mode: str = "void"):
    return paint_masks(objects, list(crowd), H, W, overlap, crowd_mode)


@pytest.mark.parametrize("overlap", ["priority_area", "smaller_on_top", "void"])
def test_same_class_overlap_is_the_union(overlap: str) -> None:
    semantic, instance = paint([obj(BIG, 2), obj(SMALL, 2)], overlap)
    expected = np.zeros((H, W), np.uint8)
    expected[0:5, 0:5] = 2
    expected[3:6, 3:6] = 2
    np.testing.assert_array_equal(semantic, expected)
    # instance 0 only where no object is; the shared pixels go to one of the two
    np.testing.assert_array_equal(instance > 0, expected > 0)


def test_priority_area_larger_object_wins_a_tie_in_priority() -> None:
    for objects, big_id in (([obj(BIG, 1), obj(SMALL, 2)], 1), ([obj(SMALL, 2), obj(BIG, 1)], 2)):
        semantic, instance = paint(objects, "priority_area")
        np.testing.assert_array_equal(
            semantic,
            grid("""
            11111...
            11111...
            11111...
            111112..
            111112..
            ...222..
            ........
            ........
        """),
        )
        np.testing.assert_array_equal(instance == big_id, semantic == 1)


def test_priority_area_higher_priority_wins_regardless_of_size() -> None:
    semantic, instance = paint([obj(BIG, 1, priority=0), obj(SMALL, 2, priority=1)], "priority_area")
    np.testing.assert_array_equal(
        semantic,
        grid("""
        11111...
        11111...
        11111...
        111222..
        111222..
        ...222..
        ........
        ........
    """),
    )
    np.testing.assert_array_equal(instance, semantic.astype(np.uint16))  # instance k is class k here


def test_priority_area_priority_beats_size_for_the_larger_object_too() -> None:
    semantic, _ = paint([obj(BIG, 1, priority=2), obj(SMALL, 2, priority=1)], "priority_area")
    assert semantic[3, 3] == semantic[4, 4] == 1
    assert semantic[5, 5] == 2


def test_smaller_on_top_shows_the_smaller_object() -> None:
    semantic, instance = paint([obj(SMALL, 2), obj(BIG, 1)], "smaller_on_top")
    np.testing.assert_array_equal(
        semantic,
        grid("""
        11111...
        11111...
        11111...
        111222..
        111222..
        ...222..
        ........
        ........
    """),
    )
    np.testing.assert_array_equal(instance, np.where(semantic == 2, 1, np.where(semantic == 1, 2, 0)))


def test_smaller_on_top_ignores_priority() -> None:
    semantic, _ = paint([obj(SMALL, 2), obj(BIG, 1, priority=5)], "smaller_on_top")
    assert semantic[3, 3] == 2


def test_void_marks_contested_pixels() -> None:
    semantic, instance = paint([obj(BIG, 1), obj(SMALL, 2)], "void")
    np.testing.assert_array_equal(
        semantic,
        grid("""
        11111...
        11111...
        11111...
        111VV2..
        111VV2..
        ...222..
        ........
        ........
    """),
    )
    expected_instance = np.where(semantic == 1, 1, np.where(semantic == 2, 2, 0))
    np.testing.assert_array_equal(instance, expected_instance)
    assert instance.dtype == np.uint16


def test_void_keeps_same_class_overlap_and_voids_only_other_classes() -> None:
    a, b, c = rect(0, 4, 0, 4), rect(2, 6, 2, 6), rect(5, 8, 5, 8)  # a, b class 1; c class 2 touches b only
    semantic, instance = paint([obj(a, 1), obj(b, 1), obj(c, 2)], "void")
    np.testing.assert_array_equal(
        semantic,
        grid("""
        1111....
        1111....
        111111..
        111111..
        ..1111..
        ..111V22
        .....222
        .....222
    """),
    )
    assert instance[5, 5] == 0
    assert instance[2, 2] in (1, 2) and instance[7, 7] == 3


def test_crowd_void_only_where_no_object_is() -> None:
    crowd = rect(4, 8, 2, 8)
    semantic, instance = paint([obj(BIG, 1)], "priority_area", crowd=[crowd], crowd_mode="void")
    np.testing.assert_array_equal(
        semantic,
        grid("""
        11111...
        11111...
        11111...
        11111...
        11111VVV
        ..VVVVVV
        ..VVVVVV
        ..VVVVVV
    """),
    )
    np.testing.assert_array_equal(instance, (semantic == 1).astype(np.uint16))


def test_crowd_background_leaves_zero() -> None:
    crowd = rect(4, 8, 2, 8)
    semantic, instance = paint([obj(BIG, 1)], "priority_area", crowd=[crowd], crowd_mode="background")
    expected = np.zeros((H, W), np.uint8)
    expected[0:5, 0:5] = 1
    np.testing.assert_array_equal(semantic, expected)
    np.testing.assert_array_equal(instance, expected.astype(np.uint16))


def test_crowd_union_of_several_regions_with_no_objects() -> None:
    semantic, instance = paint([], "void", crowd=[rect(0, 2, 0, 2), rect(6, 8, 6, 8)])
    expected = np.zeros((H, W), np.uint8)
    expected[0:2, 0:2] = VOID
    expected[6:8, 6:8] = VOID
    np.testing.assert_array_equal(semantic, expected)
    assert not instance.any()


@pytest.mark.parametrize("overlap", ["priority_area", "smaller_on_top", "void"])
def test_instance_ids_follow_object_order(overlap: str) -> None:
    # Areas 1, 4, 9: painting order differs between policies, instance ids must not.
    objects = [obj(rect(0, 1, 0, 1), 3), obj(rect(2, 4, 2, 4), 1), obj(rect(5, 8, 5, 8), 2)]
    semantic, instance = paint(objects, overlap)
    expected = np.zeros((H, W), np.uint16)
    expected[0:1, 0:1] = 1
    expected[2:4, 2:4] = 2
    expected[5:8, 5:8] = 3
    np.testing.assert_array_equal(instance, expected)
    np.testing.assert_array_equal(semantic, np.array([0, 3, 1, 2], np.uint8)[expected])
    assert semantic.dtype == np.uint8 and instance.dtype == np.uint16
    assert semantic.shape == instance.shape == (H, W)


def test_empty_canvas() -> None:
    semantic, instance = paint([], "priority_area")
    assert semantic.dtype == np.uint8 and instance.dtype == np.uint16
    assert not semantic.any() and not instance.any()


def test_paint_order() -> None:
    objects = [obj(BIG, 1), obj(SMALL, 2), obj(rect(0, 1, 0, 1), 3, priority=1)]
    assert paint_order(objects, "priority_area") == [1, 0, 2]  # low priority first, small before large
    assert paint_order(objects, "smaller_on_top") == [0, 1, 2]  # large first, so small ends on top
    with pytest.raises(
        ValueError, match=r"masks\.overlap: 'foo' is not allowed; expected one of \['priority_area'"
    ):
        paint_order(objects, "foo")

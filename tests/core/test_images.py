"""Pictures that explain themselves: grey overlays with outlines, captions, a legend of the classes shown."""

from __future__ import annotations

import numpy as np

from cocoseg.core.images import TEXT_HEIGHT, captioned, colourise, explained_panel, legend, overlay
from cocoseg.core.layout import VOID

NAMES = ["background", "square", "disk"]


def red_image_with_square() -> tuple[np.ndarray, np.ndarray]:
    image = np.zeros((12, 12, 3), np.uint8)
    image[..., 2] = 200  # BGR red everywhere: the colour the VOC map gives class 1
    semantic = np.zeros((12, 12), np.uint8)
    semantic[3:9, 3:9] = 1
    return image, semantic


def test_overlay_is_grey_where_unlabelled_and_outlines_each_region() -> None:
    image, semantic = red_image_with_square()
    out = overlay(image, semantic, 3)
    assert (out[0, 0] == out[0, 0, 0]).all()  # background pixels lose their colour
    class_colour = colourise(semantic, 3)[3, 3]
    assert (out[3, 3] == class_colour).all()  # the region's edge is drawn in the class colour
    inside = out[5, 5].astype(int)
    assert inside[2] > inside[0]  # inside: grey blended with the class colour (VOC class 1 is red)


def test_caption_and_legend_sizes_and_ink() -> None:
    panel = np.zeros((10, 40, 3), np.uint8)
    out = captioned(panel, "truth")
    assert out.shape == (10 + TEXT_HEIGHT, 40, 3) and (out[TEXT_HEIGHT:] == 0).all()
    assert (out[:TEXT_HEIGHT] < 128).any()  # text drawn on the white strip
    one_row = legend(NAMES, [0, 1], 3, 400)
    assert one_row.shape == (TEXT_HEIGHT, 400, 3)
    assert legend(NAMES, [0, 1, 2, VOID], 3, 60).shape[0] == 4 * TEXT_HEIGHT  # narrow: one entry a row
    assert (one_row[5:12, 4:12] == 0).all()  # inside the first swatch (x 2..13): background's black
    square = colourise(np.array([[1]], np.uint8), 3)[0, 0]

    assert (one_row[8] == square).all(axis=1).sum() >= 8  # the second swatch, in the class colour


def test_explained_panel_lists_only_the_classes_present_void_last() -> None:
    image, semantic = red_image_with_square()
    semantic[0, 0] = VOID
    both = explained_panel([("a", image), ("b", image)], [semantic], NAMES)
    without_disk = legend(NAMES, [0, 1, VOID], 3, both.shape[1])
    assert both.shape == (TEXT_HEIGHT + 12 + without_disk.shape[0], 12 * 2 + 4, 3)
    assert (both[TEXT_HEIGHT + 12:] == without_disk).all()

"""Pictures that explain themselves: grey overlays with outlines, captions, a legend of the classes shown."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from cocoseg.core.images import (
    TEXT_HEIGHT,
    TURNING_ORIENTATIONS,
    captioned,
    colourise,
    exif_orientation,
    explained_panel,
    legend,
    orient,
    overlay,
    palette,
    read_image,
    read_rgb,
    reduction,
)
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
    assert (both[TEXT_HEIGHT + 12 :] == without_disk).all()


# --- the reader: PNG modes, EXIF orientation, reduced decoding ------------------------------------------

RGB = np.random.default_rng(0).integers(0, 256, (6, 10, 3), dtype=np.uint8)


def png_file(tmp_path: Path, image: Image.Image, name: str = "x.png", **kwargs: object) -> Path:
    path = tmp_path / name
    image.save(path, format="PNG", **kwargs)
    return path


@pytest.mark.parametrize("mode", ["RGB", "P", "L", "1", "I;16", "RGB;16"])
def test_png_modes_without_transparency_read_as_opencvs_colour_reader_reads_them(
    tmp_path: Path, mode: str
) -> None:
    """Palettes and greys expanded, 16-bit samples to their high byte: what a viewer shows."""
    if mode == "RGB;16":
        path = tmp_path / "x.png"
        wide = RGB.astype(np.uint16) * 257 + 99
        cv2.imwrite(str(path), wide[..., ::-1])
        expected = (wide >> 8).astype(np.uint8)
    else:
        image = {
            "RGB": Image.fromarray(RGB),
            "P": Image.fromarray(RGB).quantize(7),
            "L": Image.fromarray(RGB[..., 0]),
            "1": Image.fromarray(RGB[..., 0] > 127),
            "I;16": Image.fromarray(RGB[..., 0].astype(np.uint16) * 257 + 99),
        }[mode]
        path = png_file(tmp_path, image)
        if mode == "I;16":  # PIL's own conversion clips 16-bit values at 255; a viewer shows the high byte
            expected = np.repeat((np.asarray(image) >> 8).astype(np.uint8)[..., None], 3, axis=2)
        else:
            expected = np.asarray(image.convert("RGB"))
    got = read_rgb(path)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(got, cv2.imread(str(path), cv2.IMREAD_COLOR)[..., ::-1])


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P+tRNS"])
def test_transparent_png_pixels_are_shown_on_white(tmp_path: Path, mode: str) -> None:
    alpha = np.full((6, 10), 255, np.uint8)
    alpha[:, :3], alpha[:, 3] = 0, 128
    if mode == "RGBA":
        path, colour = png_file(tmp_path, Image.fromarray(np.dstack([RGB, alpha]), "RGBA")), RGB
    elif mode == "LA":
        path = png_file(tmp_path, Image.fromarray(np.dstack([RGB[..., 0], alpha]), "LA"))
        colour = np.repeat(RGB[..., :1], 3, axis=2)
    else:  # a palette whose entry 0 is transparent
        palette = Image.fromarray(RGB).quantize(5)
        indices = np.asarray(palette)
        path = png_file(tmp_path, palette, transparency=0)
        colour = np.asarray(palette.convert("RGB"))
        alpha = np.where(indices == 0, 0, 255).astype(np.uint8)
    got = read_rgb(path).astype(int)
    a = alpha.astype(int)[..., None]
    expected = (colour.astype(int) * a + 255 * (255 - a) + 127) // 255
    np.testing.assert_array_equal(got, expected)
    assert (got[alpha == 0] == 255).all()


def exif_jpeg(tmp_path: Path, stored: np.ndarray, orientation: int, name: str = "x.jpg") -> Path:
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / name
    Image.fromarray(stored).save(path, format="JPEG", quality=95, exif=exif.tobytes())
    return path


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orient_is_what_a_viewer_shows(tmp_path: Path, orientation: int) -> None:
    path = exif_jpeg(tmp_path, RGB, orientation)
    assert exif_orientation(path) == orientation
    with Image.open(path) as im:
        viewed = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    stored = np.asarray(Image.open(path).convert("RGB"))
    np.testing.assert_array_equal(orient(stored, orientation), viewed)
    # predict's reading: upright, with OpenCV's decoder, equal to OpenCV's own EXIF handling
    np.testing.assert_array_equal(read_image(path, upright=True), cv2.imread(str(path), cv2.IMREAD_COLOR))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_a_reader_given_the_masks_shape_turns_only_what_the_masks_stage_turned(
    tmp_path: Path, orientation: int
) -> None:
    path = exif_jpeg(tmp_path, RGB, orientation)  # stored 6x10
    as_stored = read_image(path)
    assert as_stored.shape == (6, 10, 3)
    np.testing.assert_array_equal(read_image(path, size=(6, 10)), as_stored)  # the mask has the stored shape
    turned = read_image(path, size=(10, 6))  # the mask has the turned shape
    if orientation in TURNING_ORIENTATIONS:
        np.testing.assert_array_equal(turned, orient(as_stored, orientation))
    else:  # no orientation explains the swap: as stored (the masks stage would not have turned it either)
        np.testing.assert_array_equal(turned, as_stored)


def test_a_square_photo_is_never_turned(tmp_path: Path) -> None:
    square = np.random.default_rng(1).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    path = exif_jpeg(tmp_path, square, 6)
    np.testing.assert_array_equal(read_image(path, size=(8, 8)), read_image(path))


def test_reduction_keeps_the_pixels_asked_for_and_leaves_small_photos_whole() -> None:
    assert reduction((480, 640), (160, 160)) == 1  # COCO-sized: always decoded whole
    assert reduction((1536, 2048), (640, 640)) == 2  # 768x1024 >= 640
    assert reduction((1536, 2048), (512, 512)) == 2  # 384 < 512 at 1/4
    assert reduction((1536, 2048), (160, 160)) == 8  # 192x256
    assert reduction((3000, 4000), (2000, 2000)) == 1
    assert reduction((1001, 1001), (126, 126)) == 8  # libjpeg rounds up: 1001 at 1/8 is 126
    assert reduction((1001, 1001), (127, 127)) == 4


def test_a_large_jpeg_is_decoded_reduced_and_turned_to_its_masks_shape(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    stored = cv2.resize(
        rng.integers(0, 256, (24, 32, 3), dtype=np.uint8), (1280, 960), interpolation=cv2.INTER_CUBIC
    )
    path = exif_jpeg(tmp_path, stored, 1, "big.jpg")
    half = read_image(path, size=(960, 1280), at_least=(400, 600))
    np.testing.assert_array_equal(half, cv2.imread(str(path), cv2.IMREAD_REDUCED_COLOR_2))
    assert half.shape == (480, 640, 3)
    assert read_image(path, size=(960, 1280), at_least=(900, 600)).shape == (
        960,
        1280,
        3,
    )  # no room to reduce
    turned = exif_jpeg(tmp_path, stored, 8, "turned.jpg")
    quarter = read_image(turned, size=(1280, 960), at_least=(300, 200))
    assert quarter.shape == (320, 240, 3)
    np.testing.assert_array_equal(
        quarter,
        np.rot90(cv2.imread(str(turned), cv2.IMREAD_REDUCED_COLOR_4 | cv2.IMREAD_IGNORE_ORIENTATION), 1),
    )


def test_uint16_label_maps_are_coloured_with_void_white() -> None:
    semantic = np.array([[0, 1, 300, 65535]], np.uint16)
    colours = colourise(semantic, 1204)[0]
    assert colours[0].tolist() == [0, 0, 0] and colours[3].tolist() == [255, 255, 255]
    assert colours[2].tolist() == palette(1204)[300][::-1]  # BGR
    assert len({tuple(c) for c in palette(1204)}) == 1204
    panel = explained_panel(
        [("a", np.zeros((1, 4, 3), np.uint8))], [semantic], [f"c{k}" for k in range(1204)]
    )
    assert panel.shape[1] == 4

"""Reading images and masks, and colouring label maps: one reader for every stage.

Pixels are read as stored, without EXIF rotation, because COCO's coordinates refer to the stored pixels.
The one exception is the phone photo whose EXIF orientation turns it by 90 degrees and whose annotation
file gives the turned (upright) size: the masks stage paints such an image upright, so its masks have
the upright shape, and every reader that is given the mask's shape (``size``) turns the image to match
(see ``read_image``). ``cocoseg predict`` shows photos upright, as a viewer does (``upright=True``).

PNG images in every mode become the RGB a viewer shows: OpenCV already expands palettes and greys and
takes the high byte of 16-bit samples; transparent pixels are blended onto white here (OpenCV would
keep whatever colour lies under them). Large JPEGs can be decoded at 1/2, 1/4 or 1/8 of their size
(libjpeg's scaled IDCT) when the caller needs fewer pixels (``at_least``).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import cv2
import numpy as np
from isal import isal_zlib

from cocoseg.core.files import write_bytes
from cocoseg.core.layout import VOID, label_dtype

VOID_COLOUR = (255, 255, 255)  # BGR: void pixels are drawn white
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EXIF_ORIENTATION = 0x0112
TURNING_ORIENTATIONS = (5, 6, 7, 8)  # the EXIF orientations that swap width and height
Size = tuple[int, int]  # (height, width)
# Photos up to this many pixels are always decoded whole (every COCO image, at most 640x640, and the
# sample), so their pixels, and CPU training on them, do not depend on the size asked for.
REDUCE_ABOVE_PIXELS = 1_000_000
_REDUCED = {
    1: cv2.IMREAD_COLOR,
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}


def read_image(
    path: Path, size: Size | None = None, upright: bool = False, at_least: Size | None = None
) -> np.ndarray:
    """(H, W, 3) uint8 BGR, as stored.

    ``size``: the (height, width) the caller's mask has; an image stored turned against it (its width
    and height swapped) whose EXIF orientation explains that is turned to match, as the masks stage
    painted it. ``upright``: apply any EXIF orientation, as a photo viewer does. ``at_least``: the
    (height, width) the caller will resize to; a JPEG over REDUCE_ABOVE_PIXELS whose ``size`` allows it
    is decoded at the smallest 1/2, 1/4 or 1/8 scale that still has that many pixels each way.
    """
    data = np.fromfile(str(path), np.uint8)
    try:
        if data[:8].tobytes() == PNG_SIGNATURE:
            image = _decode_png(data)
        else:
            scale = reduction(size, at_least) if size is not None and at_least is not None else 1
            image = cv2.imdecode(data, _REDUCED[scale] | cv2.IMREAD_IGNORE_ORIENTATION)
    except cv2.error as err:  # OpenCV refuses a header over its own pixel limit with an exception
        raise OSError(f"{path}: cannot read image ({str(err).strip().splitlines()[-1]})") from None
    if image is None:
        raise OSError(f"{path}: cannot read image")
    if upright:
        return orient(image, exif_orientation(path))
    if size is not None and size[0] != size[1] and _turned(image.shape[:2], size):
        orientation = exif_orientation(path)
        if orientation in TURNING_ORIENTATIONS:
            return orient(image, orientation)
    return image


def read_rgb(
    path: Path, size: Size | None = None, upright: bool = False, at_least: Size | None = None
) -> np.ndarray:
    """(H, W, 3) uint8 RGB; the arguments are ``read_image``'s."""
    return cv2.cvtColor(read_image(path, size, upright, at_least), cv2.COLOR_BGR2RGB)


def read_mask(path: Path) -> np.ndarray:
    """A label PNG as stored: (H, W) uint8 or uint16 class ids, or uint16 instance ids.

    The masks stage's own PNGs (greyscale, every row unfiltered, see cocoseg.masks.png) are inflated by
    ISA-L, 2-3x faster than libpng and zlib (1.8 against 4.2 ms for a 2048x1536 mask); any other PNG
    goes through OpenCV. Both give the same array."""
    data = np.fromfile(str(path), np.uint8)
    mask = _unfiltered_grey_png(data.tobytes()) if data[:8].tobytes() == PNG_SIGNATURE else None
    if mask is None:
        mask = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if mask is None:
        raise OSError(f"{path}: cannot read mask")
    return mask


def _unfiltered_grey_png(data: bytes) -> np.ndarray | None:
    """The pixels of a greyscale 8- or 16-bit, non-interlaced PNG whose rows all have filter 0; None for
    any other PNG (or a damaged one: OpenCV then decides)."""
    pos, idat, header = 8, [], None
    while pos + 12 <= len(data):
        length, kind = int.from_bytes(data[pos : pos + 4], "big"), data[pos + 4 : pos + 8]
        if kind == b"IHDR" and length == 13:
            header = data[pos + 8 : pos + 21]
        elif kind == b"IDAT":
            idat.append(data[pos + 8 : pos + 8 + length])
        elif kind == b"IEND":
            break
        pos += 12 + length
    if header is None or header[8] not in (8, 16) or header[9:13] != b"\x00\x00\x00\x00":
        return None  # not greyscale, or interlaced
    width, height, itemsize = (
        int.from_bytes(header[:4], "big"),
        int.from_bytes(header[4:8], "big"),
        header[8] // 8,
    )
    try:
        raw = isal_zlib.decompress(b"".join(idat))
    except isal_zlib.error:  # type: ignore[misc]  # isal has no stubs: error is an exception class
        return None
    if len(raw) != height * (1 + width * itemsize) or height == 0:
        return None
    rows = np.frombuffer(raw, np.uint8).reshape(height, 1 + width * itemsize)
    if rows[:, 0].any():
        return None  # filtered rows: OpenCV undoes the filters
    return (
        rows[:, 1:]
        .view(">u2" if itemsize == 2 else np.uint8)
        .astype(np.uint16 if itemsize == 2 else np.uint8)
    )


def reduction(size: tuple[int, int], at_least: tuple[int, int]) -> int:
    """1, 2, 4 or 8: how much smaller a JPEG of ``size`` (height, width) may be decoded when the caller
    needs ``at_least`` pixels each way (libjpeg rounds a scaled size up). 1 for images of up to
    REDUCE_ABOVE_PIXELS."""
    if size[0] * size[1] <= REDUCE_ABOVE_PIXELS:
        return 1
    fits = [
        s for s in (8, 4, 2) if all(-(-side // s) >= need for side, need in zip(size, at_least, strict=False))
    ]
    return fits[0] if fits else 1


def _turned(shape: tuple[int, int], size: tuple[int, int]) -> bool:
    """Whether a decoded ``shape`` is ``size`` with height and width swapped, at any decoding scale."""
    return any(shape == (-(-size[1] // s), -(-size[0] // s)) for s in _REDUCED)


def _decode_png(data: np.ndarray) -> np.ndarray | None:
    """A PNG of any mode as (H, W, 3) uint8 BGR: as OpenCV's colour reader gives it (palettes and greys
    expanded, 16-bit samples to their high byte), with transparent pixels blended onto white."""
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if image is None:
        return None
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)  # type: ignore[operator]  # cv2 stubs: uint16 here
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 3:
        return image
    colour, alpha = image[..., :3].astype(np.uint32), image[..., 3:].astype(np.uint32)
    return ((colour * alpha + 255 * (255 - alpha) + 127) // 255).astype(np.uint8)


def exif_orientation(path: Path) -> int:
    """The file's EXIF orientation tag (1-8), or 1 when it has none or it cannot be read."""
    from PIL import Image  # reads the header only; needed for the rare turned photo

    try:
        with Image.open(path) as im:
            value = im.getexif().get(EXIF_ORIENTATION, 1)
    except (OSError, SyntaxError, ValueError):
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def orient(image: np.ndarray, orientation: int) -> np.ndarray:
    """The image as a viewer shows it under an EXIF ``orientation`` (PIL's ``ImageOps.exif_transpose``)."""
    turned = {
        2: lambda a: a[:, ::-1],  # mirrored left to right
        3: lambda a: a[::-1, ::-1],  # 180 degrees
        4: lambda a: a[::-1],  # mirrored top to bottom
        5: lambda a: a.swapaxes(0, 1),  # transposed
        6: lambda a: np.rot90(a, -1),  # 90 degrees clockwise
        7: lambda a: np.rot90(a, 2).swapaxes(0, 1),  # transversed
        8: lambda a: np.rot90(a, 1),  # 90 degrees counter-clockwise
    }.get(orientation)
    return image if turned is None else np.ascontiguousarray(turned(image))


def palette(n: int) -> list[list[int]]:
    """The PASCAL VOC colour map (RGB): distinct, stable colours, background black."""
    colours = []
    for k in range(n):
        r = g = b = 0
        c = k
        for shift in range(7, -1, -1):
            r |= ((c >> 0) & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        colours.append([r, g, b])
    return colours


@functools.lru_cache(maxsize=8)
def _colour_table(num_classes: int, dtype: str) -> np.ndarray:
    """BGR colour of every value of ``dtype``: the palette's for class ids, white for void (the
    dtype's largest value), black elsewhere."""
    lut = np.zeros((int(np.iinfo(dtype).max) + 1, 3), np.uint8)
    lut[:num_classes] = np.array(palette(num_classes), np.uint8)[:, ::-1]  # RGB -> BGR for OpenCV
    lut[-1] = VOID_COLOUR
    return lut


def void_of(labels: np.ndarray) -> int:
    """The void label of a uint8 (255) or uint16 (65535) label map: the largest value of its dtype."""
    return int(np.iinfo(labels.dtype).max)


def colourise(semantic: np.ndarray, num_classes: int) -> np.ndarray:
    """(H, W) uint8 or uint16 class ids -> (H, W, 3) BGR colours; void pixels (``void_of``) white."""
    return _colour_table(num_classes, semantic.dtype.str)[semantic]


def overlay(image: np.ndarray, semantic: np.ndarray, num_classes: int, alpha: float = 0.6) -> np.ndarray:
    """The image in grey with the class colours blended in and each region outlined.

    Grey, because objects often have the colour of their class (a red disk under the VOC colour map's
    dark red): against grey the labels stand out whatever the photo's colours.
    """
    grey = cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    colour = colourise(semantic, num_classes)
    labelled = (semantic > 0)[..., None]
    blended = np.where(labelled, (grey * (1 - alpha) + colour * alpha).astype(np.uint8), grey)
    edges = cv2.morphologyEx(semantic, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    blended[edges & (semantic > 0)] = colour[edges & (semantic > 0)]
    return blended


FONT = cv2.FONT_HERSHEY_SIMPLEX
TEXT_HEIGHT = 16  # pixels of one caption or legend row


def captioned(panel: np.ndarray, text: str) -> np.ndarray:
    """The panel under a white strip that names it ("image", "ground truth", ...)."""
    strip = np.full((TEXT_HEIGHT, panel.shape[1], 3), 255, np.uint8)
    cv2.putText(strip, text, (2, TEXT_HEIGHT - 4), FONT, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([strip, panel], axis=0)


def legend(names: list[str], ids: list[int], num_classes: int, width: int, void: int = VOID) -> np.ndarray:
    """Rows of colour swatch + class name for ``ids`` (``void``: white swatch), wrapped at ``width``."""
    colours = colourise(
        np.array([ids], label_dtype(num_classes) if void == VOID else np.uint16), num_classes
    )[0]
    rows = [np.full((TEXT_HEIGHT, width, 3), 255, np.uint8)]
    x = 2
    for k, colour in zip(ids, colours, strict=False):
        label = "void" if k == void else names[k]
        need = 16 + cv2.getTextSize(label, FONT, 0.4, 1)[0][0] + 8
        if x + need > width and x > 2:
            rows.append(np.full((TEXT_HEIGHT, width, 3), 255, np.uint8))
            x = 2
        row = rows[-1]
        cv2.rectangle(row, (x, 3), (x + 11, 13), tuple(int(c) for c in colour), -1)
        cv2.rectangle(row, (x, 3), (x + 11, 13), (0, 0, 0), 1)
        cv2.putText(row, label, (x + 16, TEXT_HEIGHT - 4), FONT, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        x += need
    return np.concatenate(rows, axis=0)


def explained_panel(
    panels: list[tuple[str, np.ndarray]], masks: list[np.ndarray], names: list[str]
) -> np.ndarray:
    """Captioned panels side by side, above a legend of every class that ``masks`` hold (void last)."""
    joined = side_by_side([captioned(panel, title) for title, panel in panels])
    void = void_of(masks[0])
    ids = sorted(set().union(*(np.unique(m).tolist() for m in masks)), key=lambda k: (k == void, k))
    return np.concatenate([joined, legend(names, ids, len(names), joined.shape[1], void)], axis=0)


def side_by_side(panels: list[np.ndarray]) -> np.ndarray:
    """Panels of equal height joined left to right with a 4-pixel white gap."""
    gap = np.full((panels[0].shape[0], 4, 3), 255, np.uint8)
    joined = [panels[0]]
    for panel in panels[1:]:
        joined += [gap, panel]
    return np.concatenate(joined, axis=1)


def encode_png(array: np.ndarray) -> bytes:
    """Encode a uint8 (H, W), uint8 (H, W, 3) BGR or uint16 (H, W) array as PNG bytes."""
    ok, buf = cv2.imencode(".png", array)
    if not ok:
        raise ValueError(f"could not encode array of shape {array.shape} and dtype {array.dtype} as PNG")
    return buf.tobytes()


def write_png(path: str | os.PathLike[str], array: np.ndarray) -> None:
    write_bytes(path, encode_png(array))

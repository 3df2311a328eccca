"""Check an image file before any mask is made for it: its size, its pixel budget, and that training can read it.

Whatever the masks stage accepts goes into split.json, and training reads it with
``cocoseg.core.images.read_image`` (OpenCV). So a file passes only if that reader will read it whole:

- A JPEG (every COCO image) is checked by its structure, not decoded: its segments are walked from
  the start-of-image marker to the end-of-image marker (see ``_jpeg_frame``), far cheaper
  than a decode. A file cut short fails even when an embedded EXIF thumbnail carries an
  end marker of its own (the thumbnail sits inside a segment that the walk steps over); bytes after
  the end marker are allowed, as every decoder ignores them. Uncommon codings (lossless, arithmetic,
  CMYK) are decoded.
- Any other file is decoded with the training reader itself; a format it cannot read (a TGA file named
  .jpg, say) is refused here rather than in the middle of training.

The pixel budget is checked from the file's size and header, before anything is decoded.

The check also gives the digest of the file's bytes for the masks manifest (see build.py): training
and evaluation depend on that manifest instead of the image folder, so a changed image byte must
change it. Extract lists every file's digest in data/coco/contents.tsv as it writes the file; an image
listed there, and not modified since the list was written, keeps that digest and only the head and the
last bytes of its file are read. Any other file is read whole and hashed.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import NamedTuple

from PIL import Image

from cocoseg.core.contents import digest_bytes
from cocoseg.core.images import read_image

Image.MAX_IMAGE_PIXELS = None  # the pixel budget below replaces PIL's own bomb check
Image.preinit()  # import PIL's common format plugins now, once, rather than in every worker process
_SOF_PLAIN = {0xC0, 0xC1, 0xC2}  # baseline, extended and progressive Huffman: what every decoder reads
_SOF_ANY = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # TEM and restart markers carry no length
_SCAN_END = re.compile(rb"\xff[^\x00\xd0-\xd7]")  # in scan data, FF 00 is a data byte and FF Dn a restart
_HEAD = 1 << 16  # enough for the segments before the first scan of nearly every JPEG, EXIF included


class ImageRejected(OSError):
    """The file cannot become a training pair; str(err) is the reason for the report."""


class ImageOverBudget(ImageRejected):
    """The header gives more pixels than masks.max_pixels allows."""


class CheckedImage(NamedTuple):
    height: int
    width: int
    digest: str  # of the file's bytes (cocoseg.core.contents.digest_bytes)


class Listed(NamedTuple):
    """An image's digest as contents.tsv lists it, and when the list was written."""

    digest: str
    listed_ns: int


def check_image(path: Path, max_pixels: int, listed: Listed | None = None) -> CheckedImage:
    """The image's size as stored and the digest of its bytes, or ImageRejected with the reason.
    ``listed`` is taken as the digest unless the file was modified after the list was written."""
    with open(path, "rb") as f:  # one open: file opens are costly on some disks
        stat = os.fstat(f.fileno())
        size = stat.st_size
        # No image within the budget takes more than 8 bytes a pixel (16-bit RGBA, stored raw): a
        # bigger file is refused before it is read into memory.
        if size > 8 * max_pixels + (1 << 20):
            raise ImageOverBudget(
                f"the file is larger than any image of {max_pixels / 1e6:.1f} megapixels (masks.max_pixels)"
            )
        if listed is not None and stat.st_mtime_ns <= listed.listed_ns:
            digest, data = listed.digest, f.read(_HEAD)
            if size > len(data) >= 2:
                f.seek(size - 2)
                tail = f.read(2)
            else:
                tail = data[-2:]
        else:
            data = f.read()
            digest, tail = digest_bytes(data), data[-2:]
        if data[:3] == b"\xff\xd8\xff":
            frame = _jpeg_frame(data, size, tail)
            if frame is None:  # the head alone does not settle it: walk the whole file
                f.seek(0)
                frame = _walk_jpeg(f.read(), size, first_scan_only=False)
        else:
            frame = None
    if frame is not None:
        height, width, plain = frame
        _check_budget(height, width, max_pixels)
        return CheckedImage(*((height, width) if plain else _decoded_size(path)), digest)
    try:
        with Image.open(path) as im:  # reads the header only
            width, height = im.size
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageRejected(f"not an image this pipeline reads ({err})") from None
    _check_budget(height, width, max_pixels)
    return CheckedImage(*_decoded_size(path), digest)


def _jpeg_frame(data: bytes, size: int, tail: bytes) -> tuple[int, int, bool] | None:
    """The frame of a complete JPEG of ``size`` bytes, from ``data``, its head or all of it, and
    ``tail``, its last two bytes; None when the whole file must be walked.

    Usually only the head is walked: the segments before the first scan, checked against the file's
    size, and an end-of-image marker as the file's last bytes, which no cut can leave (scan data never
    holds FF D9; a cut inside a segment fails the size check). Other files (bytes after the end
    marker, segments beyond the head) are walked through every scan."""
    frame = _walk_jpeg(data[:_HEAD], size, first_scan_only=True)
    if frame is not None and size >= 4 and tail == b"\xff\xd9":
        return frame
    if len(data) < size:
        return None
    return _walk_jpeg(data, size, first_scan_only=False)


def _check_budget(height: int, width: int, max_pixels: int) -> None:
    if height * width > max_pixels:
        raise ImageOverBudget(
            f"{width}x{height} is {height * width / 1e6:.1f} megapixels, over the budget of "
            f"{max_pixels / 1e6:.1f} (masks.max_pixels)"
        )
    if height == 0 or width == 0:
        raise ImageRejected(f"header gives an empty image ({width}x{height})")


def _decoded_size(path: Path) -> tuple[int, int]:
    try:
        image = read_image(path)
    except OSError:
        raise ImageRejected("the training image reader (OpenCV) cannot decode it") from None
    return image.shape[0], image.shape[1]


def _walk_jpeg(data: bytes, size: int, first_scan_only: bool) -> tuple[int, int, bool] | None:
    """(height, width, plain) from the frame header, after walking the segments to the end marker (or,
    with ``first_scan_only``, to the first scan; None when that lies beyond ``data``, a head of the file)."""
    pos, frame = 2, None
    while True:
        if pos + 4 > len(data) and len(data) < size:
            return None  # only the head was walked; the caller walks the whole file
        if pos + 2 > len(data):
            raise ImageRejected("truncated: the file ends before the JPEG end-of-image marker")
        if data[pos] != 0xFF:
            raise ImageRejected(f"corrupt JPEG: no marker at byte {pos}")
        while pos + 2 < len(data) and data[pos + 1] == 0xFF:  # fill bytes before a marker
            pos += 1
        marker = data[pos + 1]
        pos += 2
        if marker == 0xD9:
            break
        if marker in _STANDALONE:
            continue
        if pos + 2 > len(data) or int.from_bytes(data[pos : pos + 2], "big") < 2:
            raise ImageRejected("truncated: the file ends before the JPEG end-of-image marker")
        end = pos + int.from_bytes(data[pos : pos + 2], "big")
        if end > size:
            raise ImageRejected("truncated: the file ends inside a JPEG segment")
        if end > len(data):
            return None
        if marker in _SOF_ANY and end - pos >= 8:
            frame = (
                marker,
                int.from_bytes(data[pos + 3 : pos + 5], "big"),
                int.from_bytes(data[pos + 5 : pos + 7], "big"),
                data[pos + 7],
            )
        pos = end
        if marker == 0xDA:  # a scan: entropy-coded data runs to the next marker
            if first_scan_only:
                break
            found = _SCAN_END.search(data, pos)
            if found is None:
                raise ImageRejected("truncated: the file ends inside the JPEG image data")
            pos = found.start()
    if frame is None:
        raise ImageRejected("corrupt JPEG: no frame header")
    kind, height, width, components = frame
    return height, width, kind in _SOF_PLAIN and components in (1, 3) and height > 0

"""Decode one COCO segmentation (polygons, compressed RLE or uncompressed RLE) into a binary mask.

Decoding goes through pycocotools exactly as ``COCO.annToMask`` does, so every kept pixel equals
the official rasterisation. Anything that cannot be decoded raises ``MalformedAnnotation`` with a
reason the report can quote.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from cocoseg.masks.rle import decode_box


class MalformedAnnotation(ValueError):
    """The segmentation cannot be decoded; str(err) is the reason for the report."""


@dataclass(frozen=True)
class Region:
    """A decoded mask kept as its tight box only, so painting and memory scale with the object."""

    pixels: np.ndarray  # (y1 - y0, x1 - x0) uint8 in {0, 1}: the mask inside the box
    box: tuple[int, int, int, int]  # y0, y1, x0, x1 (half-open); empty region: all zeros
    area: int  # decoded pixel count
    shape: tuple[int, int]  # (H, W) of the image

    def crop(self) -> np.ndarray:
        return self.pixels

    @property
    def mask(self) -> np.ndarray:
        """The full (H, W) mask, built on demand."""
        full = np.zeros(self.shape, np.uint8)
        y0, y1, x0, x1 = self.box
        full[y0:y1, x0:x1] = self.pixels
        return full



def to_rle(segmentation: Any, height: int, width: int) -> dict:
    """The single RLE that pycocotools' ``annToRLE`` would build for this segmentation."""
    if isinstance(segmentation, list):
        if not segmentation:
            raise MalformedAnnotation("empty segmentation list")
        for i, poly in enumerate(segmentation):
            if not isinstance(poly, list) or not all(_is_finite_number(v) for v in poly):
                raise MalformedAnnotation(f"polygon {i} is not a list of numbers")
            if len(poly) < 6 or len(poly) % 2:
                raise MalformedAnnotation(f"polygon {i} has {len(poly)} coordinates (need an even number >= 6)")
        return mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    if isinstance(segmentation, dict):
        size, counts = segmentation.get("size"), segmentation.get("counts")
        if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) for v in size)):
            raise MalformedAnnotation(f"RLE 'size' must be [height, width], got {size!r}")
        if list(size) != [height, width]:
            raise MalformedAnnotation(f"RLE size {size} does not match the image size [{height}, {width}]")
        if isinstance(counts, list):  # uncompressed RLE (crowd regions in real COCO)
            if not all(isinstance(c, int) and c >= 0 for c in counts):
                raise MalformedAnnotation("uncompressed RLE 'counts' must be non-negative integers")
            if sum(counts) != height * width:
                raise MalformedAnnotation(f"uncompressed RLE covers {sum(counts)} pixels, image has {height * width}")
            return mask_utils.frPyObjects(segmentation, height, width)
        if isinstance(counts, str):
            return {"size": size, "counts": counts.encode("ascii", "replace")}
        if isinstance(counts, bytes):
            return {"size": size, "counts": counts}
        raise MalformedAnnotation(f"RLE 'counts' must be a string or a list, got {type(counts).__name__}")
    raise MalformedAnnotation(f"segmentation must be a polygon list or an RLE object, got {type(segmentation).__name__}")


def decode_region(segmentation: Any, height: int, width: int) -> Region:
    rle = to_rle(segmentation, height, width)
    try:
        area = int(mask_utils.area(rle))
        x, y, w, h = (int(v) for v in mask_utils.toBbox(rle))  # exact: integer run bounds
    except Exception as err:  # pycocotools raises bare errors on a corrupt compressed string
        raise MalformedAnnotation(f"RLE cannot be decoded ({err})") from None
    if area == 0:
        return Region(np.zeros((0, 0), np.uint8), (0, 0, 0, 0), 0, (height, width))
    box = (max(y, 0), min(y + h, height), max(x, 0), min(x + w, width))
    try:
        pixels = decode_box(rle["counts"], height, box)
    except ValueError as err:  # run lengths that do not add up to the image
        raise MalformedAnnotation(f"RLE cannot be decoded ({err})") from None
    if int(pixels.sum()) != area:
        raise MalformedAnnotation(f"RLE runs do not fit a {height}x{width} image")
    return Region(pixels, box, area, (height, width))


def _is_finite_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

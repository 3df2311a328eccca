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


class MalformedAnnotation(ValueError):
    """The segmentation cannot be decoded; str(err) is the reason for the report."""


@dataclass(frozen=True)
class Region:
    """A decoded mask with its tight box, so painting touches only the pixels it needs."""

    mask: np.ndarray  # (H, W) uint8 in {0, 1}
    box: tuple[int, int, int, int]  # y0, y1, x0, x1 (half-open); empty region: all zeros
    area: int  # decoded pixel count

    def crop(self) -> np.ndarray:
        y0, y1, x0, x1 = self.box
        return self.mask[y0:y1, x0:x1]


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
        mask = mask_utils.decode(rle)
    except Exception as err:  # pycocotools raises bare errors on a corrupt compressed string
        raise MalformedAnnotation(f"RLE cannot be decoded ({err})") from None
    if mask.shape != (height, width):
        raise MalformedAnnotation(f"decoded mask is {mask.shape}, image is {(height, width)}")
    x, y, w, h = (int(math.ceil(v)) if i >= 2 else int(v) for i, v in enumerate(mask_utils.toBbox(rle)))
    area = int(mask_utils.area(rle))
    if area == 0:
        return Region(mask, (0, 0, 0, 0), 0)
    # toBbox is exact for RLEs (integer run bounds); clamp anyway so slicing never goes out of range
    return Region(mask, (max(y, 0), min(y + h, height), max(x, 0), min(x + w, width)), area)


def _is_finite_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

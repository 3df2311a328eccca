"""Decode COCO segmentations (polygons, compressed RLE or uncompressed RLE) into binary masks.

Polygons and uncompressed RLE become pycocotools' compressed RLE exactly as ``COCO.annToRLE`` makes
it, and the strings are decoded bit-exactly (``cocoseg.masks.rle``), so every kept pixel equals the
official rasterisation. Anything that cannot be decoded becomes a ``MalformedAnnotation`` with a
reason the report can quote.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from cocoseg.masks.polygon import polygon_counts
from cocoseg.masks.rle import decode_boxes

MAX_COORDINATE = 1e15  # beyond this a double cannot place a point to a fifth of a pixel any more


class MalformedAnnotation(ValueError):
    """The segmentation cannot be decoded; str(err) is the reason for the report."""


@dataclass(frozen=True)
class Region:
    """A decoded mask kept as its tight box only, so painting and memory scale with the object."""

    pixels: np.ndarray  # (y1 - y0, x1 - x0) uint8 in {0, 1}: the mask inside the box
    box: tuple[int, int, int, int]  # y0, y1, x0, x1 (half-open); empty region: all zeros
    area: int  # decoded pixel count
    shape: tuple[int, int]  # (H, W) of the image

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
            if not _is_number_list(poly):
                raise MalformedAnnotation(f"polygon {i} is not a list of numbers")
            if len(poly) < 6 or len(poly) % 2:
                raise MalformedAnnotation(f"polygon {i} has {len(poly)} coordinates (need an even number >= 6)")
            if max(map(abs, poly)) > MAX_COORDINATE:
                raise MalformedAnnotation(f"polygon {i} has a coordinate beyond +-{MAX_COORDINATE:.0e}")
        parts = _polygon_rles(segmentation, height, width)
        return parts[0] if len(parts) == 1 else mask_utils.merge(parts)  # merging one part copies it
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


def _polygon_rles(polygons: list[list[float]], height: int, width: int) -> list[dict]:
    """pycocotools' RLE of each polygon; those reaching far outside the image are rasterised by
    ``polygon_counts``, whose cost does not grow with the coordinates (pycocotools' does, without
    bound), with the same pixels."""
    margin = max(height, width)
    near, far = [], []
    for poly in polygons:
        xs, ys = poly[0::2], poly[1::2]
        if min(xs) >= -margin and max(xs) <= width + margin and min(ys) >= -margin and max(ys) <= height + margin:
            near.append(poly)
        else:
            far.append({"size": [height, width], "counts": polygon_counts(poly, height, width)})
    rles = mask_utils.frPyObjects(near, height, width) if near else []
    return rles + [mask_utils.frPyObjects(rle, height, width) for rle in far]


def decode_regions(segmentations: Sequence[Any], height: int,
                   width: int) -> list[Region | MalformedAnnotation]:
    """Decode the segmentations of one image: a Region each, or the error that says why not.

    Batched because the RLE strings of one image are parsed together (see ``cocoseg.masks.rle``).
    """
    rles: list[bytes | MalformedAnnotation] = []
    for segmentation in segmentations:
        try:
            rles.append(to_rle(segmentation, height, width)["counts"])
        except MalformedAnnotation as err:
            rles.append(err)
    decoded = iter(decode_boxes([rle for rle in rles if isinstance(rle, bytes)], height, width))
    results: list[Region | MalformedAnnotation] = []
    for rle in rles:
        if isinstance(rle, MalformedAnnotation):
            results.append(rle)
            continue
        one = next(decoded)
        results.append(MalformedAnnotation(f"RLE cannot be decoded ({one})") if isinstance(one, str)
                       else Region(*one, shape=(height, width)))
    return results


def decode_region(segmentation: Any, height: int, width: int) -> Region:
    """Decode one segmentation; raises MalformedAnnotation with the reason."""
    (result,) = decode_regions([segmentation], height, width)
    if isinstance(result, MalformedAnnotation):
        raise result
    return result


_NUMBER_TYPES = frozenset({int, float})  # bool is a subclass of int, but not a coordinate


def _is_number_list(poly: Any) -> bool:
    if not isinstance(poly, list) or not _NUMBER_TYPES.issuperset(map(type, poly)):
        return False
    try:
        return all(map(math.isfinite, poly))
    except OverflowError:  # an integer too large for a float
        return False

"""Decode COCO segmentations (polygons, compressed RLE or uncompressed RLE) into binary masks.

Polygons and uncompressed RLE become pycocotools' compressed RLE exactly as ``COCO.annToRLE`` makes
it, and the strings are decoded bit-exactly (``cocoseg.masks.rle``), so every kept pixel equals the
official rasterisation. Anything that cannot be decoded becomes a ``MalformedAnnotation`` with a
reason the report can quote.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from cocoseg.core.limits import MAX_POLYGON_COORDINATES, MAX_POLYGON_STEPS, MAX_REGION_PIXELS, MAX_RLE_CHARS
from cocoseg.masks.polygon import polygon_counts
from cocoseg.masks.rle import decode_boxes

MAX_COORDINATE = 1e15  # beyond this a double cannot place a point to a fifth of a pixel any more


class MalformedAnnotation(ValueError):
    """The segmentation cannot be decoded; str(err) is the reason for the report."""


class RegionsOverBudget(ValueError):
    """One image's decoded regions would hold more pixels than MAX_REGION_PIXELS; str(err) is the reason."""


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
        boxes = []  # per polygon: (x0, x1, y0, y1), its coordinates' extremes
        for i, poly in enumerate(segmentation):
            if not _is_number_list(poly):
                raise MalformedAnnotation(f"polygon {i} is not a list of numbers")
            if len(poly) < 6 or len(poly) % 2:
                raise MalformedAnnotation(
                    f"polygon {i} has {len(poly)} coordinates (need an even number >= 6)"
                )
            x0, x1, y0, y1 = min(poly[0::2]), max(poly[0::2]), min(poly[1::2]), max(poly[1::2])
            if max(-x0, x1, -y0, y1) > MAX_COORDINATE:
                raise MalformedAnnotation(f"polygon {i} has a coordinate beyond +-{MAX_COORDINATE:.0e}")
            boxes.append((x0, x1, y0, y1))
        _check_polygon_cost(segmentation, boxes, height, width)
        parts = _polygon_rles(segmentation, boxes, height, width)
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
                raise MalformedAnnotation(
                    f"uncompressed RLE covers {sum(counts)} pixels, image has {height * width}"
                )
            return mask_utils.frPyObjects(segmentation, height, width)
        if isinstance(counts, (str, bytes)) and len(counts) > MAX_RLE_CHARS:
            raise MalformedAnnotation(
                f"RLE counts string of {len(counts)} characters, over the limit of {MAX_RLE_CHARS}"
            )
        if isinstance(counts, str):
            return {"size": size, "counts": counts.encode("ascii", "replace")}
        if isinstance(counts, bytes):
            return {"size": size, "counts": counts}
        raise MalformedAnnotation(f"RLE 'counts' must be a string or a list, got {type(counts).__name__}")
    raise MalformedAnnotation(
        f"segmentation must be a polygon list or an RLE object, got {type(segmentation).__name__}"
    )


Box = tuple[float, float, float, float]  # a polygon's x0, x1, y0, y1


def _is_near(box: Box, height: int, width: int) -> bool:
    """Whether the polygon stays within one image size of the image (pycocotools rasterises it)."""
    x0, x1, y0, y1 = box
    margin = max(height, width)
    return x0 >= -margin and x1 <= width + margin and y0 >= -margin and y1 <= height + margin


def _check_polygon_cost(polygons: list[list[float]], boxes: list[Box], height: int, width: int) -> None:
    """Refuse polygons whose rasterising would take memory without bound: too many coordinates, or edges
    that walk too many pixels (a near polygon is walked step by step; of a far one, only the image's
    columns its edges cross count)."""
    coordinates = sum(len(poly) for poly in polygons)
    if coordinates > MAX_POLYGON_COORDINATES:
        raise MalformedAnnotation(
            f"polygons of {coordinates} coordinates, over the limit of {MAX_POLYGON_COORDINATES}"
        )
    steps = 0
    for poly, (x0, x1, y0, y1) in zip(polygons, boxes, strict=True):
        is_near = _is_near((x0, x1, y0, y1), height, width)
        extent = max(x1 - x0, y1 - y0) if is_near else width
        bound = (len(poly) // 2) * (extent + 2)  # no edge walks further than the polygon's extent
        if bound <= MAX_POLYGON_STEPS // len(polygons):
            steps += bound
            continue
        xy = np.asarray(poly, np.float64).reshape(-1, 2)
        d = np.abs(np.roll(xy, -1, axis=0) - xy)
        walked = d.max(axis=1) if is_near else np.minimum(d[:, 0], width)
        steps += int(np.ceil(walked).sum()) + len(xy)
    if steps > MAX_POLYGON_STEPS:
        raise MalformedAnnotation(f"polygon edges {steps} pixels long, over the limit of {MAX_POLYGON_STEPS}")


def _polygon_rles(polygons: list[list[float]], boxes: list[Box], height: int, width: int) -> list[dict]:
    """pycocotools' RLE of each polygon; those reaching far outside the image are rasterised by
    ``polygon_counts``, whose cost does not grow with the coordinates (pycocotools' does, without
    bound), with the same pixels."""
    near, far = [], []
    for poly, box in zip(polygons, boxes, strict=True):
        if _is_near(box, height, width):
            near.append(poly)
        else:
            far.append({"size": [height, width], "counts": polygon_counts(poly, height, width)})
    rles = mask_utils.frPyObjects(near, height, width) if near else []
    return rles + [mask_utils.frPyObjects(rle, height, width) for rle in far]


def decode_regions(
    segmentations: Sequence[Any], height: int, width: int
) -> list[Region | MalformedAnnotation]:
    """Decode the segmentations of one image: a Region each, or the error that says why not.

    Batched because the RLE strings of one image are parsed together (see ``cocoseg.masks.rle``).
    """
    rles: list[bytes | MalformedAnnotation] = []
    for segmentation in segmentations:
        try:
            rles.append(to_rle(segmentation, height, width)["counts"])
        except MalformedAnnotation as err:
            rles.append(err)
    decoded = _decode_in_batches([rle for rle in rles if isinstance(rle, bytes)], height, width)
    results: list[Region | MalformedAnnotation] = []
    held = 0  # pixels of the boxes decoded so far
    for rle in rles:
        if isinstance(rle, MalformedAnnotation):
            results.append(rle)
            continue
        one = next(decoded)
        if not isinstance(one, str):
            held += one[0].size
            if held > MAX_REGION_PIXELS:
                raise RegionsOverBudget(
                    f"its annotations' boxes hold over {MAX_REGION_PIXELS} pixels together "
                    f"({len(rles)} annotations of a {width}x{height} image)"
                )
        results.append(
            MalformedAnnotation(f"RLE cannot be decoded ({one})")
            if isinstance(one, str)
            else Region(*one, shape=(height, width))
        )
    return results


def _decode_in_batches(counts: list[bytes], height: int, width: int) -> Iterator[tuple | str]:
    """``decode_boxes`` over batches of at most MAX_RLE_CHARS characters and of strings whose boxes could
    hold a quarter of MAX_REGION_PIXELS: working memory is set by the batch, not by how many strings the
    image has (one batch for any COCO-sized image)."""
    per_batch = max(1, MAX_REGION_PIXELS // 4 // max(1, height * width))
    batch: list[bytes] = []
    size = 0
    for s in counts:
        if batch and (size + len(s) > MAX_RLE_CHARS or len(batch) >= per_batch):
            yield from decode_boxes(batch, height, width)
            batch, size = [], 0
        batch.append(s)
        size += len(s)
    if batch:
        yield from decode_boxes(batch, height, width)


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

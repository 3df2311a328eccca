"""Paint decoded objects into a semantic label map and an instance map. Pure numpy.

The overlap rules, stated once:
- same class: the union of the regions (which object "wins" only matters for the instance map);
- ``priority_area``: a contested pixel goes to the class with the higher priority, ties to the
  object with more decoded pixels; the loser is clipped;
- ``smaller_on_top``: objects are painted by decreasing area, so the smallest one is visible;
- ``void``: a pixel claimed by two or more different classes becomes ``VOID`` (and instance 0).
Crowd regions are never painted as a class: with ``crowd="void"`` their pixels that no kept object
claims become ``VOID``; with ``crowd="background"`` they stay 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cocoseg.masks.decode import Region

VOID = 255  # ignored by the loss and the metrics


@dataclass(frozen=True)
class PaintObject:
    region: Region
    class_id: int  # contiguous id, 1..K
    priority: int  # larger wins; classes not listed in masks.priority share 0


def paint_order(objects: Sequence[PaintObject], overlap: str) -> list[int]:
    """Indices of ``objects`` in painting order: later objects overwrite earlier ones."""
    idx = range(len(objects))
    if overlap == "priority_area":  # low priority first; within a priority, small first so large wins
        return sorted(idx, key=lambda i: (objects[i].priority, objects[i].region.area, i))
    if overlap in ("smaller_on_top", "void"):
        return sorted(idx, key=lambda i: (-objects[i].region.area, i))
    raise ValueError(f"unknown overlap policy {overlap!r}")


def paint_masks(
    objects: Sequence[PaintObject],
    crowd: Sequence[Region],
    height: int,
    width: int,
    overlap: str,
    crowd_mode: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Return (semantic (H, W) uint8, instance (H, W) uint16); instance i is objects[i - 1]."""
    if len(objects) > np.iinfo(np.uint16).max:
        raise ValueError(f"{len(objects)} objects do not fit a uint16 instance map")
    instance = np.zeros((height, width), np.uint16)
    semantic = np.zeros((height, width), np.uint8)
    for i in paint_order(objects, overlap):  # each object touches only its own box
        y0, y1, x0, x1 = objects[i].region.box
        inside = objects[i].region.pixels > 0
        np.copyto(instance[y0:y1, x0:x1], i + 1, where=inside)
        np.copyto(semantic[y0:y1, x0:x1], objects[i].class_id, where=inside)

    if overlap == "void":
        contested = _contested_pixels(objects, height, width)
        semantic[contested] = VOID
        instance[contested] = 0
    if crowd_mode == "void" and crowd:
        crowd_union = np.zeros((height, width), bool)
        for region in crowd:
            y0, y1, x0, x1 = region.box
            crowd_union[y0:y1, x0:x1] |= region.pixels > 0
        semantic[crowd_union & (semantic == 0)] = VOID
    return semantic, instance


def _contested_pixels(objects: Sequence[PaintObject], height: int, width: int) -> np.ndarray:
    """Pixels covered by objects of two or more different classes."""
    classes_here = np.zeros((height, width), np.uint8)
    for class_id in sorted({o.class_id for o in objects}):
        union = np.zeros((height, width), bool)
        for o in objects:
            if o.class_id == class_id:
                y0, y1, x0, x1 = o.region.box
                union[y0:y1, x0:x1] |= o.region.pixels > 0
        classes_here += union
    return classes_here > 1

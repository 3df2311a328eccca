"""Paint decoded objects into a semantic label map and an instance map. Pure numpy.

The overlap rules are the table ``OVERLAP_POLICIES`` below, stated once; config validation reads it.
Objects of the same class take the union of their regions (which object "wins" only matters for the
instance map). Crowd regions are never painted as a class: with ``crowd="void"`` their pixels that no kept object
claims become ``VOID``; with ``crowd="background"`` they stay 0.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from cocoseg.core.layout import VOID
from cocoseg.core.params import ConfigError, Params
from cocoseg.masks.decode import Region


@dataclass(frozen=True)
class PaintObject:
    region: Region
    class_id: int  # contiguous id, 1..K
    priority: int  # larger wins; classes not listed in masks.priority share 0


@dataclass(frozen=True)
class OverlapPolicy:
    rule: str  # what happens to a pixel claimed by objects of different classes
    order: Callable[[PaintObject, int], tuple]  # sort key of (object, index): later objects overwrite
    void_contested: bool = False  # finally set pixels claimed by two or more classes to VOID


OVERLAP_POLICIES = {
    "priority_area": OverlapPolicy(
        "the class with the higher masks.priority wins; ties go to the object with more pixels",
        lambda o, i: (o.priority, o.region.area, i),
    ),
    "smaller_on_top": OverlapPolicy(
        "objects are painted by decreasing area, so the smallest one stays visible",
        lambda o, i: (-o.region.area, i),
    ),
    "void": OverlapPolicy(
        "a pixel claimed by two or more classes becomes VOID (255, ignored) and instance 0",
        lambda o, i: (-o.region.area, i),
        void_contested=True,
    ),
}


def check_overlap(name: str) -> OverlapPolicy:
    if name not in OVERLAP_POLICIES:
        raise ConfigError(f"masks.overlap: {name!r} is not allowed; expected one of {list(OVERLAP_POLICIES)}")
    return OVERLAP_POLICIES[name]


def check_masks_overlap(params: Params) -> None:
    """masks.overlap names a policy of OVERLAP_POLICIES: the masks stage's one check of it, through
    load_params, so the error names params.yaml before any work."""
    check_overlap(params.masks.overlap)


def paint_order(objects: Sequence[PaintObject], overlap: str) -> list[int]:
    """Indices of ``objects`` in painting order: later objects overwrite earlier ones."""
    key = check_overlap(overlap).order
    return sorted(range(len(objects)), key=lambda i: key(objects[i], i))


def paint_masks(
    objects: Sequence[PaintObject],
    crowd: Sequence[Region],
    height: int,
    width: int,
    overlap: str,
    crowd_mode: str,
    void: int = VOID,
) -> tuple[np.ndarray, np.ndarray]:
    """Return (semantic (H, W), instance (H, W) uint16); instance i is objects[i - 1]. The semantic map is
    uint8 with ``void`` 255, or uint16 with ``void`` 65535 (more than 254 classes: labels.py)."""
    if len(objects) > np.iinfo(np.uint16).max:
        raise ValueError(f"{len(objects)} objects do not fit a uint16 instance map")
    instance = np.zeros((height, width), np.uint16)
    semantic = np.zeros((height, width), np.uint8 if void == VOID else np.uint16)
    for i in paint_order(objects, overlap):  # each object touches only its own box
        y0, y1, x0, x1 = objects[i].region.box
        inside = objects[i].region.pixels > 0
        np.copyto(instance[y0:y1, x0:x1], i + 1, where=inside)
        np.copyto(semantic[y0:y1, x0:x1], objects[i].class_id, where=inside)

    if OVERLAP_POLICIES[overlap].void_contested:
        contested = _contested_pixels(objects, height, width)
        semantic[contested] = void
        instance[contested] = 0
    if crowd_mode == "void" and crowd:
        crowd_union = np.zeros((height, width), bool)
        for region in crowd:
            y0, y1, x0, x1 = region.box
            crowd_union[y0:y1, x0:x1] |= region.pixels > 0
        semantic[crowd_union & (semantic == 0)] = void
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

"""Reading images and masks, and colouring label maps: one reader for every stage.

Pixels are read as stored, without EXIF rotation, because COCO's coordinates refer to the stored pixels.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from cocoseg.core.layout import VOID

VOID_COLOUR = (255, 255, 255)  # BGR: void pixels are drawn white


def read_image(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 BGR as stored."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if image is None:
        raise OSError(f"{path}: cannot read image")
    return image


def read_rgb(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB as stored."""
    return cv2.cvtColor(read_image(path), cv2.COLOR_BGR2RGB)


def read_mask(path: Path) -> np.ndarray:
    """A label PNG as stored: (H, W) uint8 class ids or uint16 instance ids."""
    mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if mask is None:
        raise OSError(f"{path}: cannot read mask")
    return mask


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


def colourise(semantic: np.ndarray, num_classes: int) -> np.ndarray:
    """(H, W) class ids -> (H, W, 3) BGR colours; void pixels white."""
    lut = np.zeros((256, 3), np.uint8)
    lut[:num_classes] = np.array(palette(num_classes), np.uint8)[:, ::-1]  # RGB -> BGR for OpenCV
    lut[VOID] = VOID_COLOUR
    return lut[semantic]


def overlay(image: np.ndarray, semantic: np.ndarray, num_classes: int, alpha: float = 0.5) -> np.ndarray:
    """BGR image with the class colours blended in where a class is labelled (background untouched)."""
    colour = colourise(semantic, num_classes)
    labelled = (semantic > 0)[..., None]
    return np.where(labelled, (image * (1 - alpha) + colour * alpha).astype(np.uint8), image)


def side_by_side(panels: list[np.ndarray]) -> np.ndarray:
    """Panels of equal height joined left to right with a 4-pixel white gap."""
    gap = np.full((panels[0].shape[0], 4, 3), 255, np.uint8)
    joined = [panels[0]]
    for panel in panels[1:]:
        joined += [gap, panel]
    return np.concatenate(joined, axis=1)

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
    try:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    except cv2.error as err:  # OpenCV refuses a header over its own pixel limit with an exception
        raise OSError(f"{path}: cannot read image ({str(err).strip().splitlines()[-1]})") from None
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


def legend(names: list[str], ids: list[int], num_classes: int, width: int) -> np.ndarray:
    """Rows of colour swatch + class name for ``ids`` (void: white swatch), wrapped at ``width``."""
    colours = colourise(np.array([ids], np.uint8), num_classes)[0]
    rows = [np.full((TEXT_HEIGHT, width, 3), 255, np.uint8)]
    x = 2
    for k, colour in zip(ids, colours):
        label = "void" if k == VOID else names[k]
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


def explained_panel(panels: list[tuple[str, np.ndarray]], masks: list[np.ndarray],
                    names: list[str]) -> np.ndarray:
    """Captioned panels side by side, above a legend of every class that ``masks`` hold (void last)."""
    joined = side_by_side([captioned(panel, title) for title, panel in panels])
    ids = sorted(set().union(*(np.unique(m).tolist() for m in masks)), key=lambda k: (k == VOID, k))
    return np.concatenate([joined, legend(names, ids, len(names), joined.shape[1])], axis=0)


def side_by_side(panels: list[np.ndarray]) -> np.ndarray:
    """Panels of equal height joined left to right with a 4-pixel white gap."""
    gap = np.full((panels[0].shape[0], 4, 3), 255, np.uint8)
    joined = [panels[0]]
    for panel in panels[1:]:
        joined += [gap, panel]
    return np.concatenate(joined, axis=1)

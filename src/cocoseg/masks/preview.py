"""Preview panels: original image | colour-mapped mask | overlay, for a few seeded random images."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from cocoseg.io import write_png
from cocoseg.masks.labels import LabelMap, palette
from cocoseg.masks.paint import VOID

VOID_COLOUR = (255, 255, 255)


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


def render_panel(image: np.ndarray, semantic: np.ndarray, num_classes: int, alpha: float = 0.5) -> np.ndarray:
    gap = np.full((image.shape[0], 4, 3), 255, np.uint8)
    return np.concatenate([image, gap, colourise(semantic, num_classes), gap,
                           overlay(image, semantic, num_classes, alpha)], axis=1)


def read_image(path: Path) -> np.ndarray:
    """BGR pixels as stored (no EXIF rotation: COCO coordinates refer to the stored pixels)."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if image is None:
        raise OSError(f"{path}: cannot read image")
    return image


def write_previews(coco_root: Path, out_root: Path, written: list[str], labels: LabelMap, count: int,
                   seed: int) -> list[Path]:
    (out_root / "preview").mkdir(parents=True, exist_ok=True)  # a DVC output: must exist even when empty
    if count == 0 or not written:
        return []
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(sorted(written), size=min(count, len(written)), replace=False))
    paths = []
    for item in chosen:
        split, file_name = item.split("/", 1)
        stem = Path(file_name).stem
        image = read_image(coco_root / split / file_name)
        semantic = cv2.imread(str(out_root / "semantic" / split / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
        path = out_root / "preview" / f"{stem}.png"
        write_png(path, render_panel(image, semantic, labels.num_classes))
        paths.append(path)
    return paths

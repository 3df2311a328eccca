"""Preview panels: original image | colour-mapped mask | overlay, for a few seeded random images."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from cocoseg.core.images import colourise, explained_panel, overlay, read_image, read_mask, write_png
from cocoseg.core.layout import PREVIEW, mask_name, split_item
from cocoseg.masks.labels import LabelMap

PREVIEW_SIDE = 1024  # a panel's image and mask are shrunk to this longest side: a preview, not the data


def fit_preview(
    image: np.ndarray, semantic: np.ndarray, side: int = PREVIEW_SIDE
) -> tuple[np.ndarray, np.ndarray]:
    """Image and mask shrunk to ``side`` pixels on the longest side (area for the image, nearest for the
    class ids); smaller ones as they are, so a very large image's panel does not take gigabytes."""
    height, width = semantic.shape[:2]
    if max(height, width) <= side:
        return image, semantic
    size = (
        max(1, round(width * side / max(height, width))),
        max(1, round(height * side / max(height, width))),
    )
    return (
        cv2.resize(image, size, interpolation=cv2.INTER_AREA),
        cv2.resize(semantic, size, interpolation=cv2.INTER_NEAREST),
    )


class MaskFolders(Protocol):
    root: Path

    def semantic(self, split: str) -> Path: ...


def render_panel(image: np.ndarray, semantic: np.ndarray, names: list[str], title: str) -> np.ndarray:
    """image | mask | overlay, captioned, over a legend of the classes in this mask."""
    k = len(names)
    panels = [(title, image), ("mask", colourise(semantic, k)), ("overlay", overlay(image, semantic, k))]
    return explained_panel(panels, [semantic], names)


def write_previews(
    image_dirs: Mapping[str, Path],
    out: MaskFolders,
    written: list[str],
    labels: LabelMap,
    count: int,
    seed: int,
) -> list[Path]:
    """Panels of ``count`` seeded random items of ``written`` under ``out.root``/preview; ``image_dirs``:
    each split's image folder."""
    (out.root / PREVIEW).mkdir(parents=True, exist_ok=True)  # a DVC output: must exist even when empty
    if count == 0 or not written:
        return []
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(sorted(written), size=min(count, len(written)), replace=False))
    paths = []
    for item in chosen:
        split, file_name = split_item(item)
        semantic = read_mask(out.semantic(split) / mask_name(file_name))
        image = read_image(image_dirs[split] / file_name, size=semantic.shape)  # upright as painted
        image, semantic = fit_preview(image, semantic)
        path = out.root / PREVIEW / mask_name(file_name)
        if path in paths:  # the same file name in two splits: the second panel takes its split's name too
            path = path.with_name(f"{split}_{path.name}")
        write_png(path, render_panel(image, semantic, list(labels.names), file_name))
        paths.append(path)
    return paths

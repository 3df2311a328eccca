"""Preview panels: original image | colour-mapped mask | overlay, for a few seeded random images."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cocoseg.core.files import write_png
from cocoseg.core.images import colourise, explained_panel, overlay, read_image, read_mask
from cocoseg.core.layout import PREVIEW, image_path, mask_name, semantic_mask_path, split_item
from cocoseg.masks.labels import LabelMap


def render_panel(image: np.ndarray, semantic: np.ndarray, names: list[str], title: str) -> np.ndarray:
    """image | mask | overlay, captioned, over a legend of the classes in this mask."""
    k = len(names)
    panels = [(title, image), ("mask", colourise(semantic, k)), ("overlay", overlay(image, semantic, k))]
    return explained_panel(panels, [semantic], names)


def write_previews(coco_root: Path, out_root: Path, written: list[str], labels: LabelMap, count: int,
                   seed: int) -> list[Path]:
    (out_root / PREVIEW).mkdir(parents=True, exist_ok=True)  # a DVC output: must exist even when empty
    if count == 0 or not written:
        return []
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(sorted(written), size=min(count, len(written)), replace=False))
    paths = []
    for item in chosen:
        image = read_image(image_path(coco_root, item))
        semantic = read_mask(semantic_mask_path(out_root, item))
        split, file_name = split_item(item)
        path = out_root / PREVIEW / mask_name(file_name)
        if path in paths:  # the same file name in two splits: the second panel takes its split's name too
            path = path.with_name(f"{split}_{path.name}")
        write_png(path, render_panel(image, semantic, list(labels.names), file_name))
        paths.append(path)
    return paths

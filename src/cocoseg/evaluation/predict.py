"""Apply a trained model to your own images: writes <stem>_mask.png (class ids) and <stem>_overlay.png.

Photos are read as a viewer shows them (EXIF orientation applied, transparent PNG pixels on white), and the
mask has that upright size: 8-bit class ids, 16-bit beyond 255 classes.

    cocoseg predict --model models/unet/model.pt --out predictions photo1.jpg photos/
"""

from __future__ import annotations

import argparse
import logging
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import torch

from cocoseg.core.files import write_png
from cocoseg.core.images import overlay, read_rgb
from cocoseg.core.layout import label_dtype
from cocoseg.core.stage import run_stage
from cocoseg.models.checkpoint import load_checkpoint
from cocoseg.models.inference import UPSAMPLING, Preprocessing, predict_batch, to_chw

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def list_images(inputs: list[Path]) -> list[Path]:
    images: list[Path] = []
    for item in inputs:
        if item.is_dir():
            images += sorted(p for p in item.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        elif item.is_file():
            images.append(item)
        else:
            raise FileNotFoundError(f"{item}: no such image or folder")
    return images


def overlay_in_bands(rgb: np.ndarray, pred: np.ndarray, num_classes: int, rows: int = 256) -> np.ndarray:
    """The BGR overlay, blended a band of rows at a time: the blend's float64 temporaries of a whole
    6000x4000 photo would take 1.7 GB; the bytes are the same."""
    out = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    for top in range(0, out.shape[0], rows):
        out[top:top + rows] = overlay(out[top:top + rows], pred[top:top + rows], num_classes)
    return out


def output_stems(images: list[Path]) -> dict[Path, str]:
    """The stem each image's outputs are named by: its own stem, unless another input shares it (``a.jpg``,
    ``a.png``, ``other/a.jpg``; compared without case, for case-insensitive disks); then its name with
    the suffix kept (``a.jpg`` -> ``a.jpg_mask.png``), and a counter if even that is taken."""
    stems = Counter(p.stem.casefold() for p in images)
    names: dict[Path, str] = {}
    taken: set[str] = set()
    for path in images:
        name = path.stem if stems[path.stem.casefold()] == 1 else path.name
        unique, k = name, 1
        while unique.casefold() in taken:
            k += 1
            unique = f"{name}.{k}"
        taken.add(unique.casefold())
        names[path] = unique
    return names


def predict_images(model_path: Path, inputs: list[Path], out_dir: Path, device: str = "cpu",
                   upsample: str = "exact") -> list[Path]:
    model, ckpt = load_checkpoint(model_path, device)
    prep = Preprocessing.from_checkpoint(ckpt)
    num_classes = len(ckpt["classes"])
    written = []
    images = list_images(inputs)
    names = output_stems(images)
    for path in images:
        try:
            rgb = read_rgb(path, upright=True)
        except OSError as err:
            log.warning("skipped %s: %s", path, err)
            continue
        inputs = prep.normalise(to_chw(prep.resize(rgb))[None].to(device))
        pred = predict_batch(model, inputs, [rgb.shape[:2]], upsample)[1][0].cpu().numpy()
        pred = pred.astype(label_dtype(num_classes))
        stem = names[path]
        write_png(out_dir / f"{stem}_mask.png", pred)
        write_png(out_dir / f"{stem}_overlay.png", overlay_in_bands(rgb, pred, num_classes))
        written.append(out_dir / f"{stem}_mask.png")
        present = [ckpt["classes"][k] for k in np.unique(pred) if k > 0]
        log.info("%s -> %s (classes: %s)", path, written[-1], ", ".join(present) or "none")
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="cocoseg predict", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="a models/<name>/model.pt file")
    parser.add_argument("--out", type=Path, default=Path("predictions"))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--upsample", choices=sorted(UPSAMPLING), default="exact",
                        help="exact: argmax of the bilinearly upsampled logits; "
                             "nearest: faster, boundaries approximate")
    parser.add_argument("inputs", type=Path, nargs="+", help="image files or folders of images")
    args = parser.parse_args(argv)
    predict_images(args.model, args.inputs, args.out, args.device, args.upsample)


def cli() -> None:
    run_stage(main)


if __name__ == "__main__":
    cli()

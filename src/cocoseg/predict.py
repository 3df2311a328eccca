"""Apply a trained model to your own images: writes <stem>_mask.png (class ids) and <stem>_overlay.png.

    cocoseg-predict --model models/unet/model.pt --out predictions photo1.jpg photos/
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import cv2
import numpy as np
import torch

from cocoseg.checkpoint import load_checkpoint
from cocoseg.cli import run_stage
from cocoseg.data import read_rgb, resize_pair, to_tensor
from cocoseg.evaluate import predict_full_res
from cocoseg.io import write_png
from cocoseg.masks.preview import overlay

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


def predict_images(model_path: Path, inputs: list[Path], out_dir: Path, device: str = "cpu") -> list[Path]:
    model, ckpt = load_checkpoint(model_path, device)
    size = tuple(ckpt["preprocessing"]["image_size"])
    num_classes = len(ckpt["classes"])
    written = []
    for path in list_images(inputs):
        try:
            rgb = read_rgb(path)
        except OSError as err:
            log.warning("skipped %s: %s", path, err)
            continue
        image = to_tensor(resize_pair(rgb, np.zeros(rgb.shape[:2], np.uint8), size)[0]).to(device)
        pred = predict_full_res(model, image, rgb.shape[:2]).cpu().numpy().astype(np.uint8)
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        write_png(out_dir / f"{path.stem}_mask.png", pred)
        write_png(out_dir / f"{path.stem}_overlay.png", overlay(bgr, pred, num_classes))
        written.append(out_dir / f"{path.stem}_mask.png")
        present = [ckpt["classes"][k] for k in np.unique(pred) if k > 0]
        log.info("%s -> %s (classes: %s)", path, written[-1], ", ".join(present) or "none")
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="a models/<name>/model.pt file")
    parser.add_argument("--out", type=Path, default=Path("predictions"))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("inputs", type=Path, nargs="+", help="image files or folders of images")
    args = parser.parse_args()
    predict_images(args.model, args.inputs, args.out, args.device)


def cli() -> None:
    run_stage(main)


if __name__ == "__main__":
    cli()

"""Apply a trained model to your own images: writes <stem>_mask.png (class ids) and <stem>_overlay.png (the
image with the classes blended in, above a legend of the classes it shows).

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

from cocoseg.core.arithmetic import add_arithmetic_flags, settle_arithmetic
from cocoseg.core.errors import UserError
from cocoseg.core.images import legend, overlay, read_rgb, write_png
from cocoseg.core.layout import label_dtype
from cocoseg.core.limits import MAX_PREDICT_PIXELS, check_pixels
from cocoseg.core.stage import run_stage
from cocoseg.models.checkpoint import load_checkpoint
from cocoseg.models.devices import check_device
from cocoseg.models.inference import UPSAMPLING, predict_batch, to_chw
from cocoseg.models.preprocessing import Preprocessing

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


class PredictError(UserError, ValueError):
    """An input or --out that predict cannot use; the message names it."""


def list_images(inputs: list[Path]) -> list[Path]:
    """The images to predict: files named, and a folder's regular files with an image suffix (a FIFO or a
    device named x.jpg would block the reader for ever, so anything else is left out with a line)."""
    images: list[Path] = []
    for item in inputs:
        if item.is_dir():
            for p in sorted(p for p in item.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
                if p.is_file():
                    images.append(p)
                else:
                    log.warning("skipped %s: not a regular file", p)
        elif item.is_file():
            images.append(item)
        elif item.exists():
            raise PredictError(f"{item}: not a regular file or a folder (a FIFO, a device, a socket?)")
        else:
            raise FileNotFoundError(f"{item}: no such image or folder")
    return images


def check_out(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise PredictError(f"--out {out_dir}: exists and is not a folder; name a folder for the predictions")


def overlay_in_bands(rgb: np.ndarray, pred: np.ndarray, num_classes: int, rows: int = 256) -> np.ndarray:
    """The BGR overlay, blended a band of rows at a time: the blend's float64 temporaries of a whole
    6000x4000 photo would take 1.7 GB; the bytes are the same."""
    out = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    for top in range(0, out.shape[0], rows):
        out[top : top + rows] = overlay(out[top : top + rows], pred[top : top + rows], num_classes)
    return out


def with_legend(image: np.ndarray, ids: list[int], names: list[str]) -> np.ndarray:
    """The overlay above a legend of the classes ``ids`` (those it shows). The legend is drawn at about 640
    pixels wide and scaled up by a whole factor, so it stays readable under a 6000-pixel photo."""
    width = image.shape[1]
    scale = max(1, round(width / 640))
    strip = legend(names, ids, len(names), -(-width // scale))
    strip = cv2.resize(
        strip, (strip.shape[1] * scale, strip.shape[0] * scale), interpolation=cv2.INTER_NEAREST
    )
    return np.concatenate([image, strip[:, :width]], axis=0)


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


def predict_images(
    model_path: Path,
    inputs: list[Path],
    out_dir: Path,
    device: str = "cpu",
    upsample: str = "exact",
    max_pixels: int = MAX_PREDICT_PIXELS,
) -> list[Path]:
    """Each readable image's class-id mask and overlay in ``out_dir``; images over ``max_pixels`` (by their
    header, before decoding) or unreadable are skipped with a line."""
    check_out(out_dir)
    check_device(device)
    images = list_images(inputs)
    model, ckpt = load_checkpoint(model_path, device)
    prep = Preprocessing.from_checkpoint(ckpt)
    num_classes = len(ckpt["classes"])
    written = []
    names = output_stems(images)
    for path in images:
        try:
            check_pixels(path, max_pixels, "--max-pixels")
            rgb = read_rgb(path, upright=True)
        except OSError as err:
            log.warning("skipped %s: %s", path, err)
            continue
        inputs = prep.normalise(to_chw(prep.resize(rgb))[None].to(device))
        pred = predict_batch(model, inputs, [rgb.shape[:2]], upsample)[1][0].cpu().numpy()
        pred = pred.astype(label_dtype(num_classes))
        stem = names[path]
        write_png(out_dir / f"{stem}_mask.png", pred)
        ids = np.flatnonzero(np.bincount(pred.ravel(), minlength=num_classes)).tolist()  # classes shown
        write_png(
            out_dir / f"{stem}_overlay.png",
            with_legend(overlay_in_bands(rgb, pred, num_classes), ids, ckpt["classes"]),
        )
        written.append(out_dir / f"{stem}_mask.png")
        present = [ckpt["classes"][k] for k in ids if k > 0]
        log.info("%s -> %s (classes: %s)", path, written[-1], ", ".join(present) or "none")
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="cocoseg predict", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, required=True, help="a models/<name>/model.pt file")
    parser.add_argument("--out", type=Path, default=Path("predictions"))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--upsample",
        choices=sorted(UPSAMPLING),
        default="exact",
        help="exact: argmax of the bilinearly upsampled logits; nearest: faster, boundaries approximate",
    )
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=MAX_PREDICT_PIXELS,
        help="skip images with more pixels (read from the header, before decoding)",
    )
    add_arithmetic_flags(parser)
    parser.add_argument("inputs", type=Path, nargs="+", help="image files or folders of images")
    args = parser.parse_args(argv)
    settle_arithmetic(args.deterministic, args.threads)
    predict_images(args.model, args.inputs, args.out, args.device, args.upsample, args.max_pixels)


def cli() -> None:
    run_stage(main)


if __name__ == "__main__":
    cli()

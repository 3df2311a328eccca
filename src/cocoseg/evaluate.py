"""Score a trained model on the val split at the masks' resolution, from one confusion matrix."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cocoseg.checkpoint import load_checkpoint
from cocoseg.config import EvaluateConfig
from cocoseg.data import SegmentationDataset, load_split
from cocoseg.io import write_json, write_png
from cocoseg.masks.preview import colourise, read_image
from cocoseg.metrics import confusion_matrix, scores
from cocoseg.models import count_parameters
from cocoseg.plots import write_confusion_plot

log = logging.getLogger(__name__)


@torch.no_grad()
def predict_full_res(model: torch.nn.Module, image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(3, h, w) model-sized input -> (H, W) class ids at the original size (logits upsampled)."""
    logits = model(image[None])
    logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
    return logits.argmax(1)[0]


def evaluate_model(model_path: Path, coco_root: Path, masks_root: Path, out_dir: Path, cfg: EvaluateConfig,
                   device: str = "cpu") -> dict[str, Any]:
    model, ckpt = load_checkpoint(model_path, device)
    classes = ckpt["classes"]
    size = tuple(ckpt["preprocessing"]["image_size"])
    dataset = SegmentationDataset(load_split(masks_root)["val"], coco_root, masks_root, size, full_res_target=True)
    cm = np.zeros((len(classes), len(classes)), np.int64)
    for i in range(len(dataset)):
        image, target = dataset[i]
        pred = predict_full_res(model, image.to(device), tuple(target.shape)).cpu().numpy()
        cm += confusion_matrix(target.numpy(), pred, len(classes))
        if i < cfg.overlays:
            _write_overlay(out_dir / "overlays" / f"{Path(dataset.items[i]).stem}.png", dataset.paths(i)[0],
                           target.numpy(), pred, len(classes))

    result = scores(cm)
    per_class = {name: {"iou": _round(result["iou"][k]), "dice": _round(result["dice_per_class"][k])}
                 for k, name in enumerate(classes) if not math.isnan(result["iou"][k])}  # absent: left out
    metrics = {"miou": _round(result["miou"]), "dice": _round(result["dice"]),
               "pixel_accuracy": _round(result["pixel_accuracy"]), "per_class": per_class,
               "params": count_parameters(model), "val_images": len(dataset)}
    write_json(out_dir / "metrics.json", metrics)
    write_json(out_dir / "speed.json", {"images_per_second": round(measure_speed(model, size, cfg, device), 2),
                                        "device": device})
    write_confusion_plot(out_dir / "confusion.png", cm, classes)
    log.info("mIoU %.4f, Dice %.4f, pixel accuracy %.4f over %d val images", metrics["miou"], metrics["dice"],
             metrics["pixel_accuracy"], len(dataset))
    return metrics


def measure_speed(model: torch.nn.Module, size: tuple[int, int], cfg: EvaluateConfig, device: str) -> float:
    """Inference images per second at batch size 1 and the model's input size, after one warm-up pass.

    The median pass time is used, so a pass slowed by another process on a shared machine does not
    drag the figure down.
    """
    x = torch.randn(1, 3, *size, device=device)
    times = []
    with torch.no_grad():
        model(x)
        for _ in range(cfg.speed_batches):
            _sync(device)
            start = time.perf_counter()
            model(x)
            _sync(device)
            times.append(time.perf_counter() - start)
    return 1.0 / float(np.median(times))


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _write_overlay(path: Path, image_path: Path, target: np.ndarray, pred: np.ndarray, num_classes: int) -> None:
    """Panel: image | ground truth | prediction (void pixels white)."""
    image = read_image(image_path)
    gap = np.full((image.shape[0], 4, 3), 255, np.uint8)
    blend = lambda m: (image * 0.4 + colourise(m.astype(np.uint8), num_classes) * 0.6).astype(np.uint8)  # noqa: E731
    write_png(path, np.concatenate([image, gap, blend(target), gap, blend(pred)], axis=1))


def _round(x: float) -> float | None:
    return None if math.isnan(x) else round(float(x), 6)

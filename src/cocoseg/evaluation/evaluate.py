"""Score a trained model on the val split at the masks' resolution, from one confusion matrix; and on the
test split, apart, where split.json has one (metrics.json's ``test/*`` keys)."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from cocoseg.core.files import write_json, write_png
from cocoseg.core.images import explained_panel, overlay, read_image, read_mask, read_rgb
from cocoseg.core.layout import VOID, image_path, mask_name, semantic_mask_path, split_item
from cocoseg.core.params import EvaluateConfig
from cocoseg.core.splits import load_split, load_void
from cocoseg.evaluation.metrics import confusion_matrix, scores
from cocoseg.evaluation.plots import write_confusion_plot
from cocoseg.models import count_parameters
from cocoseg.models.checkpoint import load_checkpoint
from cocoseg.models.inference import Preprocessing, predict_batch, to_chw

log = logging.getLogger(__name__)


class ValImages(Dataset):
    """Val (or test) items as (model-sized (3, h, w) uint8 image, full-resolution (H, W) uint8 or uint16
    mask). The image is read to its mask's shape (an EXIF-rotated photo painted upright is turned; a
    large photo may be decoded at a reduced scale that keeps the model's input size)."""

    def __init__(self, items: list[str], coco_root: Path, masks_root: Path, prep: Preprocessing) -> None:
        self.items, self.coco_root, self.masks_root, self.prep = items, coco_root, masks_root, prep

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        item = self.items[index]
        mask = read_mask(semantic_mask_path(self.masks_root, item))
        image = read_rgb(image_path(self.coco_root, item), size=mask.shape, at_least=self.prep.image_size)
        return to_chw(self.prep.resize(image)), torch.from_numpy(mask)


def _collate(batch: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    return torch.stack([image for image, _ in batch]), [mask for _, mask in batch]  # masks differ in size


def confusion_over(model: torch.nn.Module, dataset: ValImages, num_classes: int, cfg: EvaluateConfig,
                   device: str, on_image: Callable[[int, np.ndarray, np.ndarray], None] | None = None,
                   void: int = VOID) -> np.ndarray:
    """(K, K) confusion matrix of ``model`` over ``dataset`` at the masks' resolution, in batches; pixels
    labelled ``void`` left out.

    ``on_image(index, target, prediction)`` sees each image's arrays (the overlays use it).
    """
    loader = DataLoader(dataset, batch_size=cfg.batch_size, num_workers=cfg.workers, collate_fn=_collate)
    cm = np.zeros((num_classes, num_classes), np.int64)
    index = 0
    for images, targets in loader:
        inputs = dataset.prep.normalise(images.to(device))
        _, preds = predict_batch(model, inputs, [tuple(t.shape) for t in targets], cfg.upsample)
        for target, pred in zip(targets, preds):
            target, pred = target.numpy(), pred.cpu().numpy()
            cm += confusion_matrix(target, pred, num_classes, void)
            if on_image is not None:
                on_image(index, target, pred)
            index += 1
    return cm


def evaluate_model(model_path: Path, coco_root: Path, masks_root: Path, out_dir: Path, cfg: EvaluateConfig,
                   device: str = "cpu") -> dict[str, Any]:
    model, ckpt = load_checkpoint(model_path, device)
    classes, prep = ckpt["classes"], Preprocessing.from_checkpoint(ckpt)
    split, void = load_split(masks_root), load_void(masks_root)
    dataset = ValImages(split["val"], coco_root, masks_root, prep)

    def overlay_first(index: int, target: np.ndarray, pred: np.ndarray) -> None:
        if index < cfg.overlays:
            item = dataset.items[index]
            _write_overlay(out_dir / "overlays" / mask_name(split_item(item)[1]), image_path(coco_root, item),
                           target, pred, classes)

    cm = confusion_over(model, dataset, len(classes), cfg, device, overlay_first, void)
    metrics = {**summarise(cm, classes), "params": count_parameters(model), "val_images": len(dataset)}
    if split.get("test"):  # scored apart: the val split picked the best epoch, the test split did not
        test = ValImages(split["test"], coco_root, masks_root, prep)
        scored = summarise(confusion_over(model, test, len(classes), cfg, device, void=void), classes)
        metrics.update({f"test/{key}": value for key, value in scored.items()}, test_images=len(test))
        log.info("test split: mIoU %.4f over %d images", metrics["test/miou"], len(test))
    write_json(out_dir / "metrics.json", metrics)
    speed = measure_speed(model, prep.image_size, cfg, device)
    write_json(out_dir / "speed.json", {"images_per_second": round(speed, 2), "device": device})
    write_confusion_plot(out_dir / "confusion.png", cm, classes)
    log.info("mIoU %.4f, Dice %.4f, pixel accuracy %.4f over %d val images", metrics["miou"], metrics["dice"],
             metrics["pixel_accuracy"], len(dataset))
    return metrics


def summarise(cm: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """metrics.json's scores: means, and per class where the class occurs (absent classes left out)."""
    result = scores(cm)
    per_class = {name: {"iou": _round(result["iou"][k]), "dice": _round(result["dice_per_class"][k])}
                 for k, name in enumerate(classes) if not math.isnan(result["iou"][k])}
    return {"miou": _round(result["miou"]), "dice": _round(result["dice"]),
            "pixel_accuracy": _round(result["pixel_accuracy"]), "per_class": per_class}


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


def _write_overlay(path: Path, source: Path, target: np.ndarray, pred: np.ndarray, names: list[str]) -> None:
    """Panel: image | ground truth | prediction, captioned, over a legend (void pixels white)."""
    image, k = read_image(source, size=target.shape), len(names)
    pred = pred.astype(target.dtype)  # uint8, or uint16 beyond 255 classes
    panels = [(source.name, image), ("ground truth", overlay(image, target, k)),
              ("prediction", overlay(image, pred, k))]
    write_png(path, explained_panel(panels, [target, pred], names))


def _round(x: float) -> float | None:
    return None if math.isnan(x) else round(float(x), 6)

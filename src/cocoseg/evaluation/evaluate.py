"""Score a trained model on the val split at the masks' resolution, from one confusion matrix; and on the
test split, apart, where split.json has one (metrics.json's ``test/*`` keys)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from cocoseg.core.arithmetic import settle_arithmetic
from cocoseg.core.files import atomic_dir, write_json
from cocoseg.core.images import explained_panel, overlay, read_image, read_mask, read_rgb, write_png
from cocoseg.core.layout import VOID, image_path, mask_name, semantic_mask_path, split_item
from cocoseg.core.limits import SPEED_SECONDS, cap_processes
from cocoseg.core.params import EvaluateConfig
from cocoseg.core.splits import load_split, load_void
from cocoseg.evaluation.metrics import confusion_matrix, per_class_scores, summarise
from cocoseg.evaluation.plots import write_confusion_plot
from cocoseg.models import count_parameters
from cocoseg.models.checkpoint import load_checkpoint
from cocoseg.models.devices import check_device
from cocoseg.models.inference import predict_batch, to_chw
from cocoseg.models.preprocessing import Preprocessing

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


class Progress:
    """A log line every ``every`` seconds and one at the end: how many val images are scored, how fast."""

    def __init__(self, total: int, every: float = 30.0) -> None:
        self.total, self.every = total, every
        self.started = self.shown = time.perf_counter()

    def update(self, done: int) -> None:
        now = time.perf_counter()
        if now - self.shown >= self.every or done == self.total:
            self.shown = now
            log.info(
                "scored %d/%d val images (%d%%), %.1f images/s",
                done,
                self.total,
                100 * done // max(self.total, 1),
                done / max(now - self.started, 1e-9),
            )


def confusion_over(
    model: torch.nn.Module,
    dataset: ValImages,
    num_classes: int,
    cfg: EvaluateConfig,
    device: str,
    on_image: Callable[[int, np.ndarray, np.ndarray], None] | None = None,
    void: int = VOID,
) -> np.ndarray:
    """(K, K) confusion matrix of ``model`` over ``dataset`` at the masks' resolution, in batches; pixels
    labelled ``void`` left out.

    ``on_image(index, target, prediction)`` sees each image's arrays (the overlays use it).
    """
    workers = cap_processes("evaluate.workers", cfg.workers)
    loader = DataLoader(dataset, batch_size=cfg.batch_size, num_workers=workers, collate_fn=_collate)
    cm = np.zeros((num_classes, num_classes), np.int64)
    progress = Progress(len(dataset))
    index = 0
    for images, targets in loader:
        inputs = dataset.prep.normalise(images.to(device))
        _, preds = predict_batch(model, inputs, [tuple(t.shape) for t in targets], cfg.upsample)
        for target, pred in zip(targets, preds, strict=False):
            target, pred = target.numpy(), pred.cpu().numpy()
            cm += confusion_matrix(target, pred, num_classes, void)
            if on_image is not None:
                on_image(index, target, pred)
            index += 1
        progress.update(index)
    return cm


def evaluate_model(
    model_path: Path,
    coco_root: Path,
    masks_root: Path,
    out_dir: Path,
    cfg: EvaluateConfig,
    device: str = "cpu",
) -> dict[str, Any]:
    """Write metrics.json (the scores ``dvc metrics`` and the experiment table show), per_class.json (each
    class's IoU and Dice, worst first: a plot, so class names never become experiment-table columns),
    speed.json, confusion.png and overlays/ (replaced whole: no overlay of an earlier run or dataset stays)."""
    check_device(device)
    arithmetic = settle_arithmetic(cfg.deterministic, cfg.threads)
    model, ckpt = load_checkpoint(model_path, device)
    classes, prep = ckpt["classes"], Preprocessing.from_checkpoint(ckpt)
    split, void = load_split(masks_root), load_void(masks_root)
    dataset = ValImages(split["val"], coco_root, masks_root, prep)
    log.info("scoring %s on %d val images, %d classes", model_path, len(dataset), len(classes))
    cm = _confusion_with_overlays(model, dataset, classes, cfg, device, out_dir / "overlays", void)
    metrics = {**summarise(cm), "params": count_parameters(model), "val_images": len(dataset)}
    if split.get("test"):  # scored apart: the val split picked the best epoch, the test split did not
        test = ValImages(split["test"], coco_root, masks_root, prep)
        scored = summarise(confusion_over(model, test, len(classes), cfg, device, void=void))
        metrics.update({f"test/{key}": value for key, value in scored.items()}, test_images=len(test))
        log.info("test split: mIoU %.4f over %d images", metrics["test/miou"], len(test))
    write_json(out_dir / "metrics.json", metrics)
    write_json(out_dir / "per_class.json", per_class_scores(cm, classes))
    _write_speed(out_dir / "speed.json", model, prep.image_size, cfg, device, arithmetic)
    write_confusion_plot(out_dir / "confusion.png", cm, classes)
    log.info(
        "mIoU %.4f, Dice %.4f, pixel accuracy %.4f over %d val images",
        metrics["miou"],
        metrics["dice"],
        metrics["pixel_accuracy"],
        len(dataset),
    )
    return metrics


def _confusion_with_overlays(
    model: torch.nn.Module,
    dataset: ValImages,
    classes: list[str],
    cfg: EvaluateConfig,
    device: str,
    overlays_dir: Path,
    void: int,
) -> np.ndarray:
    """The val confusion matrix, drawing the first ``cfg.overlays`` images' overlays into ``overlays_dir``
    (replaced whole)."""
    with atomic_dir(overlays_dir) as overlays:

        def overlay_first(index: int, target: np.ndarray, pred: np.ndarray) -> None:
            if index < cfg.overlays:
                item = dataset.items[index]
                path = image_path(dataset.coco_root, item)
                _write_overlay(overlays / mask_name(split_item(item)[1]), path, target, pred, classes)

        return confusion_over(model, dataset, len(classes), cfg, device, overlay_first, void)


def _write_speed(
    path: Path,
    model: torch.nn.Module,
    size: tuple[int, int],
    cfg: EvaluateConfig,
    device: str,
    arithmetic: dict[str, Any],
) -> None:
    speed = measure_speed(model, size, cfg, device)
    record = {"images_per_second": round(speed, 2), "device": device}
    write_json(path, record | {"kernels": arithmetic["kernels"], "threads": arithmetic["threads"]})


def measure_speed(model: torch.nn.Module, size: tuple[int, int], cfg: EvaluateConfig, device: str) -> float:
    """Inference images per second at batch size 1 and the model's input size, after one warm-up pass.

    The median pass time is used, so a pass slowed by another process on a shared machine does not
    drag the figure down. ``evaluate.speed_batches`` passes are timed, or as many as fit in SPEED_SECONDS.
    """
    x = torch.randn(1, 3, *size, device=device)
    times: list[float] = []
    with torch.no_grad():
        model(x)
        while len(times) < cfg.speed_batches and sum(times) < SPEED_SECONDS:
            _sync(device)
            start = time.perf_counter()
            model(x)
            _sync(device)
            times.append(time.perf_counter() - start)
    if len(times) < cfg.speed_batches:
        log.warning(
            "evaluate.speed_batches: %d passes asked, %d timed: they took the %.0f s the timing may take",
            cfg.speed_batches,
            len(times),
            SPEED_SECONDS,
        )
    return 1.0 / float(np.median(times))


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _write_overlay(path: Path, source: Path, target: np.ndarray, pred: np.ndarray, names: list[str]) -> None:
    """Panel: image | ground truth | prediction, captioned, over a legend (void pixels white)."""
    image, k = read_image(source, size=target.shape), len(names)
    pred = pred.astype(target.dtype)  # uint8, or uint16 beyond 255 classes
    panels = [
        (source.name, image),
        ("ground truth", overlay(image, target, k)),
        ("prediction", overlay(image, pred, k)),
    ]
    write_png(path, explained_panel(panels, [target, pred], names))

"""Segmentation metrics from one dataset-level confusion matrix (numpy; no torch needed).

Classes absent from both the prediction and the ground truth have no defined IoU or Dice: they are
left out of the means (NaN per class, ``nanmean`` over classes), never counted as 0. Pixels labelled
``ignore_index`` (255, void) are left out of everything.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def confusion_matrix(target: np.ndarray, pred: np.ndarray, num_classes: int, ignore_index: int = 255) -> np.ndarray:
    """(K, K) int64 counts, rows = ground truth, columns = prediction."""
    keep = target != ignore_index
    t = target[keep].astype(np.int64)
    p = pred[keep].astype(np.int64)
    if t.size and (t.max() >= num_classes or p.max() >= num_classes or min(t.min(), p.min()) < 0):
        raise ValueError(f"labels outside 0..{num_classes - 1} (ignore_index {ignore_index})")
    return np.bincount(t * num_classes + p, minlength=num_classes**2).reshape(num_classes, num_classes)


def scores(cm: np.ndarray) -> dict[str, Any]:
    """mIoU, mean Dice, pixel accuracy and per-class IoU/Dice (NaN where a class is absent)."""
    cm = cm.astype(np.float64)
    tp = np.diag(cm)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = tp / (tp + fp + fn)
        dice = 2 * tp / (2 * tp + fp + fn)
    total = cm.sum()
    present = ~np.isnan(iou)
    return {
        "miou": float(np.nanmean(iou)) if present.any() else float("nan"),
        "dice": float(np.nanmean(dice)) if present.any() else float("nan"),
        "pixel_accuracy": float(tp.sum() / total) if total else float("nan"),
        "iou": iou,
        "dice_per_class": dice,
    }

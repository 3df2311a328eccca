"""Evaluate's scores: one dataset-level confusion matrix (numpy), scored by core/scores.py's functions.

Classes absent from both the prediction and the ground truth have no defined IoU or Dice: they are
left out of the means and of per_class.json, never counted as 0. Pixels labelled ``ignore_index`` (void)
are left out of everything.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from cocoseg.core.scores import SCORES, Counts, class_dice, class_iou


def confusion_matrix(
    target: np.ndarray, pred: np.ndarray, num_classes: int, ignore_index: int = 255
) -> np.ndarray:
    """(K, K) int64 counts, rows = ground truth, columns = prediction."""
    keep = target != ignore_index
    t = target[keep].astype(np.int64)
    p = pred[keep].astype(np.int64)
    if t.size and (t.max() >= num_classes or p.max() >= num_classes or min(t.min(), p.min()) < 0):
        raise ValueError(f"labels outside 0..{num_classes - 1} (ignore_index {ignore_index})")
    return np.bincount(t * num_classes + p, minlength=num_classes**2).reshape(num_classes, num_classes)


def scores(cm: np.ndarray) -> dict[str, Any]:
    """Every score of core/scores.py's SCORES, and per-class IoU and Dice (NaN where a class is absent):
    in float64, through the functions training logs with."""
    counts = Counts(torch.from_numpy(np.asarray(cm, np.int64)), torch.float64)
    absent = ~counts.present.numpy()
    per_class = {
        "iou": np.where(absent, np.nan, class_iou(counts).numpy()),
        "dice_per_class": np.where(absent, np.nan, class_dice(counts).numpy()),
    }
    return {name: float(score.compute(counts)) for name, score in SCORES.items()} | per_class


def summarise(cm: np.ndarray) -> dict[str, Any]:
    """metrics.json's scores: the means over the classes that occur, and pixel accuracy. The same keys
    whatever the class set, so `dvc exp show` gets the same columns for every dataset."""
    result = scores(cm)
    return {name: _round(result[name]) for name in SCORES}


def per_class_scores(cm: np.ndarray, classes: list[str]) -> list[dict[str, Any]]:
    """per_class.json: one record per class that occurs in the truth or the prediction (absent classes
    have no score), worst IoU first; DVC plots it as one bar per class."""
    result = scores(cm)
    rows = [
        {"class": name, "iou": _round(result["iou"][k]), "dice": _round(result["dice_per_class"][k])}
        for k, name in enumerate(classes)
        if not math.isnan(result["iou"][k])
    ]
    return sorted(rows, key=lambda row: (row["iou"], row["class"]))


def _round(x: float) -> float | None:
    return None if math.isnan(x) else round(float(x), 6)

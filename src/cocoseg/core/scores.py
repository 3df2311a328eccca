"""The segmentation scores, defined once.

Every score is a function of one dataset-level confusion matrix (rows: truth, columns: prediction; void
pixels left out), through its ``Counts``. Training logs each as ``train/<name>`` and ``val/<name>``
(cocoseg.training.module), evaluate writes it to metrics.json (cocoseg.evaluation.metrics), compare
tabulates it under its header and the progress lines show it: adding a score is one entry in ``SCORES``.

A class absent from both truth and prediction has no IoU or Dice: it is left out of the means, never
counted as 0. The functions use only tensor methods, so this module needs no torch import: training
scores in float32, step for step as torchmetrics' classes do (its logs keep their bits), evaluate in
float64.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


class Counts:
    """Per class of a (K, K) integer confusion matrix: true positives, false positives (predicted, not
    true), false negatives (true, missed); and the correct and scored pixels. Summed as integers, exact,
    then held in ``dtype``."""

    def __init__(self, confusion: torch.Tensor, dtype: torch.dtype) -> None:
        tp = confusion.diagonal()
        self.tp = tp.to(dtype)
        self.fp = (confusion.sum(0) - tp).to(dtype)
        self.fn = (confusion.sum(1) - tp).to(dtype)
        self.correct, self.total = tp.sum().to(dtype), confusion.sum().to(dtype)

    @property
    def present(self) -> torch.Tensor:
        """The classes in the truth or the prediction: those that have an IoU and a Dice."""
        return (self.tp + self.fp + self.fn) != 0


def _divide(num: torch.Tensor, denom: torch.Tensor) -> torch.Tensor:
    """num / denom, 0 where denom is 0 (counts: num is 0 there too)."""
    return num / denom.clamp(min=1)


def class_iou(c: Counts) -> torch.Tensor:
    return _divide(c.tp, c.tp + c.fp + c.fn)


def class_dice(c: Counts) -> torch.Tensor:
    return _divide(2 * c.tp, 2 * c.tp + c.fn + c.fp)


def _mean_over_present(per_class: torch.Tensor, c: Counts) -> torch.Tensor:
    weights = c.present.to(per_class.dtype)
    return ((weights * per_class) / weights.sum()).sum()  # NaN when no class is present


def mean_iou(c: Counts) -> torch.Tensor:
    return _mean_over_present(class_iou(c), c)


def mean_dice(c: Counts) -> torch.Tensor:
    return _mean_over_present(class_dice(c), c)


def pixel_accuracy(c: Counts) -> torch.Tensor:
    return c.correct / c.total  # NaN when no pixel was scored


@dataclass(frozen=True)
class Score:
    header: str  # its column in compare.md
    compute: Callable[[Counts], torch.Tensor]  # a 0-d tensor of the counts' dtype


SCORES: dict[str, Score] = {
    "miou": Score("mIoU", mean_iou),
    "dice": Score("mean Dice", mean_dice),
    "pixel_accuracy": Score("pixel acc.", pixel_accuracy),
}

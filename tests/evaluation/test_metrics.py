"""Confusion matrix and scores against hand-computed values; torchmetrics (training) agrees with numpy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cocoseg.evaluation.metrics import confusion_matrix, scores
from cocoseg.training.module import build_metrics

# 4 classes. Class 2 is absent from truth and prediction (its only prediction sits on a void pixel, which
# is ignored); class 3 is only predicted. Kept pixels: truth 0 0 1 1 0, prediction 0 1 1 3 0.
TARGET = np.array([[0, 0, 1], [1, 255, 0]], np.uint8)
PRED = np.array([[0, 1, 1], [3, 2, 0]], np.uint8)
CM = np.array([[2, 1, 0, 0], [0, 1, 0, 1], [0, 0, 0, 0], [0, 0, 0, 0]])


def test_confusion_matrix_by_hand() -> None:
    cm = confusion_matrix(TARGET, PRED, 4)
    assert cm.dtype == np.int64
    np.testing.assert_array_equal(cm, CM)  # rows truth, columns prediction; the void pixel is nowhere
    assert cm.sum() == 5


def test_confusion_matrix_adds_up_over_images() -> None:
    # evaluate sums per-image matrices: the same as one matrix over the concatenated pixels
    a, b = (TARGET, PRED), (np.array([[3, 3]]), np.array([[3, 0]]))
    whole = confusion_matrix(
        np.concatenate([a[0].ravel(), b[0].ravel()]), np.concatenate([a[1].ravel(), b[1].ravel()]), 4
    )
    np.testing.assert_array_equal(confusion_matrix(*a, 4) + confusion_matrix(*b, 4), whole)


def test_scores_by_hand() -> None:
    s = scores(confusion_matrix(TARGET, PRED, 4))
    # class 0: tp 2 fp 0 fn 1; class 1: tp 1 fp 1 fn 1; class 2: nothing; class 3: tp 0 fp 1 fn 0
    np.testing.assert_allclose(s["iou"], [2 / 3, 1 / 3, np.nan, 0.0])
    np.testing.assert_allclose(s["dice_per_class"], [4 / 5, 2 / 4, np.nan, 0.0])
    # class 2 is left out of the means (3 classes, not 4); class 3 counts with 0
    assert s["miou"] == pytest.approx((2 / 3 + 1 / 3 + 0) / 3)
    assert s["dice"] == pytest.approx((4 / 5 + 1 / 2 + 0) / 3)
    assert s["pixel_accuracy"] == pytest.approx(3 / 5)


def test_scores_perfect_and_empty() -> None:
    target = np.array([[0, 1], [1, 255]])
    s = scores(confusion_matrix(target, np.array([[0, 1], [1, 0]]), 3))
    assert (s["miou"], s["dice"], s["pixel_accuracy"]) == (1.0, 1.0, 1.0)
    assert math.isnan(s["iou"][2])
    empty = scores(confusion_matrix(np.full((2, 2), 255), np.zeros((2, 2), int), 3))  # all void
    assert all(math.isnan(empty[k]) for k in ("miou", "dice", "pixel_accuracy"))


@pytest.mark.parametrize(
    ("target", "pred"),
    [
        ([0, 4], [0, 0]),  # truth out of range
        ([0, 1], [0, 4]),  # prediction out of range
        ([0, -1], [0, 0]),  # negative truth
        ([0, 1], [-1, 0]),  # negative prediction
        ([0, 1], [0, 255]),  # 255 is ignored in the truth only, never a valid prediction
    ],
)
def test_labels_out_of_range_raise(target: list[int], pred: list[int]) -> None:
    with pytest.raises(ValueError, match=r"labels outside 0\.\.3"):
        confusion_matrix(np.array(target), np.array(pred), 4)


def test_torchmetrics_agree_with_numpy() -> None:
    """Training's val/ metrics and evaluate's scores agree: absent classes, void, micro pixel accuracy."""
    rng = np.random.default_rng(0)
    k = 5
    metrics = build_metrics(k, "val/")
    cm = np.zeros((k, k), np.int64)
    for _ in range(3):  # several updates: dataset-level accumulation, not a mean of per-batch scores
        target = rng.choice([0, 1, 3, 255], size=(2, 16, 16), p=[0.4, 0.3, 0.2, 0.1])  # 2 and 4 never true
        pred = np.where(
            rng.random(target.shape) < 0.6,
            np.where(target == 255, 0, target),
            rng.choice([0, 1, 3, 4], size=target.shape),
        )  # 4 only predicted, 2 never
        metrics.update(torch.from_numpy(pred), torch.from_numpy(target))
        cm += confusion_matrix(target, pred, k)
    assert cm[2].sum() == cm[:, 2].sum() == 0 and cm[4].sum() == 0 < cm[:, 4].sum()
    expected = scores(cm)
    got = {name: float(value) for name, value in metrics.compute().items()}
    assert set(got) == {"val/miou", "val/dice", "val/pixel_accuracy"}
    for name in ("miou", "dice", "pixel_accuracy"):
        assert got[f"val/{name}"] == pytest.approx(expected[name], abs=1e-6), name

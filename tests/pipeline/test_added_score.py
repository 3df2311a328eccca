"""Adding a score is one entry in core/scores.py's SCORES: a frequency-weighted IoU added here (and
nowhere else) reaches the training log and its files, evaluate's metrics.json and the comparison."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import shapes_pair, write_dataset

from cocoseg.core.params import EvaluateConfig, parse_params
from cocoseg.core.scores import SCORES, Counts, Score, class_iou
from cocoseg.evaluation.compare import write_comparison
from cocoseg.evaluation.evaluate import evaluate_model
from cocoseg.evaluation.metrics import scores
from cocoseg.training.train import TrainPaths, train_model

TRAIN = {
    "epochs": 2,
    "batch_size": 2,
    "image_size": [32, 32],
    "workers": 0,
    "accelerator": "cpu",
    "devices": 1,
}
PARAMS = parse_params({"train": TRAIN, "models": {"x": {"arch": "fastscnn", "lr": 0.01}}})


def frequency_weighted_iou(c: Counts) -> torch.Tensor:
    """Each class's IoU weighted by its share of the true pixels."""
    truth = c.tp + c.fn
    return (truth * class_iou(c)).sum() / truth.sum()


@pytest.fixture
def fwiou(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(SCORES, "fwiou", Score("fwIoU", frequency_weighted_iou))


def test_the_added_score_by_hand(fwiou: None) -> None:
    # truth 0: 3 pixels (2 right, 1 taken for 1); truth 1: 2 pixels (1 right, 1 taken for 2); 2 only predicted
    cm = np.array([[2, 1, 0], [0, 1, 1], [0, 0, 0]])
    iou = [2 / 3, 1 / 3, 0.0]
    assert scores(cm)["fwiou"] == pytest.approx((3 * iou[0] + 2 * iou[1]) / 5)


def test_an_added_score_reaches_training_evaluate_and_compare(
    fwiou: None, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pairs = [shapes_pair(48, 64, seed) for seed in range(6)]
    coco, masks = write_dataset(tmp_path, [p[0] for p in pairs], [p[1] for p in pairs], num_val=2)
    live = tmp_path / "results" / "train" / "x"
    paths = TrainPaths(coco, masks, tmp_path / "models" / "x", live, tmp_path / "runs")
    with caplog.at_level(logging.INFO):
        best = train_model(PARAMS, "x", paths)

    assert 0 <= best["val/fwiou"] <= 1  # what the best epoch's model.pt carries
    logged = json.loads((live / "metrics.json").read_text())  # dvclive: the last epoch
    assert {"fwiou", "miou"} <= set(logged["train"]) and {"fwiou", "miou"} <= set(logged["val"])
    assert (live / "plots" / "metrics" / "val" / "fwiou.tsv").is_file()  # its curve, for dvc plots
    assert "val/fwiou" in json.loads((live / "metrics_first_iter.json").read_text())
    epochs = [r.getMessage() for r in caplog.records if r.getMessage().startswith("epoch ")]
    assert epochs and all("val/fwiou " in line for line in epochs)  # the progress lines

    scored = tmp_path / "results" / "evaluate" / "x"
    cfg = EvaluateConfig(batch_size=2, workers=0, overlays=0, speed_batches=1)
    metrics = evaluate_model(paths.model_dir / "model.pt", coco, masks, scored, cfg)
    written = json.loads((scored / "metrics.json").read_text())
    assert written["fwiou"] == metrics["fwiou"] and 0 <= written["fwiou"] <= 1

    md = tmp_path / "results" / "compare.md"
    write_comparison(scored.parent, ["x"], md, tmp_path / "results" / "compare.json")
    header, _, row = md.read_text().splitlines()[2:5]  # under the title: the models table
    assert "| fwIoU |" in header
    cells = dict(zip(header.split(" | "), row.split(" | "), strict=True))
    assert cells["fwIoU"] == f"{written['fwiou']:.4f}"
    compared = json.loads((tmp_path / "results" / "compare.json").read_text())
    assert compared["models"][0]["fwiou"] == written["fwiou"]

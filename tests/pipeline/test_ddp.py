"""The train stage on two CPU processes (DDP over gloo): a valid model, and metrics of the whole val split."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from helpers import REPO, shapes_pair, write_dataset

from cocoseg.models import build_model
from cocoseg.models.preprocessing import Preprocessing
from cocoseg.training.data import SegmentationDataModule
from cocoseg.training.module import build_metrics, exact_counting

SIZE = (32, 32)
PREP = Preprocessing(SIZE)


def run_train_stage(root: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run stages/train.py in its own session, so a hung DDP worker it started is killed with it."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, str(REPO / "stages" / "train.py"), "--model", "x"],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def score(model: torch.nn.Module, dataset, indices: range, num_classes: int) -> dict[str, float]:
    """Metrics of ``model`` over the given val images, in this one process."""
    metrics = build_metrics(num_classes, "val/")
    with torch.no_grad(), exact_counting():
        for i in indices:
            image, target = dataset[i]  # uint8 (H, W, 3), uint8 (H, W): normalised as training does
            inputs = PREP.normalise(image.permute(2, 0, 1)[None])
            metrics.update(model(inputs).argmax(dim=1), target[None].long())
    return {name: float(value) for name, value in metrics.compute().items()}


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_trains_a_valid_model_with_metrics_of_all_val_images(tmp_path: Path) -> None:
    pairs = [shapes_pair(48, 64, seed) for seed in range(12)]
    coco, masks = write_dataset(tmp_path, [p[0] for p in pairs], [p[1] for p in pairs], num_val=4)
    train = {
        "epochs": 2,
        "batch_size": 2,
        "image_size": list(SIZE),
        "workers": 0,
        "accelerator": "cpu",
        "devices": 2,
        "strategy": "ddp",
    }
    (tmp_path / "params.yaml").write_text(
        yaml.safe_dump({"train": train, "models": {"x": {"arch": "fastscnn", "lr": 0.01}}})
    )

    result = run_train_stage(tmp_path, timeout=90)  # about 30 s under load 6 when it works
    assert result.returncode == 0, result.stderr
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in result.stderr  # two processes ran
    ckpt = torch.load(tmp_path / "models" / "x" / "model.pt", weights_only=True)
    model = build_model(**ckpt["model"])
    model.load_state_dict(ckpt["state_dict"])  # a valid model: loads and runs alone
    model.eval()

    # The logged val metrics are those of all 4 val images, although each process saw only 2 of them
    # (Lightning's distributed sampler gives rank r the images r, r + 2, ...).
    datamodule = SegmentationDataModule(coco, masks, SIZE, batch_size=2)
    dataset = datamodule.dataset("val")
    whole = score(model, dataset, range(4), datamodule.num_classes)
    for key in ("val/miou", "val/dice", "val/pixel_accuracy"):
        assert ckpt["metrics"][key] == pytest.approx(whole[key], abs=1e-6), key
    for rank in (0, 1):
        own = score(model, dataset, range(rank, 4, 2), datamodule.num_classes)
        assert abs(own["val/miou"] - whole["val/miou"]) > 1e-5  # so the check above tells them apart
    live = json.loads((tmp_path / "results" / "train" / "x" / "metrics.json").read_text())
    assert 0 <= live["val"]["miou"] <= 1

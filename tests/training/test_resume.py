"""Training that survives: resume equals an uninterrupted run, nothing is lost on failure, NaN stops the run."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from helpers import shapes_pair, write_dataset

from cocoseg.core.params import parse_params
from cocoseg.training.callbacks import TrainingDiverged
from cocoseg.training.module import SegmentationModule
from cocoseg.training.resume import RunState, prepare_run, run_fingerprint
from cocoseg.training.train import TrainPaths, train_model

TRAIN = {
    "epochs": 3,
    "batch_size": 2,
    "image_size": [32, 32],
    "workers": 0,
    "accelerator": "cpu",
    "devices": 1,
}
PARAMS = parse_params({"train": TRAIN, "models": {"x": {"arch": "fastscnn", "lr": 0.01}}})


class Killed(Exception):
    """Stands in for a kill in the middle of an epoch."""


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("resume")
    pairs = [shapes_pair(48, 64, seed) for seed in range(8)]  # 6 train images: 3 batches an epoch
    return write_dataset(root, [p[0] for p in pairs], [p[1] for p in pairs], num_val=2)


def paths_in(root: Path, data: tuple[Path, Path]) -> TrainPaths:
    return TrainPaths(*data, root / "models" / "x", root / "results" / "train" / "x", root / "runs")


def outputs(paths: TrainPaths) -> dict[str, bytes]:
    """The model and every dvclive file, by path relative to its folder."""
    files = {"model.pt": (paths.model_dir / "model.pt").read_bytes()}
    files |= {
        str(p.relative_to(paths.live_dir)): p.read_bytes()
        for p in sorted(paths.live_dir.rglob("*"))
        if p.is_file()
    }
    return files


@pytest.fixture(scope="module")
def uninterrupted(data: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    paths = paths_in(tmp_path_factory.mktemp("whole"), data)
    train_model(PARAMS, "x", paths)
    assert not paths.state.root.exists()  # the resume folder goes once the run is published
    return outputs(paths)


def kill_at(monkeypatch: pytest.MonkeyPatch, epoch: int, batch: int) -> None:
    original = SegmentationModule.training_step

    def step(self: SegmentationModule, batch_data: object, batch_idx: int) -> torch.Tensor:
        if (self.current_epoch, batch_idx) == (epoch, batch):
            raise Killed
        return original(self, batch_data, batch_idx)

    monkeypatch.setattr(SegmentationModule, "training_step", step)


@pytest.mark.parametrize(("epoch", "batch"), [(1, 1), (2, 2)])
def test_killed_run_resumes_to_the_same_bytes(
    data: tuple[Path, Path],
    uninterrupted: dict[str, bytes],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    epoch: int,
    batch: int,
) -> None:
    paths = paths_in(tmp_path, data)
    with monkeypatch.context() as m:
        kill_at(m, epoch, batch)
        with pytest.raises(Killed):
            train_model(PARAMS, "x", paths)
    assert paths.state.checkpoint.is_file()
    assert (
        torch.load(paths.state.checkpoint, weights_only=False)["epoch"] == epoch - 1
    )  # the last whole epoch
    assert not paths.live_dir.exists() and not (paths.model_dir / "model.pt").exists()  # nothing half-done

    train_model(PARAMS, "x", paths)
    assert outputs(paths) == uninterrupted  # model bytes, metrics and every row of the history
    assert not paths.state.root.exists()


def test_failed_run_keeps_previous_outputs(
    data: tuple[Path, Path], uninterrupted: dict[str, bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = paths_in(tmp_path, data)
    train_model(PARAMS, "x", paths)

    def run_files() -> dict[str, bytes]:
        return {
            str(p.relative_to(paths.runs_dir)): p.read_bytes()
            for p in paths.runs_dir.rglob("*")
            if p.is_file()
        }

    first_run = run_files()
    assert any("events.out.tfevents" in name for name in first_run)
    with monkeypatch.context() as m:
        kill_at(m, 0, 1)
        with pytest.raises(Killed):
            train_model(PARAMS, "x", paths)
    assert outputs(paths) == uninterrupted  # the previous model and history are untouched ...
    after = run_files()  # ... and so is the first run's TensorBoard folder (the failed run has its own)
    assert {k: v for k, v in after.items() if k in first_run} == first_run


def test_parameter_change_starts_fresh(
    data: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    paths = paths_in(tmp_path, data)
    with monkeypatch.context() as m:
        kill_at(m, 2, 0)
        with pytest.raises(Killed):
            train_model(PARAMS, "x", paths)
    changed = parse_params(
        {"train": {**TRAIN, "lr": 0.003}, "models": {"x": {"arch": "fastscnn", "lr": 0.01}}}
    )
    state = RunState(paths.state.root)
    assert prepare_run(state, run_fingerprint(PARAMS, "x", paths.masks_root)) == state.checkpoint  # unchanged
    with caplog.at_level(logging.INFO, "cocoseg"):
        assert prepare_run(state, run_fingerprint(changed, "x", paths.masks_root)) is None
    assert not state.root.exists()
    assert "starting fresh" in caplog.text


def test_nan_loss_stops_with_epoch_and_step(
    data: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = SegmentationModule.loss

    def loss(self: SegmentationModule, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        value = original(self, logits, target)
        return value * float("nan") if self.training and self.global_step == 4 else value

    monkeypatch.setattr(SegmentationModule, "loss", loss)
    paths = paths_in(tmp_path, data)
    with pytest.raises(TrainingDiverged) as err:
        train_model(PARAMS, "x", paths)
    assert str(err.value).startswith("train@x: the loss is nan at epoch 1, step 4; lower models.x.lr")
    assert "\n" not in str(err.value)
    assert not (paths.model_dir / "model.pt").exists() and not paths.live_dir.exists()
    metrics = json.loads((paths.state.live / "metrics.json").read_text())  # the history so far is kept
    assert metrics["epoch"] == 0


def test_resume_with_loader_workers_equals_a_run_without(
    data: tuple[Path, Path], uninterrupted: dict[str, bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Augmentation is drawn per (seed, epoch, item): killed and resumed with 2 loader workers, the run ends
    with the same bytes as the uninterrupted run with none."""
    params = parse_params(
        {"train": {**TRAIN, "workers": 2}, "models": {"x": {"arch": "fastscnn", "lr": 0.01}}}
    )
    paths = paths_in(tmp_path, data)
    with monkeypatch.context() as m:
        kill_at(m, 1, 1)
        with pytest.raises(Killed):
            train_model(params, "x", paths)
    train_model(params, "x", paths)
    assert outputs(paths) == uninterrupted
    assert len(list(paths.runs_dir.iterdir())) == 1  # the resumed run wrote on into the run's own folder


def test_run_names_never_collide(tmp_path: Path) -> None:
    from cocoseg.training.runs import run_name

    first = run_name("unet", tmp_path, now=0)
    (tmp_path / first).mkdir()
    second = run_name("unet", tmp_path, now=0)  # the same second
    assert second == f"{first}-2" and second.startswith("unet_miou_")

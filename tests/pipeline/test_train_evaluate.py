"""The training half on the CPU: train a tiny Fast-SCNN, evaluate it, predict, and stage errors."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from helpers import (
    CLASSES,
    REPO,
    assert_one_error,
    shapes_pair,
    write_dataset,
)

from cocoseg.core.params import EvaluateConfig, parse_params
from cocoseg.evaluation.evaluate import evaluate_model
from cocoseg.evaluation.predict import overlay_in_bands, predict_images
from cocoseg.models import build_model, count_parameters
from cocoseg.models.checkpoint import save_checkpoint
from cocoseg.training.data import SegmentationDataModule
from cocoseg.training.module import SegmentationModule, build_metrics
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


@dataclass(frozen=True)
class Run:
    coco: Path
    masks: Path
    paths: TrainPaths
    best: dict[str, float]

    @property
    def model_path(self) -> Path:
        return self.paths.model_dir / "model.pt"


def train(root: Path, coco: Path, masks: Path) -> Run:
    paths = TrainPaths(coco, masks, root / "models" / "x", root / "results" / "train" / "x", root / "runs")
    return Run(coco, masks, paths, train_model(PARAMS, "x", paths))


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """6 images 48x64 of a red square and a blue disk: 4 train, 2 val."""
    root = tmp_path_factory.mktemp("train")
    pairs = [shapes_pair(48, 64, seed) for seed in range(6)]
    coco, masks = write_dataset(root, [p[0] for p in pairs], [p[1] for p in pairs], num_val=2)
    return train(root / "run1", coco, masks)


@pytest.fixture(scope="module")
def checkpoints(run: Run) -> dict[str, Path]:
    """The trained model, and an untrained one of the same spec. Four steps teach this Fast-SCNN only to
    predict background everywhere, which would make evaluate's resizing and scoring untestable; the
    untrained one predicts a varied mix of classes."""
    ckpt = torch.load(run.model_path, weights_only=True)
    torch.manual_seed(0)
    untrained = run.paths.model_dir.parent / "untrained" / "model.pt"
    save_checkpoint(
        untrained,
        build_model("fastscnn", 3).state_dict(),
        ckpt["model"],
        ckpt["preprocessing"],
        ckpt["classes"],
        {},
    )
    return {"trained": run.model_path, "untrained": untrained}


def read_tsv(path: Path) -> list[dict[str, str]]:
    header, *rows = path.read_text().splitlines()
    return [dict(zip(header.split("\t"), row.split("\t"), strict=True)) for row in rows]


def test_train_writes_outputs(run: Run) -> None:
    assert run.model_path.is_file()
    live = run.paths.live_dir
    metrics = json.loads((live / "metrics.json").read_text())  # dvclive: the last epoch
    assert metrics["epoch"] == 1
    assert set(metrics["val"]) == set(metrics["train"]) == {"loss", "miou", "dice", "pixel_accuracy"}
    first = json.loads((live / "metrics_first_iter.json").read_text())
    assert first["step"] == 1
    assert set(first) == {
        "step",
        "train/loss",
        "val/loss",
        "val/miou",
        "val/dice",
        "val/pixel_accuracy",
        "val_images",
    }
    assert first["val_images"] == 2  # the whole (tiny) val split: under the 512-image bound
    assert all(0 <= first[f"val/{k}"] <= 1 for k in ("miou", "dice", "pixel_accuracy"))
    history = read_tsv(live / "plots" / "metrics" / "val" / "miou.tsv")
    assert len(history) == 2  # one row per epoch
    assert float(history[-1]["miou"]) == pytest.approx(metrics["val"]["miou"])

    # the exported weights are the best epoch's, and its metrics travel in the model file
    ckpt = torch.load(run.model_path, weights_only=True)
    scores = [float(row["miou"]) for row in history]
    assert ckpt["metrics"]["val/miou"] == pytest.approx(max(scores)) == pytest.approx(run.best["val/miou"])
    assert ckpt["metrics"]["best_epoch"] == scores.index(max(scores)) == run.best["best_epoch"]
    assert ckpt["classes"] == CLASSES and ckpt["model"]["arch"] == "fastscnn"
    assert ckpt["preprocessing"]["image_size"] == [32, 32]


def test_train_keeps_a_run_folder_with_tensorboard_scalars_and_summaries(run: Run) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (folder,) = run.paths.runs_dir.iterdir()  # runs/x_miou_<time>, outside the dvclive folder
    assert re.fullmatch(r"x_miou_\d{8}-\d{6}", folder.name)
    events = EventAccumulator(str(folder))
    events.Reload()

    def steps(tag: str) -> list[int]:
        return [e.step for e in events.Scalars(tag)]

    assert steps("train/loss_step") == steps("train/lr") == [0, 1, 2, 3]  # 4 images, batch 2, 2 epochs
    assert steps("val/miou") == steps("train/loss") == [1, 3]  # every epoch, at its last step
    assert {"val/loss", "val/dice", "train/miou"} <= set(events.Tags()["scalars"])
    first_iter = json.loads((run.paths.live_dir / "metrics_first_iter.json").read_text())
    for key in (
        "train/loss",
        "val/loss",
        "val/miou",
        "val/dice",
        "val/pixel_accuracy",
    ):  # the first step's scores
        (scalar,) = events.Scalars(f"first_iter/{key}")
        assert scalar.step == 0 and scalar.value == pytest.approx(first_iter[key])
    # HParams: the run's parameters (hparams.yaml too) beside its best and first-iteration mIoU
    assert events.Scalars("hparams/best_val_miou")[-1].value == pytest.approx(run.best["val/miou"])
    assert events.Scalars("hparams/first_iter_val_miou")[-1].value == pytest.approx(first_iter["val/miou"])
    assert "_hparams_/session_start_info" in events.PluginTagToContent("hparams")
    hparams = yaml.safe_load((folder / "hparams.yaml").read_text())
    assert hparams["lr"] == 0.01 and hparams["epochs"] == 2 and hparams["model"] == "x"
    assert hparams["train"]["image_size"] == [32, 32] and hparams["models.x"]["arch"] == "fastscnn"
    first = (folder / "metrics_first_iter.txt").read_text()
    assert first.startswith("step: 1\ntrain/loss: ")
    final = dict(line.split(": ", 1) for line in (folder / "final_metrics.txt").read_text().splitlines())
    assert final["best_epoch"] == str(run.best["best_epoch"]) and final["epochs"] == "2"
    assert float(final["val/miou"]) == run.best["val/miou"]


def test_train_logs_one_line_per_epoch_without_a_terminal(
    run: Run, caplog: pytest.LogCaptureFixture, recwarn: pytest.WarningsRecorder, tmp_path: Path
) -> None:
    with caplog.at_level(logging.INFO):
        again = train(tmp_path, run.coco, run.masks)  # pytest captures stdout: not a terminal
    messages = [r.getMessage() for r in caplog.records]
    epochs = [m for m in messages if m.startswith("epoch ")]
    # counted from 0, as Lightning's progress bar, dvclive's "epoch" and the best epoch count them
    assert len(epochs) == 2 and epochs[0].startswith("epoch 0 of 0-1: train/loss ")
    assert epochs[1].startswith("epoch 1 of 0-1: ") and "val/miou" in epochs[1]
    assert f"at epoch {again.best['best_epoch']} of 0-1 -> " in next(
        m for m in messages if m.startswith("best ")
    )
    assert not [r for r in caplog.records if "litlogger" in r.getMessage()]
    assert not [w for w in recwarn if "deprecated" in str(w.message)]


def test_exported_weights_reproduce_best_val_metrics(run: Run) -> None:
    """Scoring the exported model again gives the val metrics recorded for the best epoch."""
    ckpt = torch.load(run.model_path, weights_only=True)
    module = SegmentationModule("fastscnn", 3, dice_weight=PARAMS.train.dice_weight)
    module.model.load_state_dict(ckpt["state_dict"])
    module.eval()
    datamodule = SegmentationDataModule(run.coco, run.masks, (32, 32), batch_size=2)
    metrics = build_metrics(3, "val/")
    (batch,) = datamodule.val_dataloader()  # 2 val images: one batch
    images, target = module.prepare_batch(batch)  # uint8 -> model input, as in training
    with torch.no_grad():
        logits = module(images)
    metrics.update(logits.argmax(1), target)
    for name, value in metrics.compute().items():
        assert float(value) == pytest.approx(ckpt["metrics"][name], abs=1e-6), name
    # the loss tells the epochs apart even where every epoch predicts the same classes
    assert float(module.loss(logits, target)) == pytest.approx(ckpt["metrics"]["val/loss"], rel=1e-5)


def test_same_seed_same_run(run: Run, tmp_path: Path) -> None:
    again = train(tmp_path, run.coco, run.masks)
    for name in ("metrics.json", "metrics_first_iter.json"):
        assert (again.paths.live_dir / name).read_text() == (run.paths.live_dir / name).read_text()
    assert again.best == run.best
    assert again.model_path.read_bytes() == run.model_path.read_bytes()  # bit for bit on the CPU


def predict_by_hand(model_path: Path, rgb: np.ndarray, upsample: str = "exact") -> np.ndarray:
    """What evaluate and predict must compute, written out: resize, normalise, logits back at full size
    (``nearest``: the argmax at the model's size, its class ids back at full size)."""
    ckpt = torch.load(model_path, weights_only=True)
    model = build_model(**ckpt["model"])
    model.load_state_dict(ckpt["state_dict"])
    h, w = ckpt["preprocessing"]["image_size"]
    x = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255
    mean, std = (np.array(ckpt["preprocessing"][k], np.float32) for k in ("mean", "std"))
    x = (x - mean) / std
    with torch.no_grad():
        logits = model.eval()(torch.from_numpy(x).permute(2, 0, 1)[None])
    if upsample == "nearest":
        return (
            F.interpolate(logits.argmax(1, keepdim=True).float(), size=rgb.shape[:2], mode="nearest-exact")[
                0, 0
            ]
            .long()
            .numpy()
        )
    logits = F.interpolate(logits, size=rgb.shape[:2], mode="bilinear", align_corners=False)
    return logits.argmax(1)[0].numpy()


def read_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


@pytest.mark.parametrize("upsample", ["nearest", "exact"])
@pytest.mark.parametrize("which", ["trained", "untrained"])
def test_evaluate(
    run: Run,
    checkpoints: dict[str, Path],
    tmp_path: Path,
    which: str,
    upsample: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    model_path = checkpoints[which]
    out = tmp_path / "evaluate" / "x"
    cfg = EvaluateConfig(overlays=1, speed_batches=1, upsample=upsample)
    stale = out / "overlays" / "from_another_dataset.png"  # an earlier run's overlay must not survive
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"")
    with caplog.at_level(logging.INFO):
        metrics = evaluate_model(model_path, run.coco, run.masks, out, cfg)
    assert any(
        r.getMessage().startswith("scored 2/2 val images (100%), ") for r in caplog.records
    )  # progress
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert set(metrics) == {
        "miou",
        "dice",
        "pixel_accuracy",
        "params",
        "val_images",
    }  # the same for any classes
    assert metrics["val_images"] == 2
    assert metrics["params"] == count_parameters(build_model("fastscnn", 3))

    # the same numbers by hand, at the masks' full 48x64 resolution, void left out
    val = json.loads((run.masks / "split.json").read_text())["val"]
    inter, union, truth, predicted, correct, counted = (np.zeros(3) for _ in range(6))
    varied = False
    for item in val:
        mask_path = run.masks / "semantic" / "val2017" / f"{Path(item).stem}.png"
        target = cv2.imread(str(mask_path), cv2.IMREAD_UNCHANGED)
        pred = predict_by_hand(model_path, read_rgb(run.coco / item), cfg.upsample)
        assert pred.shape == target.shape == (48, 64)
        varied |= len(np.unique(pred)) > 1
        valid = target != 255
        for k in range(3):
            t, p = (target == k) & valid, (pred == k) & valid
            inter[k] += (t & p).sum()
            union[k] += (t | p).sum()
            truth[k] += t.sum()
            predicted[k] += p.sum()
        correct[0] += (pred == target)[valid].sum()
        counted[0] += valid.sum()
    assert varied or which == "trained"  # the untrained model really tests the upsampled argmax
    present = union > 0
    iou = inter[present] / union[present]
    dice = 2 * inter[present] / (truth[present] + predicted[present])
    assert metrics["miou"] == pytest.approx(iou.mean(), abs=1e-6)
    assert metrics["dice"] == pytest.approx(dice.mean(), abs=1e-6)
    assert metrics["pixel_accuracy"] == pytest.approx(correct[0] / counted[0], abs=1e-6)
    names = [n for n, keep in zip(CLASSES, present, strict=True) if keep]
    per_class = json.loads((out / "per_class.json").read_text())  # a plot's records, worst IoU first
    assert [r["iou"] for r in per_class] == sorted(r["iou"] for r in per_class)
    assert sorted(r["class"] for r in per_class) == sorted(names)
    by_name = {r["class"]: r for r in per_class}
    for name, i, d in zip(names, iou, dice, strict=True):
        assert by_name[name] == pytest.approx({"class": name, "iou": i, "dice": d}, abs=1e-6)

    speed = json.loads((out / "speed.json").read_text())
    assert speed["device"] == "cpu" and speed["images_per_second"] > 0
    assert cv2.imread(str(out / "confusion.png")) is not None
    overlays = sorted((out / "overlays").glob("*.png"))
    assert [p.name for p in overlays] == [f"{Path(val[0]).stem}.png"]  # only the first `overlays` images
    panel = cv2.imread(str(overlays[0]))
    assert panel.shape[1] == 3 * 64 + 2 * 4 and panel.shape[0] > 16 + 48 + 16  # caption, images, legend
    # captions above (image | truth | prediction), the image itself below its caption
    assert (panel[16:64, :64] == cv2.imread(str(run.coco / val[0]))).all()
    assert (panel[:16] < 128).any() and (panel[:16, 64:68] == 255).all()


@pytest.mark.parametrize("which", ["trained", "untrained"])
def test_predict_images(checkpoints: dict[str, Path], tmp_path: Path, which: str) -> None:
    model_path = checkpoints[which]
    inputs = tmp_path / "photos"
    inputs.mkdir()
    sizes = {"a.jpg": (50, 70), "b.png": (33, 41)}  # any size, not the training size
    for i, (name, (h, w)) in enumerate(sizes.items()):
        assert cv2.imwrite(str(inputs / name), cv2.cvtColor(shapes_pair(h, w, i)[0], cv2.COLOR_RGB2BGR))
    (inputs / "broken.jpg").write_bytes(b"not an image")  # skipped with a warning
    (inputs / "notes.txt").write_text("not an image suffix")  # not listed at all
    out = tmp_path / "out"
    written = predict_images(model_path, [inputs], out)
    assert written == [out / "a_mask.png", out / "b_mask.png"]
    expected = ["a_mask.png", "a_overlay.png", "b_mask.png", "b_overlay.png"]  # nothing for the others
    assert sorted(p.name for p in out.iterdir()) == expected
    for name, (h, w) in sizes.items():
        stem = Path(name).stem
        mask = cv2.imread(str(out / f"{stem}_mask.png"), cv2.IMREAD_UNCHANGED)
        assert mask.shape == (h, w) and mask.dtype == np.uint8 and mask.max() < 3
        np.testing.assert_array_equal(mask, predict_by_hand(model_path, read_rgb(inputs / name)))
        assert len(np.unique(mask)) > 1 or which == "trained"
        panel = cv2.imread(str(out / f"{stem}_overlay.png"))
        assert panel.shape[1] == w and panel.shape[0] >= h + 16  # the overlay above a legend of its classes
        np.testing.assert_array_equal(panel[:h], overlay_in_bands(read_rgb(inputs / name), mask, 3))
        assert (panel[h:] < 64).any()  # the legend's text
    with pytest.raises(FileNotFoundError, match="missing.jpg: no such image or folder"):
        predict_images(model_path, [tmp_path / "missing.jpg"], out)


def test_predict_images_nearest(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    inputs = tmp_path / "photos"
    inputs.mkdir()
    assert cv2.imwrite(str(inputs / "a.jpg"), cv2.cvtColor(shapes_pair(50, 70, 0)[0], cv2.COLOR_RGB2BGR))
    predict_images(checkpoints["untrained"], [inputs], tmp_path / "out", upsample="nearest")
    mask = cv2.imread(str(tmp_path / "out" / "a_mask.png"), cv2.IMREAD_UNCHANGED)
    expected = predict_by_hand(checkpoints["untrained"], read_rgb(inputs / "a.jpg"), "nearest")
    assert len(np.unique(expected)) > 1
    np.testing.assert_array_equal(mask, expected)


@pytest.mark.parametrize(
    ("stage", "fragments"),
    [
        ("evaluate", ["models/nope/model.pt: model file not found"]),
        ("train", ["models.nope: no such model; defined models: ['fastscnn']"]),
    ],
)
def test_stage_errors(tmp_path: Path, stage: str, fragments: list[str]) -> None:
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"models": {"fastscnn": {"arch": "fastscnn"}}}))
    result = subprocess.run(
        [sys.executable, str(REPO / "stages" / f"{stage}.py"), "--model", "nope"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    line = assert_one_error(result, *fragments)
    assert line.startswith("ERROR cocoseg: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]  # failed before writing anything


def test_evaluate_scores_a_test_split_apart(run: Run, checkpoints: dict[str, Path], tmp_path: Path) -> None:
    """A test part of split.json is scored like val, into test/* keys; here it holds the val images, so
    its scores must be val's exactly."""
    import shutil

    masks = tmp_path / "masks"
    shutil.copytree(run.masks, masks)
    split = json.loads((masks / "split.json").read_text())
    (masks / "split.json").write_text(json.dumps({**split, "test": split["val"]}))
    cfg = EvaluateConfig(overlays=0, speed_batches=1, workers=0)
    metrics = evaluate_model(checkpoints["untrained"], run.coco, masks, tmp_path / "out", cfg)
    assert metrics["test_images"] == metrics["val_images"] == 2
    for key in ("miou", "dice", "pixel_accuracy"):
        assert metrics[f"test/{key}"] == metrics[key]
    assert set(metrics) == {
        "miou",
        "dice",
        "pixel_accuracy",
        "params",
        "val_images",
        "test_images",
        "test/miou",
        "test/dice",
        "test/pixel_accuracy",
    }

"""Train one model: wire config, DataModule, LightningModule, loggers and callbacks; export the best."""

from __future__ import annotations

import logging
import shutil
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from dvclive.lightning import DVCLiveLogger
from lightning.pytorch.loggers import TensorBoardLogger

from cocoseg.training.callbacks import BestWeights, FirstIterationMetrics, ProgressLines, StepScalars
from cocoseg.training.runs import run_name, write_run_summary
from cocoseg.models.checkpoint import save_checkpoint
from cocoseg.core.params import Params
from cocoseg.models import check_arch, model_spec
from cocoseg.models.inference import Preprocessing
from cocoseg.training.data import SegmentationDataModule
from cocoseg.training.module import SegmentationModule

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainPaths:
    coco_root: Path  # data/coco
    masks_root: Path  # data/masks
    model_dir: Path  # models/<name>: model.pt
    live_dir: Path  # results/train/<name>: dvclive metrics and plots
    runs_dir: Path  # runs/: one folder per run (TensorBoard, summaries), outside DVC's outputs


class _NoAdverts(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage()  # Lightning's "Tip" advertising a cloud service


def quiet_third_party() -> None:
    """Keep logs to what the run did: no advertisement, no deprecation notice between library versions."""
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_NO_ADVERTS)
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")


_NO_ADVERTS = _NoAdverts()


def resolve_precision(precision: str, accelerator: str) -> str:
    if precision != "auto":
        return precision
    on_cuda = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    return "bf16-mixed" if on_cuda else "32-true"


def train_model(params: Params, name: str, paths: TrainPaths) -> dict[str, Any]:
    """Train ``models.<name>``; write models/<name>/model.pt and the dvclive folder; return best metrics."""
    cfg, model_cfg = params.train, params.model(name)
    check_arch(model_cfg.arch, f"models.{name}.arch")
    lr, epochs, batch_size = params.model_settings(name)
    quiet_third_party()
    L.seed_everything(params.base.seed, workers=True, verbose=False)

    datamodule = SegmentationDataModule(paths.coco_root, paths.masks_root, cfg.image_size, batch_size,
                                        cfg.workers, cfg.hflip, cfg.scale)
    module = SegmentationModule(model_cfg.arch, datamodule.num_classes, model_cfg.encoder,
                                model_cfg.encoder_weights, lr, cfg.weight_decay, cfg.dice_weight,
                                dict(model_cfg.options))

    shutil.rmtree(paths.live_dir, ignore_errors=True)  # a rerun starts a fresh history
    live = DVCLiveLogger(dir=str(paths.live_dir), save_dvc_exp=False, dvcyaml=False, report=None)
    # Every run its own TensorBoard folder, so runs (queued experiments too) sit side by side.
    board = TensorBoardLogger(str(paths.runs_dir), name=run_name(name), version="", default_hp_metric=False)
    best = BestWeights("val/miou")
    interactive = sys.stdout.isatty()  # a progress bar in a terminal; log lines in files and dvc queue logs
    trainer = L.Trainer(
        max_epochs=epochs, accelerator=cfg.accelerator, devices=_devices(cfg.devices), strategy=cfg.strategy,
        num_nodes=cfg.num_nodes, precision=resolve_precision(cfg.precision, cfg.accelerator),
        deterministic=cfg.deterministic, logger=[live, board], enable_checkpointing=False,
        callbacks=[best, FirstIterationMetrics(paths.live_dir / "metrics_first_iter.json"), StepScalars(),
                   *([] if interactive else [ProgressLines()])],
        num_sanity_val_steps=0, log_every_n_steps=1, enable_model_summary=False, enable_progress_bar=interactive,
    )
    log.info("training %s (%s) for %d epochs, lr %g, batch %d, %d train / %d val images", name,
             model_cfg.arch, epochs, lr, batch_size, len(datamodule.split["train"]), len(datamodule.split["val"]))
    trainer.fit(module, datamodule=datamodule)

    if trainer.is_global_zero:
        if best.best_state is None:
            raise RuntimeError("training finished without a validation score; no model to export")
        save_checkpoint(
            paths.model_dir / "model.pt", best.best_state,
            model_spec(model_cfg.arch, datamodule.num_classes, model_cfg.encoder, **model_cfg.options),
            Preprocessing(tuple(cfg.image_size)).to_json(),
            datamodule.classes, {"best_epoch": best.best_epoch, **best.best_metrics})
        log.info("best val/miou %.4f at epoch %d -> %s", best.best_score, best.best_epoch,
                 paths.model_dir / "model.pt")
        write_run_summary(Path(board.log_dir), paths.live_dir / "metrics_first_iter.json",
                          {"best_epoch": best.best_epoch, **best.best_metrics},
                          {"model": name, "arch": model_cfg.arch, "lr": lr, "epochs": epochs, "batch_size": batch_size})
        log.info("run history (TensorBoard, summaries): %s", board.log_dir)
    return {"best_epoch": best.best_epoch, **best.best_metrics}


def _devices(devices: int | str | tuple[int, ...]) -> int | str | list[int]:
    return list(devices) if isinstance(devices, tuple) else devices

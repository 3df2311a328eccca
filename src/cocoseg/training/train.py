"""Train one model: wire config, DataModule, LightningModule, loggers and callbacks; export the best."""

from __future__ import annotations

import logging
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from dvclive.lightning import DVCLiveLogger
from lightning.pytorch.loggers import TensorBoardLogger

from cocoseg.training.callbacks import BestWeights, FiniteLoss, FirstIterationMetrics, ProgressLines, StepScalars
from cocoseg.models.checkpoint import save_checkpoint
from cocoseg.core.params import Params, TrainConfig
from cocoseg.models import check_arch, model_spec
from cocoseg.models.inference import Preprocessing
from cocoseg.training.checks import check_timm_encoder
from cocoseg.training.data import SegmentationDataModule
from cocoseg.training.module import SegmentationModule
from cocoseg.training.resume import (EpochCheckpoint, RunState, prepare_run, publish_run, run_fingerprint,
                                     start_epoch)
from cocoseg.training.runs import run_name, write_run_summary

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainPaths:
    coco_root: Path  # data/coco
    masks_root: Path  # data/masks
    model_dir: Path  # models/<name>: model.pt
    live_dir: Path  # results/train/<name>: dvclive metrics and plots
    runs_dir: Path  # runs/: one folder per run (TensorBoard, summaries), outside DVC's outputs
    resume_dir: Path | None = None  # checkpoints/<name> (default: beside models/): the run until it succeeds

    @property
    def state(self) -> RunState:
        return RunState(self.resume_dir or self.model_dir.parent.parent / "checkpoints" / self.model_dir.name)


class _NoAdverts(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage()  # Lightning's "Tip" advertising a cloud service


_NO_ADVERTS = _NoAdverts()


def quiet_third_party() -> None:
    """Keep logs to what the run did: no advertisement, no deprecation notice between library versions."""
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_NO_ADVERTS)
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
    # prepare_batch lives on the LightningModule on purpose (the device side); Lightning notes it each run
    warnings.filterwarnings("ignore", message=r"You have overridden `on_after_batch_transfer` in `LightningModule`")


def resolve_precision(precision: str, accelerator: str) -> str:
    if precision != "auto":
        return precision
    return "bf16-mixed" if on_cuda(accelerator) else "32-true"


def on_cuda(accelerator: str) -> bool:
    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def trainer_speed_flags(cfg: TrainConfig, cuda: bool) -> dict[str, Any]:
    """Trainer arguments that trade repeatability for speed, and the module's memory layout.

    CPU: ``deterministic`` as asked, which makes reruns bit-identical. CUDA: ``deterministic: true``
    means warn-only, since some backward kernels this project needs (bilinear upsampling, 2-D NLL loss)
    have no deterministic CUDA version and would otherwise raise; everything else, cuDNN included,
    picks deterministic algorithms. ``deterministic: false`` lets cuDNN time its algorithms per input
    shape and keep the fastest (``benchmark``). Channels-last only on CUDA: on the CPU it would change
    which kernels run, and so the bits of the results.
    """
    if not cuda:
        return {"deterministic": cfg.deterministic, "benchmark": None, "channels_last": False}
    return {"deterministic": "warn" if cfg.deterministic else False, "benchmark": not cfg.deterministic,
            "channels_last": True}


def train_model(params: Params, name: str, paths: TrainPaths) -> dict[str, Any]:
    """Train ``models.<name>``; write models/<name>/model.pt and the dvclive folder; return best metrics.

    Resumes from ``paths.state`` when a killed run with the same parameters left a checkpoint there.
    The previous model, history and TensorBoard runs stay in place until this run succeeds.
    """
    cfg, model_cfg = params.train, params.model(name)
    check_arch(model_cfg.arch, f"models.{name}.arch")
    check_timm_encoder(params, name)
    lr, epochs, batch_size = params.model_settings(name)
    quiet_third_party()
    L.seed_everything(params.base.seed, workers=True, verbose=False)
    speed = trainer_speed_flags(cfg, on_cuda(cfg.accelerator))

    datamodule = SegmentationDataModule(paths.coco_root, paths.masks_root, cfg.image_size, batch_size,
                                        cfg.workers, cfg.hflip, cfg.scale, params.base.seed)
    module = SegmentationModule(model_cfg.arch, datamodule.num_classes, model_cfg.encoder,
                                model_cfg.encoder_weights, lr, cfg.weight_decay, cfg.dice_weight,
                                dict(model_cfg.options), speed.pop("channels_last"), params.model_compile(name),
                                datamodule.void)

    state, fingerprint = paths.state, run_fingerprint(params, name, paths.masks_root)
    resume_from = prepare_run(state, fingerprint)
    datamodule.start_epoch = start_epoch(resume_from)
    best = BestWeights("val/miou")
    # Every run its own TensorBoard folder, so runs (queued experiments too) sit side by side; a resumed
    # run goes on writing into the folder it started.
    board = TensorBoardLogger(str(paths.runs_dir), name=state.run_name(lambda: run_name(name, paths.runs_dir)),
                              version="",
                              default_hp_metric=False)
    progress = [] if sys.stdout.isatty() else [ProgressLines()]  # log lines in files and dvc queue logs
    trainer = _trainer(params, epochs, resume_from is not None, state, speed, board, [
        best, FirstIterationMetrics(state.live / "metrics_first_iter.json"), StepScalars(), *progress,
        FiniteLoss(name), EpochCheckpoint(state, fingerprint)])  # EpochCheckpoint last: it saves the others
    log.info("training %s (%s) for %d epochs, lr %g, batch %d, %d train / %d val images, %d loader workers",
             name, model_cfg.arch, epochs, lr, batch_size, len(datamodule.split["train"]),
             len(datamodule.split["val"]), datamodule.workers)
    trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from, weights_only=False)  # our own file

    if trainer.is_global_zero:
        settings = {"model": name, "arch": model_cfg.arch, "lr": lr, "epochs": epochs, "batch_size": batch_size}
        _export_best(best, model_cfg, datamodule, cfg.image_size, paths, Path(board.log_dir), settings)
    return {"best_epoch": best.best_epoch, **best.best_metrics}


def _export_best(best: BestWeights, model_cfg: Any, datamodule: SegmentationDataModule, image_size: tuple[int, ...],
                 paths: TrainPaths, run_dir: Path, settings: dict[str, Any]) -> None:
    """The best epoch's weights -> models/<name>/model.pt; the run's summary; the new history swapped in."""
    if best.best_state is None:
        raise RuntimeError("training finished without a validation score; no model to export")
    save_checkpoint(
        paths.model_dir / "model.pt", best.best_state,
        model_spec(model_cfg.arch, datamodule.num_classes, model_cfg.encoder, **model_cfg.options),
        Preprocessing(tuple(image_size)).to_json(), datamodule.classes,
        {"best_epoch": best.best_epoch, **best.best_metrics})
    write_run_summary(run_dir, paths.state.live / "metrics_first_iter.json",
                      {"best_epoch": best.best_epoch, **best.best_metrics}, settings)
    publish_run(paths.state, paths.live_dir)
    log.info("best val/miou %.4f at epoch %d -> %s", best.best_score, best.best_epoch, paths.model_dir / "model.pt")
    log.info("run history (TensorBoard, summaries): %s", run_dir)


def _trainer(params: Params, epochs: int, resume: bool, state: RunState, speed: dict[str, Any],
             board: TensorBoardLogger, callbacks: list[L.Callback]) -> L.Trainer:
    """Lightning's Trainer, logging to dvclive in the run folder (resumed: its history continues).

    ``speed`` holds the per-device determinism and cuDNN flags of ``trainer_speed_flags``."""
    cfg = params.train
    live = DVCLiveLogger(dir=str(state.live), save_dvc_exp=False, dvcyaml=False, report=None, resume=resume)
    return L.Trainer(
        max_epochs=epochs, accelerator=cfg.accelerator, devices=_devices(cfg.devices), strategy=cfg.strategy,
        num_nodes=cfg.num_nodes, precision=resolve_precision(cfg.precision, cfg.accelerator),
        **speed, logger=[live, board], enable_checkpointing=False, callbacks=callbacks,
        num_sanity_val_steps=0, log_every_n_steps=1, enable_model_summary=False,
        enable_progress_bar=sys.stdout.isatty(),
    )


def _devices(devices: int | str | tuple[int, ...]) -> int | str | list[int]:
    return list(devices) if isinstance(devices, tuple) else devices

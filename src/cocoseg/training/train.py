"""Train one model: wire config, DataModule, LightningModule, loggers and callbacks; export the best."""

from __future__ import annotations

import dataclasses
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

from cocoseg.core.arithmetic import settle_arithmetic
from cocoseg.core.layout import CHECKPOINTS_DIR, MODEL_FILE
from cocoseg.core.params import Params, TrainConfig
from cocoseg.core.stage import drop_library_handlers
from cocoseg.models import check_arch, check_forward, model_spec
from cocoseg.models.checkpoint import save_checkpoint
from cocoseg.models.preprocessing import Preprocessing
from cocoseg.training.callbacks import (
    BestWeights,
    FiniteLoss,
    FirstIterationMetrics,
    ProgressBar,
    ProgressLines,
    StepScalars,
    epoch_label,
)
from cocoseg.training.checks import check_timm_encoder
from cocoseg.training.data import SegmentationDataModule
from cocoseg.training.module import SegmentationModule
from cocoseg.training.resume import (
    EpochCheckpoint,
    RunState,
    prepare_run,
    publish_run,
    run_fingerprint,
    start_epoch,
)
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
        return RunState(
            self.resume_dir or self.model_dir.parent.parent / CHECKPOINTS_DIR / self.model_dir.name
        )


class _NoAdverts(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage()  # Lightning's "Tip" advertising a cloud service


_NO_ADVERTS = _NoAdverts()


def quiet_third_party() -> None:
    """Keep logs to what the run did, each line once: no advertisement, no deprecation notice between
    library versions."""
    drop_library_handlers()
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_NO_ADVERTS)
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
    # prepare_batch lives on the LightningModule on purpose (the device side); Lightning notes it each run
    warnings.filterwarnings(
        "ignore", message=r"You have overridden `on_after_batch_transfer` in `LightningModule`"
    )


def resolve_precision(precision: str, accelerator: str) -> str:
    if precision != "auto":
        return precision
    return "bf16-mixed" if on_cuda(accelerator) else "32-true"


def on_cuda(accelerator: str) -> bool:
    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def trainer_speed_flags(cfg: TrainConfig, cuda: bool) -> dict[str, Any]:
    """Trainer arguments that trade repeatability for speed, and the module's memory layout.

    CPU: ``deterministic`` as asked, which makes reruns bit-identical. CUDA: ``deterministic: true``
    means warn-only, since a backward kernel this project needs (bilinear upsampling's)
    has no deterministic CUDA version and would otherwise raise; everything else, cuDNN included,
    picks deterministic algorithms. ``deterministic: false`` lets cuDNN time its algorithms per input
    shape and keep the fastest (``benchmark``). Channels-last only on CUDA: on the CPU it would change
    which kernels run, and so the bits of the results.
    """
    if not cuda:
        return {"deterministic": cfg.deterministic, "benchmark": None, "channels_last": False}
    return {
        "deterministic": "warn" if cfg.deterministic else False,
        "benchmark": not cfg.deterministic,
        "channels_last": True,
    }


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
    arithmetic = settle_arithmetic(cfg.deterministic, cfg.threads)
    L.seed_everything(params.base.seed, workers=True, verbose=False)
    speed = trainer_speed_flags(cfg, on_cuda(cfg.accelerator))

    datamodule, module = _data_and_module(params, paths, name, lr, batch_size, speed.pop("channels_last"))
    state, fingerprint = paths.state, run_fingerprint(params, name, paths.masks_root)
    resume_from = prepare_run(state, fingerprint)
    datamodule.start_epoch = start_epoch(resume_from)
    best = BestWeights("val/miou")
    # Every run its own TensorBoard folder, so runs (queued experiments too) sit side by side; a resumed
    # run goes on writing into the folder it started.
    board = TensorBoardLogger(
        str(paths.runs_dir),
        name=state.run_name(lambda: run_name(name, paths.runs_dir)),
        version="",
        default_hp_metric=False,
    )
    callbacks = _callbacks(name, best, state, fingerprint)
    trainer = _trainer(params, epochs, resume_from is not None, state, speed, board, callbacks)
    settings = {
        "model": name,
        "arch": model_cfg.arch,
        "lr": lr,
        "epochs": epochs,
        "batch_size": batch_size,
        "deterministic": cfg.deterministic,
        "threads": arithmetic["threads"],
    }
    _log_start(settings, datamodule)
    board.log_hyperparams(run_hparams(params, name, settings))  # before Lightning first writes hparams.yaml
    trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from, weights_only=False)  # our own file

    if trainer.is_global_zero:
        _export_best(best, model_cfg, datamodule, cfg.image_size, paths, board, settings, arithmetic)
    return {"best_epoch": best.best_epoch, **best.best_metrics}


def _data_and_module(
    params: Params, paths: TrainPaths, name: str, lr: float, batch_size: int, channels_last: bool
) -> tuple[SegmentationDataModule, SegmentationModule]:
    """The DataModule and the LightningModule of ``models.<name>``, the model's forward pass checked before
    any step."""
    cfg, model_cfg = params.train, params.model(name)
    datamodule = SegmentationDataModule(
        paths.coco_root,
        paths.masks_root,
        cfg.image_size,
        batch_size,
        cfg.workers,
        cfg.hflip,
        cfg.scale,
        params.base.seed,
    )
    module = SegmentationModule(
        model_cfg.arch,
        datamodule.num_classes,
        model_cfg.encoder,
        model_cfg.encoder_weights,
        lr,
        cfg.weight_decay,
        cfg.dice_weight,
        dict(model_cfg.options),
        channels_last,
        params.model_compile(name),
        datamodule.void,
    )
    check_forward(module.model, datamodule.num_classes, cfg.image_size, f"models.{name}")  # before any step
    return datamodule, module


def _callbacks(name: str, best: BestWeights, state: RunState, fingerprint: str) -> list[L.Callback]:
    """EpochCheckpoint comes last: it saves the others' state."""
    progress = ProgressBar() if sys.stdout.isatty() else ProgressLines()  # lines in files and dvc queue logs
    return [
        best,
        FirstIterationMetrics(state.live / "metrics_first_iter.json"),
        StepScalars(),
        progress,
        FiniteLoss(name),
        EpochCheckpoint(state, fingerprint),
    ]


def _log_start(settings: dict[str, Any], datamodule: SegmentationDataModule) -> None:
    epochs = settings["epochs"]
    log.info(
        "training %s (%s) for %d epochs (0-%d), lr %g, batch %d, %d train / %d val images, %d loader workers",
        settings["model"],
        settings["arch"],
        epochs,
        epochs - 1,
        settings["lr"],
        settings["batch_size"],
        len(datamodule.split["train"]),
        len(datamodule.split["val"]),
        datamodule.workers,
    )


def run_hparams(params: Params, name: str, settings: dict[str, Any]) -> dict[str, Any]:
    """What decides this run, for TensorBoard's HParams tab and the run's hparams.yaml: the settings it used
    (lr, epochs, batch size after a model's own overrides) and the base, train and models.<name> sections."""
    sections = {
        "base": dataclasses.asdict(params.base),
        "train": dataclasses.asdict(params.train),
        f"models.{name}": dataclasses.asdict(params.model(name)),
    }
    return {**settings, **{key: _plain(value) for key, value in sections.items()}}


def _plain(value: Any) -> Any:
    """Tuples as lists and the rest as is: hparams.yaml stays plain YAML (no Python tags)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return [_plain(v) for v in value] if isinstance(value, (tuple, list)) else value


def _export_best(
    best: BestWeights,
    model_cfg: Any,
    datamodule: SegmentationDataModule,
    image_size: tuple[int, ...],
    paths: TrainPaths,
    board: TensorBoardLogger,
    settings: dict[str, Any],
    arithmetic: dict[str, Any],
) -> None:
    """The best epoch's weights -> models/<name>/model.pt; the run's summary, what its arithmetic ran on and
    TensorBoard hparams; the new history swapped in."""
    if best.best_state is None:
        raise RuntimeError("training finished without a validation score; no model to export")
    save_checkpoint(
        paths.model_dir / MODEL_FILE,
        best.best_state,
        model_spec(model_cfg.arch, datamodule.num_classes, model_cfg.encoder, **model_cfg.options),
        Preprocessing(tuple(image_size)).to_json(),
        datamodule.classes,
        {"best_epoch": best.best_epoch, **best.best_metrics},
    )
    run_dir = Path(board.log_dir)
    first_iter = write_run_summary(
        run_dir,
        paths.state.live / "metrics_first_iter.json",
        {"best_epoch": best.best_epoch, **best.best_metrics},
        settings,
        arithmetic,
    )
    hp_metrics = {
        "hparams/best_val_miou": best.best_score,
        "hparams/best_epoch": best.best_epoch,
        **({"hparams/first_iter_val_miou": first_iter["val/miou"]} if "val/miou" in first_iter else {}),
    }
    board.log_hyperparams(board.hparams, hp_metrics)  # the HParams tab: this run's settings and scores
    publish_run(paths.state, paths.live_dir)
    log.info(
        "best val/miou %.4f at %s -> %s",
        best.best_score,
        epoch_label(best.best_epoch, settings["epochs"]),
        paths.model_dir / MODEL_FILE,
    )
    log.info("run history (TensorBoard, summaries): %s", run_dir)


def _trainer(
    params: Params,
    epochs: int,
    resume: bool,
    state: RunState,
    speed: dict[str, Any],
    board: TensorBoardLogger,
    callbacks: list[L.Callback],
) -> L.Trainer:
    """Lightning's Trainer, logging to dvclive in the run folder (resumed: its history continues).

    ``speed`` holds the per-device determinism and cuDNN flags of ``trainer_speed_flags``."""
    cfg = params.train
    live = DVCLiveLogger(dir=str(state.live), save_dvc_exp=False, dvcyaml=False, report=None, resume=resume)
    return L.Trainer(
        max_epochs=epochs,
        accelerator=cfg.accelerator,
        devices=_devices(cfg.devices),
        strategy=cfg.strategy,
        num_nodes=cfg.num_nodes,
        precision=resolve_precision(cfg.precision, cfg.accelerator),
        **speed,
        logger=[live, board],
        enable_checkpointing=False,
        callbacks=callbacks,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
        enable_model_summary=False,
        enable_progress_bar=sys.stdout.isatty(),
    )


def _devices(devices: int | str | tuple[int, ...]) -> int | str | list[int]:
    return list(devices) if isinstance(devices, tuple) else devices

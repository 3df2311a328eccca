"""Lightning callbacks: keep the best weights, stop on a non-finite loss, first-iteration metrics, per-step
scalars, progress lines."""

from __future__ import annotations

import copy
import json
import logging
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.loggers import TensorBoardLogger

from cocoseg.core.errors import UserError
from cocoseg.core.files import write_text
from cocoseg.core.scores import SCORES
from cocoseg.models.inference import predict_batch
from cocoseg.training.module import build_metrics

log = logging.getLogger(__name__)


def epoch_label(epoch: int, max_epochs: int) -> str:
    """``epoch 2 of 0-11``: counted from 0, as Lightning's progress bar (``Epoch 2``), its checkpoints and
    dvclive's ``epoch`` count them, so every line of a run names an epoch the same way."""
    return f"epoch {epoch} of 0-{max_epochs - 1}"


class BestWeights(L.Callback):
    """Keep, in memory, the weights of the epoch with the best ``monitor`` value (higher is better)."""

    def __init__(self, monitor: str = "val/miou") -> None:
        self.monitor = monitor
        self.best_score = float("-inf")
        self.best_epoch = -1
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_metrics: dict[str, float] = {}

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        score = float(trainer.callback_metrics[self.monitor])
        if score > self.best_score:
            self.best_score, self.best_epoch = score, trainer.current_epoch
            self.best_state = copy.deepcopy(
                {k: v.detach().cpu() for k, v in pl_module.model.state_dict().items()}
            )
            self.best_metrics = {
                k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")
            }

    def state_dict(self) -> dict[str, Any]:  # saved in the resume checkpoint, so a resumed run knows the best
        return {
            "best_score": self.best_score,
            "best_epoch": self.best_epoch,
            "best_state": self.best_state,
            "best_metrics": self.best_metrics,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best_score, self.best_epoch = state_dict["best_score"], state_dict["best_epoch"]
        self.best_state, self.best_metrics = state_dict["best_state"], state_dict["best_metrics"]


class TrainingDiverged(UserError):
    """The loss became NaN or infinite: the run stops instead of training on garbage."""


class FiniteLoss(L.Callback):
    """Stop at the first non-finite loss, before its backward pass touches the weights."""

    def __init__(self, name: str) -> None:
        self.name = name

    def on_before_backward(
        self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor
    ) -> None:
        if not torch.isfinite(loss).all():
            raise TrainingDiverged(
                f"train@{self.name}: the loss is {loss.item()} at epoch {trainer.current_epoch}, step "
                f"{trainer.global_step}; lower models.{self.name}.lr (or train.lr), or set "
                f"train.precision: 32-true"
            )


class FirstIterationMetrics(L.Callback):
    """After the first optimiser step, score val once (the seed's metrics_first_iter.txt).

    On the first ``max_images`` val images: on full COCO a whole val pass after one step would cost
    minutes per model for a number that only shows where training started. The first process scores
    alone, with metrics that do not wait for the other processes (they are busy training).
    """

    def __init__(self, path: Path, max_images: int = 512) -> None:
        self.path, self.max_images = Path(path), max_images

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if trainer.global_step != 1 or not trainer.is_global_zero:
            return
        metrics = build_metrics(
            pl_module.hparams.num_classes, "val/", sync=False, ignore_index=pl_module.hparams.ignore_index
        ).to(pl_module.device)
        loss_sum, seen = 0.0, 0
        was_training = pl_module.training
        pl_module.eval()
        with torch.no_grad():
            for images, target in trainer.datamodule.val_dataloader():
                if seen >= self.max_images:
                    break
                batch = images.to(pl_module.device), target.to(pl_module.device)
                images, target = pl_module.prepare_batch(batch)  # as in training: uint8 -> model input
                logits, classes = predict_batch(pl_module, images)
                loss_sum += float(pl_module.loss(logits, target)) * images.shape[0]
                seen += images.shape[0]
                metrics.update(torch.stack(classes), target)
        pl_module.train(was_training)
        result = {
            "step": 1,
            "train/loss": float(outputs["loss"]),
            "val/loss": loss_sum / seen,
            "val_images": seen,
            **{k: float(v) for k, v in metrics.compute().items()},
        }
        write_text(self.path, json.dumps(result, indent=2, sort_keys=True) + "\n")
        scalars = {f"first_iter/{k}": v for k, v in result.items() if "/" in k}  # beside the epochs' curves
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.log_metrics(scalars, step=0)  # after the first step, which the step scalars call 0


class StepScalars(L.Callback):
    """Per-step train loss and learning rate for TensorBoard only (dvclive keeps its per-epoch history)."""

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        scalars = {
            "train/loss_step": float(outputs["loss"]),
            "train/lr": float(trainer.optimizers[0].param_groups[0]["lr"]),
        }
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                # zero-based like Lightning's own steps, so the epoch scalars fall on the same axis
                logger.log_metrics(scalars, step=trainer.global_step - 1)


class ProgressLines(L.Callback):
    """Progress as log lines, for logs and ``dvc queue logs`` where no progress bar can be drawn.

    One line per epoch (train loss, val scores, seconds), and one every ``every_n_steps`` steps inside
    an epoch longer than that.
    """

    def __init__(self, every_n_steps: int = 50) -> None:
        self.every_n_steps = every_n_steps
        self.started = 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.started = time.perf_counter()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        total = trainer.num_training_batches
        if (batch_idx + 1) % self.every_n_steps == 0 and batch_idx + 1 < total and trainer.is_global_zero:
            log.info(
                "%s, step %d/%d: train/loss %.4f",
                epoch_label(trainer.current_epoch, trainer.max_epochs),
                batch_idx + 1,
                total,
                float(outputs["loss"]),
            )

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Every process reads callback_metrics: with several processes reading them is a collective
        # call (the epoch's values are reduced), so a read on the first process alone would hang it.
        metrics = trainer.callback_metrics
        if not trainer.is_global_zero:
            return
        shown = ("train/loss", "val/loss", *(f"val/{name}" for name in SCORES))
        values = ", ".join(f"{k} {float(metrics[k]):.4f}" for k in shown if k in metrics)
        log.info(
            "%s: %s (%.1f s)",
            epoch_label(trainer.current_epoch, trainer.max_epochs),
            values,
            time.perf_counter() - self.started,
        )


class ProgressBar(TQDMProgressBar):
    """Lightning's progress bar without ``v_num``: the logger's version, here the run folder's name (which
    the log names in full), cut to its last four characters."""

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        return items

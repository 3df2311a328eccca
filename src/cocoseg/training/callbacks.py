"""Lightning callbacks: keep the best weights, stop on a non-finite loss, first-iteration metrics, TensorBoard."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import lightning as L
import torch

from cocoseg.core.errors import UserError
from cocoseg.core.files import write_text
from cocoseg.models.inference import predict_batch
from cocoseg.training.module import build_metrics, exact_counting


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
            self.best_state = copy.deepcopy({k: v.detach().cpu() for k, v in pl_module.model.state_dict().items()})
            self.best_metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}

    def state_dict(self) -> dict[str, Any]:  # saved in the resume checkpoint, so a resumed run knows the best
        return {"best_score": self.best_score, "best_epoch": self.best_epoch, "best_state": self.best_state,
                "best_metrics": self.best_metrics}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best_score, self.best_epoch = state_dict["best_score"], state_dict["best_epoch"]
        self.best_state, self.best_metrics = state_dict["best_state"], state_dict["best_metrics"]


class TrainingDiverged(UserError):
    """The loss became NaN or infinite: the run stops instead of training on garbage."""


class FiniteLoss(L.Callback):
    """Stop at the first non-finite loss, before its backward pass touches the weights."""

    def __init__(self, name: str) -> None:
        self.name = name

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor) -> None:
        if not torch.isfinite(loss).all():
            raise TrainingDiverged(
                f"train@{self.name}: the loss is {loss.item()} at epoch {trainer.current_epoch}, step "
                f"{trainer.global_step}; lower models.{self.name}.lr (or train.lr), or set "
                f"train.precision: 32-true")


class FirstIterationMetrics(L.Callback):
    """After the first optimiser step, score the val split once (the seed's metrics_first_iter.txt)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if trainer.global_step != 1 or not trainer.is_global_zero:
            return
        metrics = build_metrics(pl_module.hparams.num_classes, "val/").to(pl_module.device)
        losses = []
        was_training = pl_module.training
        pl_module.eval()
        with torch.no_grad():
            for images, target in trainer.datamodule.val_dataloader():
                batch = images.to(pl_module.device), target.to(pl_module.device)
                images, target = pl_module.prepare_batch(batch)  # as in training: uint8 -> model input
                logits, classes = predict_batch(pl_module, images)
                losses.append(float(pl_module.loss(logits, target)) * images.shape[0])
                with exact_counting():
                    metrics.update(torch.stack(classes), target)
        pl_module.train(was_training)
        n_val = len(trainer.datamodule.split["val"])
        result = {"step": 1, "train/loss": float(outputs["loss"]), "val/loss": sum(losses) / n_val,
                  **{k: float(v) for k, v in metrics.compute().items()}}
        write_text(self.path, json.dumps(result, indent=2, sort_keys=True) + "\n")


class TensorBoardRuns(L.Callback):
    """Per-epoch scalars as two TensorBoard runs, ``train`` and ``val``, so their curves overlay."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = Path(log_dir)
        self.writers: dict[str, Any] = {}

    def _write(self, trainer: L.Trainer, run: str) -> None:
        if not trainer.is_global_zero:
            return
        if run not in self.writers:
            from torch.utils.tensorboard import SummaryWriter

            self.writers[run] = SummaryWriter(str(self.log_dir / run))
        for name, value in trainer.callback_metrics.items():
            if name.startswith(f"{run}/"):
                self.writers[run].add_scalar(name.split("/", 1)[1], float(value), trainer.current_epoch)
        self.writers[run].flush()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._write(trainer, "train")

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._write(trainer, "val")

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for writer in self.writers.values():
            writer.close()

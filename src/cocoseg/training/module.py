"""The LightningModule: loss, metrics and optimiser around any registered model. It opens no files.

Batches arrive as the DataLoader made them, uint8 (N, H, W, 3) images and (N, H, W) masks, and become
model input only on the device (``prepare_batch``), with the inference path's normalisation, so that
training and inference agree. ``channels_last`` keeps images and weights in NHWC memory order, which
CUDA's convolution kernels (tensor cores) prefer; on the CPU it is left off, so CPU results stay those
of NCHW bit for bit. ``compile`` runs the network through ``torch.compile``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import lightning as L
import torch
from torchmetrics import Metric, MetricCollection

from cocoseg.core.layout import VOID
from cocoseg.core.scores import SCORES, Counts, Score
from cocoseg.models import build_model
from cocoseg.models.preprocessing import Preprocessing
from cocoseg.training.losses import cross_entropy_dice


@contextlib.contextmanager
def exact_counting() -> Iterator[None]:
    """Let ``torch.bincount`` run while deterministic algorithms are on (CUDA has no deterministic version
    and would raise or warn at every batch). Integer counts are exact in any order, so the result is
    the same, bit for bit."""
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(False)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


class ConfusionScore(Metric):
    """One score of core/scores.py over the epoch's (K, K) confusion matrix, summed over every process
    when computed. The scores of one MetricCollection share one matrix (torchmetrics' compute groups:
    one count per batch)."""

    full_state_update = False

    def __init__(self, score: Score, num_classes: int, ignore_index: int = VOID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.score, self.num_classes, self.ignore_index = score, num_classes, ignore_index
        zeros = torch.zeros(num_classes, num_classes, dtype=torch.long)
        self.add_state("confusion", default=zeros, dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        keep = target != self.ignore_index
        cells = target[keep].long() * self.num_classes + preds[keep].long()
        with exact_counting():
            counts = torch.bincount(cells, minlength=self.num_classes**2)
        self.confusion += counts.reshape(self.num_classes, self.num_classes)

    def compute(self) -> torch.Tensor:
        return self.score.compute(Counts(self.confusion, torch.float32))


def build_metrics(
    num_classes: int, prefix: str, sync: bool = True, ignore_index: int = VOID
) -> MetricCollection:
    """Every score of core/scores.py at the dataset level (not a mean of per-batch scores).

    ``sync``: under several processes, ``compute`` sums every process's counts (a collective call, so
    every process must make it); off for metrics that one process computes alone. ``ignore_index``: the
    masks' void label (labels.json).
    """
    return MetricCollection(
        {
            name: ConfusionScore(score, num_classes, ignore_index, sync_on_compute=sync)
            for name, score in SCORES.items()
        },
        prefix=prefix,
    )


class SegmentationModule(L.LightningModule):
    def __init__(
        self,
        arch: str,
        num_classes: int,
        encoder: str = "resnet18",
        encoder_weights: str | None = None,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        dice_weight: float = 0.5,
        options: dict[str, Any] | None = None,
        channels_last: bool = False,
        compile: bool = False,
        ignore_index: int = VOID,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)  # params live in params.yaml; DVC tracks them
        self.model = build_model(arch, num_classes, encoder, encoder_weights, **(options or {}))
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model.to(memory_format=self.memory_format)
        # kept out of the module tree (no "_orig_mod." in state_dict); it shares self.model's weights
        self.__dict__["network"] = torch.compile(self.model) if compile else self.model
        self.normalise = Preprocessing((0, 0)).normalise  # the statistics every checkpoint records
        self.train_metrics = build_metrics(num_classes, "train/", ignore_index=ignore_index)
        self.val_metrics = build_metrics(num_classes, "val/", ignore_index=ignore_index)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)  # (N, K, H, W) logits

    def prepare_batch(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, H, W, 3) uint8 images, (N, H, W) uint8 (or uint16) masks -> (N, 3, H, W) normalised float,
        (N, H, W) long.

        The permute is free: NHWC memory read as NCHW is exactly the channels-last layout.
        """
        images, target = batch
        images = self.normalise(images.permute(0, 3, 1, 2)).contiguous(memory_format=self.memory_format)
        return images, target.long()

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        return self.prepare_batch(batch)  # on the device, after the (pinned) uint8 copy

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return cross_entropy_dice(
            logits, target, self.hparams.dice_weight, ignore_index=self.hparams.ignore_index
        )

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        images, target = batch  # (N, 3, H, W) float, (N, H, W) long: after prepare_batch
        logits = self(images)
        loss = self.loss(logits, target)
        metrics = self.train_metrics if stage == "train" else self.val_metrics
        metrics.update(logits.argmax(dim=1), target)
        self.log(
            f"{stage}/loss",
            loss,
            on_step=False,
            on_epoch=True,
            batch_size=images.shape[0],
            prog_bar=stage == "val",
            sync_dist=True,
        )
        self.log_dict(metrics, on_step=False, on_epoch=True, prog_bar=stage == "val")
        return loss

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "val")

    def configure_optimizers(self) -> Any:
        # fused: one CUDA kernel for the whole update instead of several per parameter group
        optimizer = torch.optim.AdamW(
            self.parameters(),
            lr=self.hparams.lr,
            weight_decay=self.hparams.weight_decay,
            fused=self.device.type == "cuda" or None,
        )
        # One cycle: warm up, then anneal; gets far on a few epochs, which is what a CPU run has.
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=self.hparams.lr,
            total_steps=self.trainer.estimated_stepping_batches,
            pct_start=0.15,
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

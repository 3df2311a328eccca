"""One inference path for every consumer: evaluate, predict and the first-iteration metrics.

A batch of images resized to the model's input size goes in as uint8; it is normalised with the
preprocessing the checkpoint recorded, run through the model, and each image's class ids come out at
the size asked for (the logits are upsampled bilinearly before the argmax, as they were trained; one
class map at a time, so memory does not grow with the number of classes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

MEAN = (0.485, 0.456, 0.406)  # ImageNet statistics (RGB): what pretrained encoders expect
STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocessing:
    """How images become model input; stored in every checkpoint and read back from it."""

    image_size: tuple[int, int]  # (height, width) the images are resized to
    mean: tuple[float, ...] = MEAN
    std: tuple[float, ...] = STD
    channels: str = "RGB"

    @classmethod
    def from_checkpoint(cls, ckpt: dict[str, Any]) -> Preprocessing:
        p = ckpt["preprocessing"]
        return cls(tuple(p["image_size"]), tuple(p["mean"]), tuple(p["std"]), p.get("channels", "RGB"))

    def to_json(self) -> dict[str, Any]:
        return {"image_size": list(self.image_size), "mean": list(self.mean), "std": list(self.std),
                "channels": self.channels}

    def resize(self, image: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 -> the model's input size, bilinear."""
        h, w = self.image_size
        return cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) or (3, H, W) uint8 -> float32 scaled to [0, 1], minus mean, over std."""
        shape = (3, 1, 1)
        # non_blocking: a blocking copy would wait for all queued GPU work (a stall every batch)
        mean = torch.tensor(self.mean).to(images.device, non_blocking=True).view(shape)
        std = torch.tensor(self.std).to(images.device, non_blocking=True).view(shape)
        return (images.float().div_(255) - mean) / std


def to_chw(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 array -> (3, H, W) uint8 tensor (no copy of the pixels when contiguous)."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)


@torch.no_grad()
def predict_batch(model: torch.nn.Module, inputs: torch.Tensor,
                  out_sizes: Sequence[tuple[int, int]] | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(N, 3, h, w) normalised input -> ((N, K, h, w) logits, N class-id maps).

    Each map has the size ``out_sizes[i]`` (logits upsampled, then the argmax), or the model's size.
    """
    logits = model(inputs)
    if out_sizes is None:
        return logits, list(logits.argmax(1))
    return logits, [upsampled_argmax(logits[i], tuple(size)) for i, size in enumerate(out_sizes)]


def upsampled_argmax(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(K, h, w) logits -> (H, W) int64 argmax of their bilinear upsampling to ``size``, one class at a time.

    Upsampling all K maps before the argmax holds K x H x W floats: 7.8 GB for 81 classes and a 6000x4000
    photo. One map at a time holds about 10 bytes a pixel whatever K. Each map is upsampled exactly as it
    is within the whole stack, and a tie keeps the lower class id as argmax does, so the result is the same.
    """
    def upsample(k: int) -> torch.Tensor:
        return F.interpolate(logits[None, k:k + 1], size=size, mode="bilinear", align_corners=False)[0, 0]

    best = upsample(0)
    classes = torch.zeros(size, dtype=torch.uint8 if logits.shape[0] <= 256 else torch.int64, device=logits.device)
    for k in range(1, logits.shape[0]):
        candidate = upsample(k)
        better = candidate > best
        classes.masked_fill_(better, k)
        torch.maximum(best, candidate, out=best)
        del candidate, better  # free before the next map is made
    return classes.long()

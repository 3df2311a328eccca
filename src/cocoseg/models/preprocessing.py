"""How images become model input: the resize and normalisation every checkpoint records, which training,
evaluation, prediction and export all read back, so that they agree."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch

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
        return {
            "image_size": list(self.image_size),
            "mean": list(self.mean),
            "std": list(self.std),
            "channels": self.channels,
        }

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

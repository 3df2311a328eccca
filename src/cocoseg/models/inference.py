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


def upsampled_argmax(logits: torch.Tensor, size: tuple[int, int], rows: int = 256,
                     chunk: int = 1 << 16) -> torch.Tensor:
    """(K, h, w) logits -> (H, W) int64 argmax of their bilinear upsampling to ``size`` (align_corners=False),
    without upsampling K maps.

    Bilinear upsampling blends each output pixel from its four nearest input pixels with non-negative
    weights. Where those four share their argmax c, c is also the argmax of the blend: it beats every
    other class at each corner, so in every weighted mean of them. Only the pixels whose corners disagree
    (near a class boundary) are blended, ``chunk`` at a time, from the corners' K logits; the output is
    built ``rows`` rows at a time. Memory stays bounded by the band and the chunk, whatever K and the
    photo's size (an upsampled stack of 81 classes at 6000x4000 is 7.8 GB), and time follows the boundaries.
    """
    y0, y1, wy = _source_pixels(logits.shape[1], size[0], logits.device)
    x0, x1, wx = _source_pixels(logits.shape[2], size[1], logits.device)
    low = logits.argmax(0).to(torch.int16 if logits.shape[0] <= 32767 else torch.int64)
    classes = torch.empty(size, dtype=torch.int64, device=logits.device)
    per_pixel = logits.permute(1, 2, 0).contiguous()  # (h, w, K): a pixel's K logits side by side, to gather
    for top in range(0, size[0], rows):
        band = slice(top, top + rows)
        corners = [low[ya[band]][:, xa] for ya in (y0, y1) for xa in (x0, x1)]  # each (rows, W)
        classes[band] = corners[0]
        mixed = ((corners[0] != corners[1]) | (corners[0] != corners[2]) | (corners[0] != corners[3])).nonzero()
        for part in mixed.split(chunk):
            r, c = part[:, 0] + top, part[:, 1]
            classes[r, c] = _blend(per_pixel, (y0[r], y1[r], wy[r]), (x0[c], x1[c], wx[c])).argmax(1)
    return classes


def _blend(per_pixel: torch.Tensor, ys: tuple[torch.Tensor, ...], xs: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """(n, K) bilinear blend of (h, w, K) logits at n points, given each point's two rows, two columns and
    the second row's and column's weights."""
    (ya, yb, ly), (xa, xb, lx) = ys, xs
    ly, lx = ly[:, None], lx[:, None]
    top = per_pixel[ya, xa] * (1 - lx) + per_pixel[ya, xb] * lx
    bottom = per_pixel[yb, xa] * (1 - lx) + per_pixel[yb, xb] * lx
    return top * (1 - ly) + bottom * ly


def _source_pixels(size_in: int, size_out: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    """For each output index: the two input indices it is blended from, and the second one's weight."""
    src = ((torch.arange(size_out, device=device, dtype=torch.float32) + 0.5) * (size_in / size_out) - 0.5)
    src = src.clamp(min=0)
    first = src.floor().long().clamp(max=size_in - 1)
    return first, (first + 1).clamp(max=size_in - 1), src - first

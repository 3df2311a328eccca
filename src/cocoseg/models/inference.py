"""One inference path for every consumer: evaluate, predict and the first-iteration metrics.

A batch of images resized to the model's input size goes in as uint8; it is normalised with the
preprocessing the checkpoint recorded, run through the model, and each image's class ids come out at
the size asked for (the logits are upsampled bilinearly before the argmax, as they were trained; one
class map at a time, so memory does not grow with the number of classes).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import numpy as np
import torch


def to_chw(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 array -> (3, H, W) uint8 tensor (no copy of the pixels when contiguous)."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)


@torch.no_grad()
def predict_batch(
    model: torch.nn.Module,
    inputs: torch.Tensor,
    out_sizes: Sequence[tuple[int, int]] | None = None,
    upsample: str = "exact",
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(N, 3, h, w) normalised input -> ((N, K, h, w) logits, N class-id maps).

    Each map has the size ``out_sizes[i]`` (see ``UPSAMPLING`` for how), or the model's size.
    """
    logits = model(inputs)
    if out_sizes is None:
        return logits, [argmax_classes(one) for one in logits]
    to_size = UPSAMPLING[upsample]
    return logits, [to_size(logits[i], tuple(size)) for i, size in enumerate(out_sizes)]


def argmax_classes(logits: torch.Tensor, rows: int = 8) -> torch.Tensor:
    """(K, h, w) logits -> (h, w) int64, equal to ``logits.argmax(0)`` (ties and NaN included), faster.

    On the CPU ``argmax(0)`` walks the K logits of one pixel at a time, strided. Here every step runs
    along rows instead, ``rows`` rows at a time so a band stays in cache:
    the maximum over classes, then which classes reach it, weighted K, K-1, ... 1 so that the largest
    weight is the first class reaching it. A pixel that no class reaches holds a NaN: torch's argmax
    decides it. On the CPU numpy does the steps (its comparison is 4x torch's there).
    """
    k = logits.shape[0]
    if logits.device.type == "cpu" and logits.dtype in (torch.float32, torch.float64):
        first = torch.from_numpy(_first_maximum_numpy(logits.detach().numpy(), rows))
    else:
        first = _first_maximum_torch(logits, rows)
    classes = k - first.long()
    nan = first == 0
    if nan.any():
        classes[nan] = logits[:, nan].argmax(0)
    return classes


def _first_maximum_torch(logits: torch.Tensor, rows: int) -> torch.Tensor:
    """(K, h, w) -> (h, w): K minus the first class reaching each pixel's maximum (0: none does)."""
    k = logits.shape[0]
    weight_type = torch.uint8 if k <= 255 else torch.int16 if k <= 32767 else torch.int64
    weights = torch.arange(k, 0, -1, dtype=weight_type, device=logits.device).view(k, 1, 1)
    first = torch.empty(logits.shape[1:], dtype=weight_type, device=logits.device)
    for top in range(0, logits.shape[1], rows):
        band = logits[:, top : top + rows]
        reached = band == torch.amax(band, 0)  # (K, rows, w)
        torch.amax(reached.to(weight_type).mul_(weights), 0, out=first[top : top + rows])
    return first


def _first_maximum_numpy(logits: np.ndarray, rows: int) -> np.ndarray:
    """``_first_maximum_torch`` in numpy, into buffers allocated once."""
    k, h, w = logits.shape
    weight_type = np.uint8 if k <= 255 else np.int16 if k <= 32767 else np.int64
    weights = np.arange(k, 0, -1, dtype=weight_type).reshape(k, 1, 1)
    first = np.empty((h, w), weight_type)
    maximum = np.empty((rows, w), logits.dtype)
    reached, weighted = np.empty((k, rows, w), bool), np.empty((k, rows, w), weight_type)
    for top in range(0, h, rows):
        band = logits[:, top : top + rows]
        n = band.shape[1]
        np.max(band, axis=0, out=maximum[:n])
        np.equal(band, maximum[:n], out=reached[:, :n])
        np.multiply(reached[:, :n], weights, out=weighted[:, :n])
        np.max(weighted[:, :n], axis=0, out=first[top : top + n])
    return first


def _on_one_thread(function: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """Run ``function`` with one torch thread. Class maps are many small operations: on a busy CPU (the
    evaluate stage's own loader workers suffice) each one split over threads waits for a descheduled
    thread, which made it much slower than one thread."""

    @functools.wraps(function)
    def wrapper(*args: object, **kwargs: object) -> torch.Tensor:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return function(*args, **kwargs)
        finally:
            torch.set_num_threads(threads)

    return wrapper


@_on_one_thread
def upsampled_argmax(
    logits: torch.Tensor, size: tuple[int, int], rows: int = 256, chunk: int = 2048
) -> torch.Tensor:
    """(K, h, w) logits -> (H, W) int64 argmax of their bilinear upsampling to ``size`` (align_corners=False),
    without upsampling K maps.

    Bilinear upsampling blends each output pixel from its four nearest input pixels (one 2x2 cell of the
    input) with non-negative weights. Where those four share their argmax c, c is also the argmax of the
    blend: it beats every other class at each corner, so in every weighted mean of them. Which cells are
    uniform is known from the (h, w) argmax; only the output pixels of mixed cells (near a class
    boundary) are blended from the corners' K logits, ``chunk`` at a time (each (K, chunk) blend then
    stays in cache); the output is built ``rows`` rows at a time. Memory stays bounded by the band and
    the chunk, whatever K and the photo's size (an upsampled stack of 81 classes at 6000x4000 is 7.8 GB),
    and time follows the boundaries.
    """
    y0, y1, wy = _source_pixels(logits.shape[1], size[0], logits.device)
    x0, x1, wx = _source_pixels(logits.shape[2], size[1], logits.device)
    low = argmax_classes(logits)
    low = low.to(torch.int16) if logits.shape[0] <= 32767 else low
    mixed_cells = _mixed_cells(low)
    classes = torch.empty(size, dtype=torch.int64, device=logits.device)
    flat = logits.flatten(1)  # (K, h*w): each class's plane, gathered from along its contiguous row
    for top in range(0, size[0], rows):
        band = slice(top, top + rows)
        classes[band] = low.index_select(0, y0[band]).index_select(1, x0)
        mixed = mixed_cells.index_select(0, y0[band]).index_select(1, x0).nonzero()
        for part in mixed.split(chunk):
            r, c = part[:, 0] + top, part[:, 1]
            blend = _blend(flat, logits.shape[2], (y0[r], y1[r], wy[r]), (x0[c], x1[c], wx[c]))  # (K, n)
            classes[r, c] = argmax_classes(blend[:, None])[0]
    return classes


@_on_one_thread
def nearest_argmax(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(K, h, w) logits -> (H, W) int64: the argmax at the model's size, then each output pixel takes the
    class of the input pixel its centre falls in (``F.interpolate``'s "nearest-exact"). Differs from
    ``upsampled_argmax`` only along class boundaries, by at most about one input pixel; its cost does
    not depend on how many boundaries there are."""
    rows = _nearest_pixels(logits.shape[1], size[0], logits.device)
    columns = _nearest_pixels(logits.shape[2], size[1], logits.device)
    return argmax_classes(logits).index_select(0, rows).index_select(1, columns)


UPSAMPLING = {"exact": upsampled_argmax, "nearest": nearest_argmax}  # evaluate.upsample's choices


def _nearest_pixels(size_in: int, size_out: int, device: torch.device) -> torch.Tensor:
    centres = (torch.arange(size_out, device=device, dtype=torch.float64) + 0.5) * (size_in / size_out)
    return centres.floor().long().clamp(max=size_in - 1)


def _mixed_cells(low: torch.Tensor) -> torch.Tensor:
    """(h, w) class ids -> (h, w) bool: whether the 2x2 cell from each pixel down and right holds more than
    one class (the last row and column pair with themselves, as the clamped source pixels do)."""
    right = torch.cat([low[:, 1:], low[:, -1:]], 1)
    down = torch.cat([low[1:], low[-1:]], 0)
    diagonal = torch.cat([right[1:], right[-1:]], 0)
    return (low != right) | (low != down) | (low != diagonal)


def _blend(
    flat: torch.Tensor, width: int, ys: tuple[torch.Tensor, ...], xs: tuple[torch.Tensor, ...]
) -> torch.Tensor:
    """(K, n) bilinear blend of (K, h*w) logits at n points, given each point's two rows, two columns and
    the second row's and column's weights (the same float operations as torch's bilinear kernel)."""
    (ya, yb, ly), (xa, xb, lx) = ys, xs
    ya, yb = ya * width, yb * width
    top = flat.index_select(1, ya + xa) * (1 - lx) + flat.index_select(1, ya + xb) * lx
    bottom = flat.index_select(1, yb + xa) * (1 - lx) + flat.index_select(1, yb + xb) * lx
    return top * (1 - ly) + bottom * ly


def _source_pixels(size_in: int, size_out: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    """For each output index: the two input indices it is blended from, and the second one's weight."""
    src = (torch.arange(size_out, device=device, dtype=torch.float32) + 0.5) * (size_in / size_out) - 0.5
    src = src.clamp(min=0)
    first = src.floor().long().clamp(max=size_in - 1)
    return first, (first + 1).clamp(max=size_in - 1), src - first

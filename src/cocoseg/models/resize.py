"""Bilinear resizing and adaptive average pooling whose gradients are matrix products.

Both are separable linear maps: per image and channel, ``y = A @ x @ B.T`` with a fixed (out, in)
weight matrix for the height (A) and one for the width (B). The forward pass is PyTorch's own
``F.interpolate`` / ``F.adaptive_avg_pool2d``, unchanged. The backward pass is ``A.T @ grad @ B``, two
matrix products, instead of PyTorch's CUDA backward kernels, which scatter every output gradient into
the input with atomic adds:

- those kernels have no deterministic version (``torch.use_deterministic_algorithms`` lists bilinear
  ``interpolate`` and ``AdaptiveAvgPool2d`` among the CUDA backward passes it refuses), while matrix
  products run in a fixed order, so these two are no obstacle to reproducible training on a GPU;
- for Fast-SCNN's last layer, 81 class maps upsampled 8x (340 M values for 16 images of 512 px), the
  atomic adds pile onto few input cells (about 256 adds each: 64 outputs per cell, 4 cells per output)
  and accumulate in bf16; the products read the gradient once, accumulate in float32 (cuBLAS) and
  round twice, once each.

The weights are those PyTorch uses (``align_corners=False``; the bins of adaptive pooling), made once
per size, dtype and device (backward passes only run in training, at a fixed size) and built afresh
inside ``torch.compile``'s tracing. Channels-last gradients stay channels-last.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def resize_bilinear(x: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """``F.interpolate(x, size, mode="bilinear", align_corners=False)``, with a matrix-product backward."""
    if _plain_op(x):
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    return _SeparableLinear.apply(x, tuple(size), "bilinear")


def adaptive_avg_pool(x: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """``F.adaptive_avg_pool2d(x, size)``, with a matrix-product backward."""
    if _plain_op(x):
        return F.adaptive_avg_pool2d(x, size)
    return _SeparableLinear.apply(x, tuple(size), "pool")


def _plain_op(x: torch.Tensor) -> bool:
    """PyTorch's own op, where no backward pass will run (inference) or the model is being exported.

    The forward pass is the same op either way, so the outputs are the same bits. Export needs it:
    ``torch.jit.trace`` fails with ``unordered_map::at`` on a custom autograd Function given sizes read
    from a traced tensor's shape (``x.shape[-2:]``, as every resize here), and ONNX and TorchScript have
    no place for a Python backward anyway.
    """
    if torch.compiler.is_compiling():  # torch.compile traces the Function as it did before
        return False
    exporting = torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()
    return exporting or not (torch.is_grad_enabled() and x.requires_grad)


def bilinear_weights(
    n_in: int, n_out: int, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None
) -> torch.Tensor:
    """(n_out, n_in): output i = sum_j w[i, j] * input j, as bilinear resizing with
    ``align_corners=False`` samples one axis (source position (i + 0.5) * n_in / n_out - 0.5, clamped
    to the first and last input; each output mixes the two inputs around it)."""
    src = (torch.arange(n_out, dtype=torch.float64, device=device) + 0.5) * (n_in / n_out) - 0.5
    src = src.clamp(0, n_in - 1)
    distance = (src[:, None] - torch.arange(n_in, dtype=torch.float64, device=device)[None, :]).abs()
    return (1 - distance).clamp_(min=0).to(dtype)


def pool_weights(
    n_in: int, n_out: int, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None
) -> torch.Tensor:
    """(n_out, n_in): adaptive average pooling of one axis; bin i averages the inputs
    floor(i * n_in / n_out) to ceil((i + 1) * n_in / n_out) - 1, as PyTorch's bins do."""
    i = torch.arange(n_out, device=device)
    start = torch.div(i * n_in, n_out, rounding_mode="floor")
    end = -torch.div(-(i + 1) * n_in, n_out, rounding_mode="floor")  # ceil
    j = torch.arange(n_in, device=device)[None, :]
    inside = (j >= start[:, None]) & (j < end[:, None])
    return (inside.to(torch.float64) / (end - start)[:, None].to(torch.float64)).to(dtype)


_WEIGHTS = {"bilinear": bilinear_weights, "pool": pool_weights}
_MADE: dict[tuple, torch.Tensor] = {}


def _weights(kind: str, n_in: int, n_out: int, like: torch.Tensor) -> torch.Tensor:
    if torch.compiler.is_compiling():  # traced into the graph, not taken from outside it
        return _WEIGHTS[kind](n_in, n_out, like.dtype, like.device)
    key = (kind, n_in, n_out, like.dtype, like.device)
    if key not in _MADE:
        _MADE[key] = _WEIGHTS[kind](n_in, n_out, like.dtype, like.device)
    return _MADE[key]


class _SeparableLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, size: tuple[int, int], kind: str) -> torch.Tensor:  # type: ignore[override]
        ctx.kind, ctx.in_size = kind, tuple(x.shape[-2:])
        ctx.channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        if kind == "bilinear":
            return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return F.adaptive_avg_pool2d(x, size)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:  # type: ignore[override]
        (h, w), (out_h, out_w) = ctx.in_size, grad.shape[-2:]
        a = _weights(ctx.kind, h, out_h, grad)  # (out_h, h)
        b = _weights(ctx.kind, w, out_w, grad)  # (out_w, w)
        n, k = grad.shape[:2]
        if ctx.channels_last:  # the input's gradient in the input's layout
            g = grad.permute(0, 2, 3, 1).contiguous()  # (n, out_h, out_w, k): a view if grad is channels-last
            rows = torch.matmul(a.t(), g.reshape(n, out_h, out_w * k))  # (n, h, out_w * k)
            cells = torch.matmul(b.t(), rows.reshape(n * h, out_w, k))  # (n * h, w, k)
            return cells.reshape(n, h, w, k).permute(0, 3, 1, 2), None, None
        cols = torch.matmul(grad.contiguous(), b)  # (n, k, out_h, w)
        return torch.matmul(a.t(), cols), None, None  # (n, k, h, w)

"""The training loss: cross-entropy plus soft Dice, for multiclass segmentation with an ignore label.

``loss = CE + dice_weight * (1 - mean Dice over the classes present in the batch's truth)``

Both terms are computed in one ``torch.autograd.Function`` with a hand-written gradient, because the
logits (N x K x H x W) are the largest tensor of a step and the loss is memory-bound: one float32
softmax is made and kept, the per-class sums come from gathers and ``index_add`` over the labels (no
one-hot, which is also why segmentation-models-pytorch's DiceLoss is not used), and nothing reads a
value back to the host, so a CUDA step never waits for the GPU.

The arithmetic runs in float32 (float64 for float64 logits) whatever the autocast state, and every
reduction runs in a fixed order on the CPU, so CPU training stays bit-identical for a seed.
``index_add`` and ``scatter_add`` have deterministic CUDA kernels when deterministic algorithms are on.
"""

from __future__ import annotations

from typing import Any

import torch


def _per_class(values: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Sum of ``values`` per label. Each image row adds into its own K bins, then the rows are summed:
    on CUDA one ``index_add`` into only K bins makes every pixel's atomic add wait on the others; on the
    CPU the adds run in order, so sums are reproducible."""
    rows = labels.shape[0] * labels.shape[1]  # (N, H, W) labels: N x H rows
    flat = labels.reshape(rows, -1)
    offsets = torch.arange(rows, device=labels.device).mul_(num_classes).unsqueeze(1)
    bins = values.new_zeros(rows * num_classes).index_add_(0, (flat + offsets).flatten(), values.flatten())
    return bins.view(rows, num_classes).sum(0)


def _class_sums(
    probs: torch.Tensor, p_true: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor, dim: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per class ``dim`` over valid pixels: intersection, cardinality and pixel count.

    ``probs`` is already zero at void pixels; ``labels`` holds 0 there, ``valid`` 0.0.
    """
    num_classes = probs.shape[dim]
    labels, p_true, valid = labels.squeeze(dim), p_true.squeeze(dim), valid.squeeze(dim)  # (N, H, W)
    intersection = _per_class(p_true * valid, labels, num_classes)
    counts = _per_class(valid.long(), labels, num_classes).to(probs.dtype)  # integers: exact in any order
    cardinality = probs.sum(dim=[d for d in range(probs.dim()) if d != dim]) + counts
    return intersection, cardinality, counts


def _class_dot(probs: torch.Tensor, b: torch.Tensor, dim: int) -> torch.Tensor:
    """sum_k probs_k b_k per pixel, keeping a size-1 class dimension; one read of ``probs``."""
    if dim == probs.dim() - 1:
        return torch.matmul(probs, b).unsqueeze(dim)
    return torch.matmul(b, probs.flatten(2)).view(probs.shape[0], 1, *probs.shape[2:])


class _CrossEntropyDice(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        logits: torch.Tensor,
        target: torch.Tensor,
        dim: int,
        dice_weight: float,
        ignore_index: int,
        eps: float,
    ) -> torch.Tensor:
        dtype = torch.promote_types(logits.dtype, torch.float32)
        with torch.autocast(logits.device.type, enabled=False):
            valid_mask = (target != ignore_index).unsqueeze(dim)
            labels = target.unsqueeze(dim).where(valid_mask, 0)
            valid = valid_mask.to(dtype)
            probs = torch.log_softmax(logits, dim=dim, dtype=dtype)
            log_p_true = probs.gather(dim, labels)
            probs.exp_().mul_(valid)  # the softmax, zero at void pixels; kept for the backward pass
            p_true = log_p_true.exp()
            intersection, cardinality, counts = _class_sums(probs, p_true, labels, valid, dim)
            n_valid = counts.sum().clamp(min=1)
            cross_entropy = -(log_p_true * valid).sum() / n_valid
            present = (counts > 0).to(dtype)  # absent classes carry no signal
            n_present = present.sum().clamp(min=1)
            dice = (2 * intersection + eps) / (cardinality + eps)
            dice_loss = (present.sum() > 0).to(dtype) - (dice * present).sum() / n_present
            # d(1 - mean Dice)/dp_k = a_k [k is the truth] + b_k, on valid pixels of present classes
            a = -2 * dice_weight * present / (n_present * (cardinality + eps))
            b = dice_weight * present * (2 * intersection + eps) / (n_present * (cardinality + eps) ** 2)
        ctx.save_for_backward(probs, p_true, labels, valid, a, b, n_valid)
        ctx.dim, ctx.logits_dtype = dim, logits.dtype
        return cross_entropy + dice_weight * dice_loss

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        """dL/dz_j = p_j (g_j - sum_k p_k g_k) with g = dL/dp, written out for CE and Dice.

        Per valid pixel with truth y: p_j (1/M + b_j - a_y p_y - q) + [j = y] (a_y p_y - 1/M),
        q = sum_k p_k b_k, M = valid pixels (a and b already carry dice_weight).
        """
        probs, p_true, labels, valid, a, b, n_valid = ctx.saved_tensors
        dim = ctx.dim
        with torch.autocast(probs.device.type, enabled=False):
            scale = grad_output.to(probs.dtype)
            shape = [1] * probs.dim()
            shape[dim] = -1  # b as a vector along the class dimension
            a_true = a[labels] * p_true
            grad = probs * (valid * scale * (1 / n_valid - a_true - _class_dot(probs, b, dim)))
            grad.scatter_add_(dim, labels, valid * scale * (a_true - 1 / n_valid))  # cancels in float32
            # the last term writes the logits' dtype directly (computed in float32, rounded once)
            out = torch.addcmul(
                grad, probs, (b * scale).view(shape), out=torch.empty_like(grad, dtype=ctx.logits_dtype)
            )
        return out, None, None, None, None, None


def cross_entropy_dice(
    logits: torch.Tensor,
    target: torch.Tensor,
    dice_weight: float = 0.5,
    ignore_index: int = 255,
    eps: float = 1e-6,
) -> torch.Tensor:
    """CE + dice_weight * (1 - mean Dice of present classes); (N, K, H, W) logits, (N, H, W) int labels.

    Void pixels (``ignore_index``) count in neither term; a batch with no valid pixel gives 0.
    Channels-last logits (CUDA's layout here) are worked on as (N, H, W, K), so that every pass over
    them reads memory in order and the softmax runs over the innermost dimension.
    """
    if (
        logits.dim() == 4
        and not logits.is_contiguous()
        and logits.is_contiguous(memory_format=torch.channels_last)
    ):
        return _CrossEntropyDice.apply(
            logits.permute(0, 2, 3, 1), target, 3, float(dice_weight), ignore_index, eps
        )
    return _CrossEntropyDice.apply(logits, target, 1, float(dice_weight), ignore_index, eps)

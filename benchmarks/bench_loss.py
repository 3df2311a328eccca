"""The train loss alone: the fused CE + soft Dice (``training.losses``) against the same loss written
with plain autograd ops (a float one-hot, two softmaxes), forward + backward, side by side.

    python benchmarks/bench_loss.py [--device cuda] [--shape 16 81 512 512] [--repeat 10]

Prints ms per call (best of --repeat, the two alternated) and the ratio; on CUDA also peak memory.
Logits are bf16 channels-last on CUDA (what the train step hands the loss), float32 NCHW on the CPU.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from cocoseg.core.layout import VOID
from cocoseg.training.losses import cross_entropy_dice


def autograd_loss(
    logits: torch.Tensor, target: torch.Tensor, dice_weight: float, eps: float = 1e-6
) -> torch.Tensor:
    """The formulation the fused loss replaced (CE, then Dice through a one-hot of the logits' size)."""
    valid = (target != VOID).unsqueeze(1)
    probs = logits.float().softmax(dim=1) * valid
    one_hot = torch.zeros_like(probs).scatter_(1, target.where(valid.squeeze(1), 0).unsqueeze(1), 1.0) * valid
    dims = (0, 2, 3)
    dice = (2 * (probs * one_hot).sum(dims) + eps) / (probs.sum(dims) + one_hot.sum(dims) + eps)
    present = one_hot.sum(dims) > 0
    return F.cross_entropy(logits, target, ignore_index=VOID) + dice_weight * (1 - dice[present].mean())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--shape", type=int, nargs=4, default=[8, 81, 128, 128], metavar=("N", "K", "H", "W"))
    parser.add_argument("--dice-weight", type=float, default=0.5)
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    device, (n, k, h, w) = torch.device(args.device), args.shape
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(n, k, h, w, generator=gen) * 3
    target = torch.randint(0, k, (n, h, w), generator=gen)
    target[torch.rand(n, h, w, generator=gen) < 0.05] = VOID
    if device.type == "cuda":
        logits = logits.to(device, torch.bfloat16).contiguous(memory_format=torch.channels_last)
    logits, target = logits.to(device), target.to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    variants = {"autograd": autograd_loss, "fused": cross_entropy_dice}
    best = {name: float("inf") for name in variants}
    peak = {}
    for _ in range(args.repeat):
        for name, loss_fn in variants.items():
            z = logits.detach().requires_grad_()
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            sync()
            start = time.perf_counter()
            loss_fn(z, target, args.dice_weight).backward()
            sync()
            best[name] = min(best[name], time.perf_counter() - start)
            peak[name] = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    print(f"device {device}, logits {list(logits.shape)} {logits.dtype}, threads {torch.get_num_threads()}")
    for name in variants:
        print(f"  {name:8s} {best[name] * 1e3:8.1f} ms   peak {peak[name]:.2f} GiB")
    print(f"  fused is {best['autograd'] / best['fused']:.2f}x faster")


if __name__ == "__main__":
    main()

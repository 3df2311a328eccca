"""Where a training step's GPU time goes: the top kernels and operators of one model's step, profiled.

The step is the input benchmark's (``bench_train_input.make_step``: ``prepare_batch``, forward, the loss,
backward, fused AdamW), built with the train stage's speed flags for ``train.deterministic: false``, on
batches already on the device (uint8 images and masks of random classes: the kernels do not depend on
the pixels). After warm-up steps, ``--steps`` steps run under ``torch.profiler``; it prints the GPU time
per step and the operators and kernels that take the most of it.

    python benchmarks/profile_step.py --model fastscnn [--classes 81] [--image-size 512 512] [--batch 16]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import torch
from bench_train_input import apply_speed_flags, make_step
from torch.profiler import ProfilerActivity, profile

from cocoseg.core.params import load_params
from cocoseg.training.module import SegmentationModule
from cocoseg.training.train import trainer_speed_flags


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--model", default="fastscnn")
    parser.add_argument("--classes", type=int, default=81)
    parser.add_argument("--image-size", type=int, nargs=2, default=[512, 512])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    params = load_params(args.params)
    cfg, model = replace(params.train, deterministic=False), params.model(args.model)
    device = torch.device(args.device)
    flags = trainer_speed_flags(cfg, device.type == "cuda")
    apply_speed_flags(flags)
    module = (
        SegmentationModule(
            model.arch,
            args.classes,
            model.encoder,
            model.encoder_weights,
            model.lr or cfg.lr,
            cfg.weight_decay,
            cfg.dice_weight,
            dict(model.options),
            flags["channels_last"],
        )
        .to(device)
        .train()
    )
    optimizer = torch.optim.AdamW(
        module.parameters(), lr=model.lr or cfg.lr, fused=device.type == "cuda" or None
    )
    step = make_step(module, optimizer, device, device.type == "cuda")
    g = torch.Generator().manual_seed(0)
    h, w = args.image_size
    batch = (
        torch.randint(0, 256, (args.batch, h, w, 3), dtype=torch.uint8, generator=g).to(device),
        torch.randint(0, args.classes, (args.batch, h, w), dtype=torch.uint8, generator=g).to(device),
    )
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(5):
        step(batch)
    sync()
    start = time.perf_counter()
    for _ in range(args.steps):
        step(batch)
    sync()
    seconds = (time.perf_counter() - start) / args.steps
    print(
        f"{args.model}: {args.batch / seconds:.1f} img/s unprofiled ({seconds * 1e3:.2f} ms a step), "
        f"{args.classes} classes, {h}x{w}, batch {args.batch}, {device}"
    )

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(args.steps):
            step(batch)
        sync()
    key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    events = prof.key_averages()
    total = sum(getattr(e, key) for e in events)
    print(
        f"profiled: {total / args.steps / 1e3:.2f} ms of {'GPU' if device.type == 'cuda' else 'CPU'} time a step "
        f"(self times summed); top {args.top}:"
    )
    for e in sorted(events, key=lambda e: -getattr(e, key))[: args.top]:
        share = getattr(e, key) / total if total else 0.0
        print(
            f"  {share:6.1%} {getattr(e, key) / args.steps / 1e3:8.3f} ms/step {e.count // args.steps:4d}x  {e.key[:110]}"
        )


if __name__ == "__main__":
    main()

"""Does the training input pipeline starve the model? Training images/s, real loader vs tensors in memory.

Per model of params.yaml, built as the train stage builds it (SegmentationModule with the model's arch,
encoder and lr, train.weight_decay and dice_weight, image_size and batch_size; AdamW; deterministic
algorithms as train.deterministic; torch's default threads), one optimisation step (zero_grad, forward,
``module.loss``, backward, AdamW step) is timed in a plain loop, not the Lightning Trainer, fed by
- the real pipeline: ``SegmentationDataModule(...).train_dataloader()``, once per ``--workers`` value
  (default: train.workers and 0), iterated epoch after epoch as Lightning does (persistent workers);
- tensors in memory: ``--steps`` batches drawn once from the first of those loaders into a list.
The ``--steps`` timed steps per variant are split into ``--rounds`` blocks, alternated in a rotating
order. Each block starts with 2 untimed warm-up steps plus, for a loader with workers, one per batch
its prefetch buffer holds (workers x prefetch_factor), made for free while another variant ran; blocks
are 1 s apart so that background prefetch is done. "wait": share of the time spent in ``next()``.
images/s: median over a variant's blocks, since other processes on a shared 2-core machine stall
torch's threads in bursts (per-block figures and the load average are printed as a noise check). With
the defaults a block is 6 steps = one epoch of the sample (49 images, batch 8, drop_last), so each
block holds one epoch start, where a loader with workers restarts its prefetch.
ratio = real / in memory (target >= 0.9).

    .venv/bin/python benchmarks/bench_train_input.py [--models unet fastscnn] [--steps 30]
        [--rounds 5] [--workers 2 0] [--params params.yaml] [--coco data/coco] [--masks data/masks]
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import lightning as L
import torch
from torch.utils.data import DataLoader

from cocoseg.core.params import Params, load_params
from cocoseg.core.splits import load_split
from cocoseg.training.data import SegmentationDataModule
from cocoseg.training.module import SegmentationModule

Batch = tuple[torch.Tensor, torch.Tensor]
Blocks = dict[str, list[tuple[float, float, int]]]  # variant -> per block (seconds, wait, images)
WARMUP = 2


def cycle(loader: DataLoader) -> Iterator[Batch]:
    """Endless batches, epoch after epoch; a persistent-worker loader keeps its workers between epochs."""
    while True:
        yield from loader


def train_step(module: SegmentationModule, optimizer: torch.optim.Optimizer, batch: Batch) -> None:
    images, target = batch  # (N, 3, H, W) float, (N, H, W) long
    optimizer.zero_grad(set_to_none=True)
    module.loss(module(images), target).backward()
    optimizer.step()


def run_block(module: SegmentationModule, optimizer: torch.optim.Optimizer, batches: Iterator[Batch],
              warmup: int, steps: int) -> tuple[float, float]:
    """(seconds, seconds waiting on ``next``) for ``steps`` timed steps after ``warmup`` untimed ones."""
    for _ in range(warmup):
        train_step(module, optimizer, next(batches))
    wait, start = 0.0, time.perf_counter()
    for _ in range(steps):
        t = time.perf_counter()
        batch = next(batches)
        wait += time.perf_counter() - t
        train_step(module, optimizer, batch)
    return time.perf_counter() - start, wait


def bench_model(params: Params, name: str, args: argparse.Namespace) -> Blocks:
    """Variant -> per block (seconds, seconds waiting on the loader, images), for one model."""
    cfg, model_cfg = params.train, params.model(name)
    batch_size = model_cfg.batch_size or cfg.batch_size
    L.seed_everything(params.base.seed, workers=True, verbose=False)
    torch.use_deterministic_algorithms(cfg.deterministic)
    dms = {f"w={w}": SegmentationDataModule(args.coco, args.masks, cfg.image_size, batch_size, w, cfg.hflip,
                                            cfg.scale) for w in args.workers}
    loaders = {key: dm.train_dataloader() for key, dm in dms.items()}
    first = f"w={args.workers[0]}"
    module = SegmentationModule(model_cfg.arch, dms[first].num_classes, model_cfg.encoder,
                                model_cfg.encoder_weights, model_cfg.lr or cfg.lr, cfg.weight_decay,
                                cfg.dice_weight).train()
    optimizer = torch.optim.AdamW(module.parameters(), lr=model_cfg.lr or cfg.lr,
                                  weight_decay=cfg.weight_decay)

    feeds = {key: cycle(loader) for key, loader in loaders.items()}
    warmups = {key: WARMUP + loader.num_workers * (loader.prefetch_factor or 0)
               for key, loader in loaders.items()}
    memory = [next(feeds[first]) for _ in range(args.steps)]  # materialised once, from the same loader
    feeds["memory"], warmups["memory"] = itertools.cycle(memory), WARMUP

    per_block = [args.steps // args.rounds + (r < args.steps % args.rounds) for r in range(args.rounds)]
    blocks: Blocks = {key: [] for key in feeds}
    order = list(feeds)
    for r, steps in enumerate(per_block):
        for key in order[r % len(order):] + order[:r % len(order)]:  # rotate who goes first
            time.sleep(1.0)  # let background prefetch of the previous block settle
            seconds, wait = run_block(module, optimizer, feeds[key], warmups[key], steps)
            blocks[key].append((seconds, wait, steps * batch_size))
    return blocks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--coco", type=Path, default=Path("data/coco"))
    parser.add_argument("--masks", type=Path, default=Path("data/masks"))
    parser.add_argument("--models", nargs="+", help="keys of the models section (default: all)")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per variant and model")
    parser.add_argument("--rounds", type=int, default=5, help="blocks the steps are split into, alternated")
    parser.add_argument("--workers", type=int, nargs="+", help="DataLoader workers to compare "
                        "(default: train.workers and 0); the in-memory batches come from the first")
    args = parser.parse_args()
    params = load_params(args.params)
    args.workers = list(dict.fromkeys(args.workers or [params.train.workers, 0]))
    models = args.models or list(params.models)
    for name in models:
        params.model(name)  # unknown names fail before any timing
    if not 1 <= args.rounds <= args.steps:
        parser.error("--rounds must be between 1 and --steps")

    print(f"cpus {os.cpu_count()}, torch {torch.__version__} threads {torch.get_num_threads()} "
          f"(DataLoader workers run torch with 1), cv2 threads {cv2.getNumThreads()} (workers too); "
          f"{len(load_split(args.masks)['train'])} train images, image_size {list(params.train.image_size)}, "
          f"{args.steps} timed steps per variant in {args.rounds} alternated blocks; "
          f"load avg {os.getloadavg()[0]:.1f} (other processes share these cores)")
    keys = [f"w={w}" for w in args.workers]
    header = (["model", "batch"] + [f"{k} img/s (wait)" for k in keys] + ["memory img/s"]
              + [f"{k}/mem" for k in keys])
    rows = []
    for name in models:
        blocks = bench_model(params, name, args)
        rate = {k: statistics.median(b[2] / b[0] for b in v) for k, v in blocks.items()}
        wait = {k: sum(b[1] for b in v) / sum(b[0] for b in v) for k, v in blocks.items()}
        batch = params.model(name).batch_size or params.train.batch_size
        rows.append([name, str(batch)] + [f"{rate[k]:.1f} ({wait[k]:.0%})" for k in keys]
                    + [f"{rate['memory']:.1f}"] + [f"{rate[k] / rate['memory']:.2f}" for k in keys])
        print(f"  {name}: img/s per block (noise check), load avg {os.getloadavg()[0]:.1f}: " + "; ".join(
            f"{k} " + " ".join(f"{b[2] / b[0]:.1f}" for b in v) for k, v in blocks.items()), flush=True)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    for line in [header] + rows:
        print("  ".join(cell.rjust(w) for cell, w in zip(line, widths)))


if __name__ == "__main__":
    main()

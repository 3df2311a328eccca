"""Does the input pipeline keep the device busy? Training images/s: GPU-resident, DataLoader-fed, DataLoader alone.

Per model of params.yaml, built as the train stage builds it (SegmentationModule with the model's arch,
encoder and lr, train.weight_decay and dice_weight; the train stage's speed flags for the device:
``trainer_speed_flags``, i.e. determinism, cuDNN autotuning, channels-last; AdamW, fused on CUDA;
bf16 autocast on CUDA unless --precision 32), one optimisation step (``prepare_batch`` on the device,
forward, ``module.loss``, backward, AdamW step) is timed in a plain loop, not the Lightning Trainer:
- fed: ``SegmentationDataModule(...).train_dataloader()`` (uint8, pinned on CUDA), once per
  ``--workers`` value, iterated epoch after epoch as Lightning does (persistent workers), each batch
  copied to the device (non-blocking) as Lightning does;
- resident: ``--steps`` batches drawn once from the first of those loaders, already on the device;
- alone: the DataLoader without a model, img/s, and the CPU time its worker processes spent per image
  (from /proc; the main process's share, which receives and pins the batches, is printed beside it).
The ``--steps`` timed steps per variant are split into ``--rounds`` blocks, alternated in a rotating
order. Each block starts with 2 untimed warm-up steps plus, for a loader with workers, one per batch
its prefetch buffer holds (workers x prefetch_factor), made while another variant ran; blocks are
``--settle`` s apart so that background prefetch is done. "wait": share of the time spent in ``next()``.
img/s: median over a variant's blocks (per-block figures and the load average are printed as a noise
check). ratio = fed / resident (targets: >= 0.9 on the CPU, >= 0.95 on a GPU).

    python benchmarks/bench_train_input.py [--models unet fastscnn] [--device cuda] [--image-size 512 512]
        [--batch 16] [--workers 8 16] [--steps 30] [--rounds 5] [--replicate 8] [--compile]
        [--params params.yaml] [--coco data/coco] [--masks data/masks]

``--large-photos`` measures something else, side by side: the CPU time the training loader spends per
image (one process, OpenCV on one thread, as in a loader worker: read, decode, augment, collate; no
model) on COCO's own photos and on the same photos made 2048x1536 (benchmarks/large_photos.py), at
``--image-size``, the masks of both made first by the masks stage's code (its time is printed too).
Three ways of reading each: ``whole`` (decoded at full size, as before this option existed),
``reduced`` (a JPEG over a megapixel decoded at 1/2, 1/4 or 1/8 scale), ``reduced+kept`` (the reduced
pair kept after its first read, training/decoded.py: its first epoch is ``cold``, the rest read what
was kept). ``--rounds`` epochs per variant, alternated; the fastest epoch is printed with its ratio to
COCO's, and the median; then what a training run of params.yaml's ``train.epochs`` pays per image on
average (the cold epoch once, the steady median after it), for one model and for every model of
params.yaml (the kept pairs serve them all):

    python benchmarks/bench_train_input.py --large-photos --image-size 512 512 [--photos DIR] [--rounds 5]
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from pathlib import Path

import cv2
import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from cocoseg.core.params import Params, load_params
from cocoseg.core.splits import load_split
from cocoseg.training.data import EpochShuffle, SegmentationDataModule, SegmentationDataset, resolve_workers
from cocoseg.training.module import SegmentationModule
from cocoseg.training.train import trainer_speed_flags

Batch = tuple[torch.Tensor, torch.Tensor]
Blocks = dict[str, list[tuple[float, float, int]]]  # variant -> per block (seconds, wait, images)
WARMUP = 2
TICK = os.sysconf("SC_CLK_TCK")


def cycle(loader: DataLoader) -> Iterator[Batch]:
    """Endless batches, epoch after epoch; a persistent-worker loader keeps its workers between epochs."""
    while True:
        yield from loader


def worker_cpu_seconds(loader: DataLoader) -> float:
    """User + system CPU seconds of the loader's live worker processes so far (Linux /proc)."""
    total = 0
    for worker in getattr(getattr(loader, "_iterator", None), "_workers", []):
        with open(f"/proc/{worker.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICK


def apply_speed_flags(flags: dict) -> None:
    """What Lightning's Trainer does with ``deterministic`` and ``benchmark``."""
    det = flags["deterministic"]
    torch.use_deterministic_algorithms(bool(det), warn_only=det == "warn")
    torch.backends.cudnn.benchmark = bool(flags["benchmark"])
    if det:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def make_step(
    module: SegmentationModule, optimizer: torch.optim.Optimizer, device: torch.device, bf16: bool
) -> Callable[[Batch], None]:
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if bf16 else nullcontext

    def step(batch: Batch) -> None:
        images, target = module.prepare_batch(tuple(t.to(device, non_blocking=True) for t in batch))
        optimizer.zero_grad(set_to_none=True)
        with autocast():
            loss = module.loss(module(images), target)
        loss.backward()
        optimizer.step()

    return step


def run_block(
    step: Callable[[Batch], None], batches: Iterator[Batch], warmup: int, steps: int, sync: Callable[[], None]
) -> tuple[float, float]:
    """(seconds, seconds waiting on ``next``) for ``steps`` timed steps after ``warmup`` untimed ones."""
    for _ in range(warmup):
        step(next(batches))
    sync()
    wait, start = 0.0, time.perf_counter()
    for _ in range(steps):
        t = time.perf_counter()
        batch = next(batches)
        wait += time.perf_counter() - t
        step(batch)
    sync()
    return time.perf_counter() - start, wait


def time_alone(loader: DataLoader, feed: Iterator[Batch], batches: int) -> tuple[float, float, float]:
    """(img/s, worker CPU ms per image, main-process CPU ms per image) of the loader without a model.

    At least 4 prefetch buffers' worth of batches are timed, so that the figure is the workers' steady
    rate, not a buffer being emptied.
    """
    batches = max(batches, 4 * loader.num_workers * (loader.prefetch_factor or 0))
    for _ in range(loader.num_workers * (loader.prefetch_factor or 0) + 1):
        next(feed)  # workers started; what was prefetched is not counted
    cpu, main, start = worker_cpu_seconds(loader), time.process_time(), time.perf_counter()
    images = sum(next(feed)[0].shape[0] for _ in range(batches))
    seconds = time.perf_counter() - start
    workers_ms = (worker_cpu_seconds(loader) - cpu) * 1e3 / images if loader.num_workers else float("nan")
    return images / seconds, workers_ms, (time.process_time() - main) * 1e3 / images


def build(params: Params, name: str, args: argparse.Namespace, device: torch.device) -> tuple:
    """(loaders per variant, module, optimizer) for one model, as the train stage builds them."""
    cfg, model_cfg = params.train, params.model(name)
    batch_size = args.batch or model_cfg.batch_size or cfg.batch_size
    L.seed_everything(params.base.seed, workers=True, verbose=False)
    flags = trainer_speed_flags(cfg, device.type == "cuda")
    apply_speed_flags(flags)
    loaders = {}
    for w in args.workers:
        dm = SegmentationDataModule(
            args.coco, args.masks, args.image_size, batch_size, w, cfg.hflip, cfg.scale
        )
        dm.split["train"] = dm.split["train"] * args.replicate  # more images per epoch, same files
        loaders[f"w={w}"] = dm.train_dataloader()
    module = (
        SegmentationModule(
            model_cfg.arch,
            dm.num_classes,
            model_cfg.encoder,
            model_cfg.encoder_weights,
            model_cfg.lr or cfg.lr,
            cfg.weight_decay,
            cfg.dice_weight,
            dict(model_cfg.options),
            flags["channels_last"],
            args.compile,
        )
        .to(device)
        .train()
    )
    optimizer = torch.optim.AdamW(
        module.parameters(),
        lr=model_cfg.lr or cfg.lr,
        weight_decay=cfg.weight_decay,
        fused=device.type == "cuda" or None,
    )
    return loaders, module, optimizer


def bench_model(params: Params, name: str, args: argparse.Namespace) -> tuple[Blocks, dict, int]:
    """(variant -> per block (seconds, wait, images), loader key -> alone figures, batch size), one model."""
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    loaders, module, optimizer = build(params, name, args, device)
    step = make_step(module, optimizer, device, args.precision == "bf16")
    feeds = {key: cycle(loader) for key, loader in loaders.items()}
    alone = {key: time_alone(loaders[key], feeds[key], args.alone_batches) for key in loaders}
    warmups = {
        key: WARMUP + loader.num_workers * (loader.prefetch_factor or 0) for key, loader in loaders.items()
    }
    first = next(iter(loaders))
    resident = [tuple(t.to(device) for t in next(feeds[first])) for _ in range(args.steps)]  # drawn once
    feeds["resident"], warmups["resident"] = itertools.cycle(resident), WARMUP

    per_block = [args.steps // args.rounds + (r < args.steps % args.rounds) for r in range(args.rounds)]
    blocks: Blocks = {key: [] for key in feeds}
    order = list(feeds)
    for r, steps in enumerate(per_block):
        for key in order[r % len(order) :] + order[: r % len(order)]:  # rotate who goes first
            time.sleep(args.settle)  # let background prefetch of the previous block settle
            seconds, wait = run_block(step, feeds[key], warmups[key], steps, sync)
            blocks[key].append((seconds, wait, steps * resident[0][0].shape[0]))
    return blocks, alone, resident[0][0].shape[0]


def epoch_cpu_ms(dataset: SegmentationDataset, epoch: int, batch: int) -> float:
    """CPU ms per image of one epoch of ``dataset`` through a worker-less DataLoader, as a worker runs it."""
    loader = DataLoader(
        dataset, batch_size=batch, sampler=EpochShuffle(len(dataset), 0, epoch), num_workers=0
    )
    start = time.process_time()
    for _ in loader:
        pass
    return (time.process_time() - start) * 1e3 / len(dataset)


def large_photo_sets(args: argparse.Namespace, work: Path) -> dict[str, tuple[Path, Path, float]]:
    """name -> (coco root, masks root, mean JPEG kB): COCO's photos and the same at 2048x1536, with masks
    made by the masks stage's code (its wall time printed)."""
    from large_photos import make_large_set

    from cocoseg.core.params import MasksConfig
    from cocoseg.masks.build import build_masks

    sets = {
        "COCO photos": args.photos,
        "2048x1536": make_large_set(args.photos, work / "large", (1536, 2048)),
    }
    out = {}
    for name, root in sets.items():
        start = time.perf_counter()
        build_masks(root, work / name / "masks", ("val2017",), MasksConfig(preview=0, workers=1), 0)
        wall = time.perf_counter() - start
        photos = sorted((root / "val2017").glob("*.jpg"))
        print(
            f"  masks stage on {len(photos)} {name} (1 worker process): {wall:.2f} s wall, "
            f"{wall * 1e3 / len(photos):.1f} ms per image",
            flush=True,
        )
        out[name] = (root, work / name / "masks", sum(p.stat().st_size for p in photos) / len(photos) / 1e3)
    return out


def bench_large_photos(args: argparse.Namespace, params: Params) -> None:
    """The --large-photos figures (see the module docstring)."""
    from cocoseg.training.data import train_transform
    from cocoseg.training.decoded import DecodedPairs

    cv2.setNumThreads(1)
    cfg, size = params.train, args.image_size
    largest = tuple(round(side * cfg.scale[1]) for side in size)
    work = Path(tempfile.mkdtemp(prefix=".bench_input.", dir=args.work_dir))
    try:
        sets = large_photo_sets(args, work)
        variants: dict[tuple[str, str], SegmentationDataset] = {}
        for name, (root, masks, _) in sets.items():
            items = load_split(masks)["train"] * args.replicate
            for variant, at_least, kept in (
                ("whole", (1 << 20, 1 << 20), False),
                ("reduced", largest, False),
                ("reduced+kept", largest, True),
            ):
                decoded = DecodedPairs.beside(masks, largest) if kept else None
                variants[name, variant] = SegmentationDataset(
                    items,
                    root,
                    masks,
                    size,
                    train_transform(size, cfg.scale, cfg.hflip),
                    params.base.seed,
                    at_least,
                    decoded,
                )
        times: dict[tuple[str, str], list[float]] = {key: [] for key in variants}
        for epoch in range(args.rounds):
            for key, dataset in variants.items():
                times[key].append(epoch_cpu_ms(dataset, epoch, args.batch or 8))
        print_large_photos(sets, times, size)
        print_training_runs(times, cfg.epochs, len(params.models))
        print_decode_floor(sets)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def print_large_photos(sets: dict, times: dict[tuple[str, str], list[float]], size: tuple[int, int]) -> None:
    """Per set and variant: the fastest epoch (the figure least moved by other load on the machine; the
    ratio is taken from it) and the median; for reduced+kept, its first epoch apart (cold)."""
    steady = {
        key: per_epoch[1:] if key[1] == "reduced+kept" and len(per_epoch) > 1 else per_epoch
        for key, per_epoch in times.items()
    }
    base = min(steady["COCO photos", "whole"])
    print(
        f"training loader CPU ms per image at {size[0]}x{size[1]}: fastest (ratio to COCO photos read whole) / "
        f"median of {len(next(iter(times.values())))} epochs; load avg {os.getloadavg()[0]:.1f}:"
    )
    for (name, variant), per_epoch in times.items():
        best = min(steady[name, variant])
        cold = f", cold first epoch {per_epoch[0]:.2f}" if variant == "reduced+kept" else ""
        print(
            f"  {name:12s} ({sets[name][2]:5.0f} kB)  {variant:13s} {best:6.2f} ms ({best / base:4.2f}x) / "
            f"{statistics.median(steady[name, variant]):6.2f}{cold}; epochs: "
            + " ".join(f"{t:.2f}" for t in per_epoch),
            flush=True,
        )


def print_training_runs(times: dict[tuple[str, str], list[float]], epochs: int, models: int) -> None:
    """What a training run pays per image on average: the cold epoch once, the median steady epoch after it.
    The kept pairs serve every model of one image size and every later experiment, so the pipeline's
    ``models`` runs pay the cold epoch once between them."""
    base = statistics.median(times["COCO photos", "whole"])
    for name in sorted({name for name, _ in times if name != "COCO photos"}):
        cold, *rest = times[name, "reduced+kept"]
        steady = statistics.median(rest) if rest else cold
        for runs, what in ((1, "one model"), (models, f"the {models} models of params.yaml")):
            total = runs * epochs
            mean = (cold + (total - 1) * steady) / total
            print(
                f"  {name} reduced+kept over {what} at train.epochs {epochs}: {mean:.2f} ms per image per epoch "
                f"({mean / base:.2f}x COCO photos' median {base:.2f})",
                flush=True,
            )


def print_decode_floor(sets: dict) -> None:
    """JPEG decoding alone (OpenCV, one thread), the best of 3 passes: at 1/8 scale a large photo still
    costs several COCO photos, since its entropy-coded data is read whole at any scale. Hence the kept
    pairs, rather than a smaller scale, for the first-epoch cost."""
    flags = {"whole": cv2.IMREAD_COLOR, "1/2": cv2.IMREAD_REDUCED_COLOR_2}
    flags |= {"1/4": cv2.IMREAD_REDUCED_COLOR_4, "1/8": cv2.IMREAD_REDUCED_COLOR_8}

    def decode_ms(root: Path, flag: int) -> float:
        data = [np.fromfile(path, np.uint8) for path in sorted((root / "val2017").glob("*.jpg"))]
        best = float("inf")
        for _ in range(3):
            start = time.process_time()
            for blob in data:
                cv2.imdecode(blob, flag | cv2.IMREAD_IGNORE_ORIENTATION)
            best = min(best, (time.process_time() - start) * 1e3 / len(data))
        return best

    base = decode_ms(sets["COCO photos"][0], flags["whole"])
    print(f"JPEG decoding alone, CPU ms per image: COCO photos whole {base:.2f}", flush=True)
    for scale, flag in flags.items():
        ms = decode_ms(sets["2048x1536"][0], flag)
        print(f"  2048x1536 at {scale:5s} {ms:6.2f} ({ms / base:.2f}x)", flush=True)


def parse_args(params_default: Path = Path("params.yaml")) -> tuple[argparse.Namespace, Params]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--params", type=Path, default=params_default)
    parser.add_argument("--coco", type=Path, default=Path("data/coco"))
    parser.add_argument("--masks", type=Path, default=Path("data/masks"))
    parser.add_argument("--models", nargs="+", help="keys of the models section (default: all)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--image-size", type=int, nargs=2, metavar=("H", "W"), help="default: train.image_size"
    )
    parser.add_argument("--batch", type=int, help="default: the model's batch size")
    parser.add_argument(
        "--precision", choices=["auto", "bf16", "32"], default="auto", help="auto: bf16 on CUDA"
    )
    parser.add_argument(
        "--workers",
        nargs="+",
        help="DataLoader workers to compare, numbers or auto "
        "(default: train.workers and 0); the resident batches come from the first",
    )
    parser.add_argument("--steps", type=int, default=30, help="timed steps per variant and model")
    parser.add_argument("--rounds", type=int, default=5, help="blocks the steps are split into, alternated")
    parser.add_argument(
        "--alone-batches",
        type=int,
        default=20,
        help="batches timed for the loader alone (at least 4 x workers x prefetch_factor)",
    )
    parser.add_argument("--replicate", type=int, default=1, help="repeat the train split N times per epoch")
    parser.add_argument("--settle", type=float, default=1.0, help="seconds between blocks")
    parser.add_argument("--compile", action="store_true", help="torch.compile the network (train.compile)")
    parser.add_argument(
        "--large-photos",
        action="store_true",
        help="time the loader on COCO photos and on 2048x1536 ones, side by side (see above)",
    )
    parser.add_argument(
        "--photos",
        type=Path,
        default=Path("/work/shared/data/coco2017-val-mini"),
        help="--large-photos: a COCO root with val2017 photos and their instances file",
    )
    parser.add_argument("--work-dir", type=Path, default=Path("."), help="--large-photos: where the sets go")
    args = parser.parse_args()
    params = load_params(args.params)
    args.workers = list(
        dict.fromkeys(resolve_workers(w) for w in (args.workers or [params.train.workers, 0]))
    )
    args.image_size = tuple(args.image_size or params.train.image_size)
    if args.precision == "auto":
        args.precision = "bf16" if args.device.startswith("cuda") else "32"
    args.models = args.models or list(params.models)
    for name in args.models:
        params.model(name)  # unknown names fail before any timing
    if not 1 <= args.rounds <= args.steps:
        parser.error("--rounds must be between 1 and --steps")
    return args, params


def main() -> None:
    args, params = parse_args()
    if args.large_photos:
        bench_large_photos(args, params)
        return
    gpu = torch.cuda.get_device_name() if args.device.startswith("cuda") else "no GPU"
    print(
        f"device {args.device} ({gpu}), {len(os.sched_getaffinity(0))} usable cpus, torch {torch.__version__} "
        f"threads {torch.get_num_threads()}, cv2 threads {cv2.getNumThreads()} (workers: 1 each); "
        f"{len(load_split(args.masks)['train']) * args.replicate} train images, image_size "
        f"{list(args.image_size)}, precision {args.precision}, deterministic {params.train.deterministic}, "
        f"compile {args.compile}; {args.steps} timed steps per variant in {args.rounds} alternated blocks; "
        f"load avg {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    keys = [f"w={w}" for w in args.workers]
    header = (
        ["model", "batch", "resident"]
        + [f"fed {k} (wait)" for k in keys]
        + [f"fed/res {k}" for k in keys]
        + [f"alone {k}" for k in keys]
        + [f"cpu ms/img {k} (main)" for k in keys]
    )
    rows = []
    for name in args.models:
        blocks, alone, batch = bench_model(params, name, args)
        rate = {k: statistics.median(b[2] / b[0] for b in v) for k, v in blocks.items()}
        wait = {k: sum(b[1] for b in v) / sum(b[0] for b in v) for k, v in blocks.items()}
        rows.append(
            [name, str(batch), f"{rate['resident']:.1f}"]
            + [f"{rate[k]:.1f} ({wait[k]:.0%})" for k in keys]
            + [f"{rate[k] / rate['resident']:.2f}" for k in keys]
            + [f"{alone[k][0]:.1f}" for k in keys]
            + [f"{alone[k][1]:.2f} ({alone[k][2]:.2f})" for k in keys]
        )
        print(
            f"  {name}: img/s per block (noise check), load avg {os.getloadavg()[0]:.1f}: "
            + "; ".join(f"{k} " + " ".join(f"{b[2] / b[0]:.1f}" for b in v) for k, v in blocks.items()),
            flush=True,
        )
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    for line in [header] + rows:
        print("  ".join(cell.rjust(w) for cell, w in zip(line, widths, strict=False)))


if __name__ == "__main__":
    main()

"""Fast-SCNN's resizes: PyTorch's own kernels against ``models/resize.py`` (matrix-product backward).

Two parts, both side by side in one process:
- each resize Fast-SCNN makes at the given batch, classes and image size (found by running the network
  on the meta device and recording every call: the head's 8x upsampling of the class maps, the
  fusion's 4x upsampling of the global features, and the pyramid pooling's pools and upsamplings),
  timed alone: forward and backward in ms (median of ``--repeat``, the two variants alternated), and
  the error of each variant's input gradient against a float64 reference (PyTorch's op in float64 on
  the same, already rounded, inputs): relative L2 norm and max |error| / max |reference|, beside the
  error of the exact gradient merely rounded to the dtype, the least any backward can reach. On CUDA
  the inputs are bf16 and channels-last and the ops run under bf16 autocast, as in training
  (``--dtype`` changes it);
- a whole Fast-SCNN training step (``bench_train_input``'s step: ``prepare_batch``, forward, the fused
  loss, backward, fused AdamW; cuDNN autotuning as with ``train.deterministic: false``) on batches
  already on the device, with the network's resizes swapped between the two variants, img/s median of
  ``--rounds`` alternated blocks. ``--steps 0`` skips it.

    python benchmarks/bench_resize.py [--device cuda] [--batch 16] [--classes 81] [--image-size 512 512]
        [--repeat 20] [--steps 30] [--rounds 3] [--dtype bf16|float32]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext

import torch
import torch.nn.functional as F

from cocoseg.models import fastscnn
from cocoseg.models.resize import adaptive_avg_pool, resize_bilinear

Case = tuple[str, tuple[int, int, int], tuple[int, int]]  # kind, input (C, h, w), output (h, w)
STOCK = {
    "bilinear": lambda x, size: F.interpolate(x, size=size, mode="bilinear", align_corners=False),
    "pool": F.adaptive_avg_pool2d,
}
MATRIX = {"bilinear": resize_bilinear, "pool": adaptive_avg_pool}
VARIANTS = {"pytorch": STOCK, "matrix": MATRIX}


@contextmanager
def fastscnn_resizes(ops: dict[str, Callable]) -> Iterator[None]:
    """Fast-SCNN's network calls ``ops`` for its resizes inside the block."""
    saved = fastscnn.resize_bilinear, fastscnn.adaptive_avg_pool
    fastscnn.resize_bilinear, fastscnn.adaptive_avg_pool = ops["bilinear"], ops["pool"]
    try:
        yield
    finally:
        fastscnn.resize_bilinear, fastscnn.adaptive_avg_pool = saved


def find_cases(classes: int, size: tuple[int, int]) -> Counter[Case]:
    """Every resize one Fast-SCNN forward pass makes on one image of ``size``, with how often."""
    cases: Counter[Case] = Counter()

    def recorder(kind: str) -> Callable:
        def op(x: torch.Tensor, out: tuple[int, int]) -> torch.Tensor:
            cases[(kind, tuple(x.shape[1:]), tuple(out))] += 1
            return STOCK[kind](x, out)

        return op

    with torch.device("meta"), fastscnn_resizes({k: recorder(k) for k in STOCK}):
        fastscnn.FastSCNN(classes).eval()(torch.empty(1, 3, *size))
    return cases


def timer(device: torch.device) -> Callable[[Callable[[], object]], float]:
    """ms that one call of ``fn`` takes on ``device`` (CUDA events there, the wall clock elsewhere)."""
    if device.type == "cuda":

        def cuda_ms(fn: Callable[[], object]) -> float:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end)

        return cuda_ms

    def wall_ms(fn: Callable[[], object]) -> float:
        start = time.perf_counter()
        fn()
        return (time.perf_counter() - start) * 1e3

    return wall_ms


def case_inputs(case: Case, batch: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, upstream gradient), float64 on the CPU: the same values for both variants and the reference."""
    _, shape, out = case
    x = torch.randn(batch, *shape, generator=gen, dtype=torch.float64)
    grad = torch.randn(batch, shape[0], *out, generator=gen, dtype=torch.float64)
    return x, grad


def on_device(t: torch.Tensor, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    t = t.to(device, dtype)
    return t.contiguous(memory_format=torch.channels_last) if device.type == "cuda" else t


def gradient_error(have: torch.Tensor, want: torch.Tensor) -> tuple[float, float]:
    """(relative L2 norm of the error, max |error| / max |reference|)."""
    diff = have.double() - want
    return (diff.norm() / want.norm()).item(), (diff.abs().max() / want.abs().max()).item()


def time_variant(
    op: Callable, x: torch.Tensor, out: tuple[int, int], grad: torch.Tensor, autocast: Callable, ms: Callable
) -> tuple[float, float, torch.Tensor, torch.dtype]:
    """(forward ms, backward ms, the input's gradient, the output's dtype) of one call of ``op``."""
    x = x.detach().requires_grad_()
    y: list[torch.Tensor] = []
    with autocast():
        fwd = ms(lambda: y.append(op(x, out)))
    grad, dx = grad.to(y[0].dtype), []  # a cast only where autocast ran the op in another dtype
    bwd = ms(lambda: dx.extend(torch.autograd.grad(y[0], x, grad)))
    return fwd, bwd, dx[0], y[0].dtype


def bench_case(case: Case, args: argparse.Namespace, device: torch.device, dtype: torch.dtype) -> dict:
    """Per variant: forward and backward ms, gradient errors, and the dtype the op ran in."""
    kind, _, out = case
    x, g = (
        on_device(t, device, dtype) for t in case_inputs(case, args.batch, torch.Generator().manual_seed(0))
    )
    # The reference takes the same (rounded) inputs, so the errors are what each backward adds.
    x64 = x.double().requires_grad_()
    want = torch.autograd.grad(STOCK[kind](x64, out), x64, g.double())[0]
    del x64
    autocast = (lambda: torch.autocast(device.type, dtype)) if dtype != torch.float32 else nullcontext
    ms, times = timer(device), {name: ([], []) for name in VARIANTS}
    result: dict = {}
    for _ in range(args.repeat + 1):  # the first round warms up and is not counted
        for name, ops in VARIANTS.items():
            fwd, bwd, grad, ran_in = time_variant(ops[kind], x, out, g, autocast, ms)
            times[name][0].append(fwd)
            times[name][1].append(bwd)
            result[name] = {"grad": grad, "dtype": str(ran_in).replace("torch.", "")}
    for name in VARIANTS:
        fwd, bwd = (statistics.median(t[1:]) for t in times[name])
        rel, peak = gradient_error(result[name].pop("grad"), want)
        result[name].update(fwd=fwd, bwd=bwd, rel=rel, max=peak)
    dtype_seen = getattr(torch, result["matrix"]["dtype"])
    result["rounding"] = gradient_error(
        want.to(dtype_seen), want
    )  # the least error a gradient in it can have
    return result


def print_cases(
    cases: Counter[Case], args: argparse.Namespace, device: torch.device, dtype: torch.dtype
) -> None:
    print(
        f"per resize (batch {args.batch}; ms = median of {args.repeat}; grad error vs float64: relative "
        f"L2 norm, max |err| / max |ref|):",
        flush=True,
    )
    header = (
        f"  {'op':<8} {'input':>18} {'-> out':>10} {'x':>2}  {'variant':<8} {'dtype':<8} "
        f"{'fwd ms':>8} {'bwd ms':>8} {'rel err':>9} {'max err':>9}"
    )
    print(header)
    total = {name: 0.0 for name in VARIANTS}
    for case, count in cases.items():
        kind, shape, out = case
        result = bench_case(case, args, device, dtype)
        rounding = result.pop("rounding")
        for name, r in result.items():
            total[name] += count * (r["fwd"] + r["bwd"])
            print(
                f"  {kind:<8} {[args.batch, *shape]!s:>18} {'x'.join(map(str, out)):>10} {count:>2}  "
                f"{name:<8} {r['dtype']:<8} {r['fwd']:8.3f} {r['bwd']:8.3f} {r['rel']:9.2e} {r['max']:9.2e}",
                flush=True,
            )
        print(
            f"  {'':<42}bwd pytorch / matrix: {result['pytorch']['bwd'] / result['matrix']['bwd']:.2f}x; "
            f"the exact gradient rounded to {result['matrix']['dtype']}: {rounding[0]:.2e} {rounding[1]:.2e}"
        )
    print(
        "  all resizes of one step, fwd + bwd: "
        + ", ".join(f"{n} {t:.2f} ms" for n, t in total.items())
        + f" (pytorch / matrix {total['pytorch'] / total['matrix']:.2f}x)",
        flush=True,
    )


def bench_step(args: argparse.Namespace, device: torch.device) -> None:
    """Fast-SCNN's training step with each variant's resizes, img/s, alternated blocks."""
    from bench_train_input import apply_speed_flags, make_step  # beside this file

    from cocoseg.training.module import SegmentationModule

    cuda = device.type == "cuda"
    apply_speed_flags({"deterministic": False, "benchmark": cuda})
    module = SegmentationModule("fastscnn", args.classes, channels_last=cuda).to(device).train()
    optimizer = torch.optim.AdamW(module.parameters(), lr=0.01, fused=cuda or None)
    step = make_step(module, optimizer, device, args.dtype == "bf16")
    gen = torch.Generator().manual_seed(0)
    h, w = args.image_size
    batch = (
        torch.randint(0, 256, (args.batch, h, w, 3), generator=gen, dtype=torch.uint8).to(device),
        # uint8 masks as the loader hands them today; int32 where the class ids do not fit
        torch.randint(
            0,
            args.classes,
            (args.batch, h, w),
            generator=gen,
            dtype=torch.uint8 if args.classes < 255 else torch.int32,
        ).to(device),
    )
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    rates: dict[str, list[float]] = {name: [] for name in VARIANTS}
    per_block = max(1, args.steps // args.rounds)
    for r in range(args.rounds):
        for name in list(VARIANTS) if r % 2 == 0 else list(VARIANTS)[::-1]:
            with fastscnn_resizes(VARIANTS[name]):
                for _ in range(2):  # warm-up: cuDNN autotuning, the matrices made once
                    step(batch)
                sync()
                start = time.perf_counter()
                for _ in range(per_block):
                    step(batch)
                sync()
            rates[name].append(per_block * args.batch / (time.perf_counter() - start))
    median = {name: statistics.median(v) for name, v in rates.items()}
    print(
        f"Fast-SCNN training step, batches on the device ({args.dtype}, {args.classes} classes, "
        f"{h}x{w}, batch {args.batch}, {args.rounds} blocks of {per_block} steps), img/s median (blocks): "
        + "; ".join(f"{n} {median[n]:.1f} ({' '.join(f'{v:.1f}' for v in rates[n])})" for n in VARIANTS)
        + f"; matrix / pytorch {median['matrix'] / median['pytorch']:.3f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--classes", type=int, default=81)
    parser.add_argument("--image-size", type=int, nargs=2, default=[512, 512], metavar=("H", "W"))
    parser.add_argument("--dtype", choices=["bf16", "float32"], help="default: bf16 on CUDA, else float32")
    parser.add_argument("--repeat", type=int, default=20, help="timed calls per resize and variant")
    parser.add_argument("--steps", type=int, default=30, help="timed training steps per variant (0: none)")
    parser.add_argument("--rounds", type=int, default=3, help="blocks the steps are split into, alternated")
    args = parser.parse_args()
    device = torch.device(args.device)
    args.dtype = args.dtype or ("bf16" if device.type == "cuda" else "float32")
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "no GPU"
    print(
        f"device {device} ({gpu}), torch {torch.__version__}, {args.dtype}, threads {torch.get_num_threads()}, "
        f"Fast-SCNN at {args.classes} classes, {args.image_size[0]}x{args.image_size[1]}",
        flush=True,
    )
    print_cases(find_cases(args.classes, tuple(args.image_size)), args, device, dtype)
    if args.steps:
        bench_step(args, device)


if __name__ == "__main__":
    main()

"""What pinning the CPU arithmetic costs, and which pins decide the bytes: train + evaluate per variant.

Each variant runs the train and evaluate stage scripts (``stages/train.py``, ``stages/evaluate.py``) of
every ``--models`` entry on the masks in ``--coco`` / ``--masks`` (``dvc repro masks`` makes them), with
params.yaml changed only by the variant, into a temporary folder. Variants alternate round by round, so a
busy machine slows each alike; the load average is printed with every round. A variant is
``name:deterministic[:threads][:KEY=VALUE,...]``: the ``deterministic`` and ``threads`` of both the train
and evaluate sections, and environment variables for the stages (what another machine's libraries would
see, or one pin alone). Printed per variant and model: median seconds of each stage, wall-clock and CPU
(the stage's and its loader workers': on a machine shared with other jobs the wall-clock figures follow
the load, the CPU ones much less), the model's and the evaluate metrics' SHA-256 (the same for every
round, or the variant is not repeatable) and mIoU.

    python benchmarks/bench_pinning.py [--models unet deeplabv3 fastscnn] [--rounds 2] [--epochs 12]
        [--variant pinned:true --variant free:false --variant onednn:false::ONEDNN_MAX_CPU_ISA=AVX2 ...]
        [--steps 5] [--cores 0] [--params params.yaml] [--coco data/coco] [--masks data/masks]

``--steps N`` measures instead the CPU time of one training step (forward, loss, backward, AdamW; batch 8
at 128x128, 4 classes) of each model on one thread, median of N steps in a fresh process per variant
(a variant with ``deterministic`` true gets the pins for one thread): on a machine shared with other jobs
a single thread's CPU time is the steadiest figure of what each pin costs.

``--cores 0`` runs the stages on core 0 only (as ``taskset -c 0``): with ``ONEDNN_MAX_CPU_ISA=AVX2
MKL_CBWR=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 ATEN_CPU_CAPABILITY=avx2`` in a variant, a one-core AVX2
machine, emulated.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from cocoseg.core.arithmetic import pinned_environment

REPO = Path(__file__).resolve().parents[1]
STEP = """
import statistics, sys, time, torch
from cocoseg.training.module import SegmentationModule
torch.manual_seed(0)
module = SegmentationModule(sys.argv[1], 4, "resnet18", None, 0.002, 1e-4, 0.5)
x = torch.randint(0, 255, (8, 128, 128, 3), dtype=torch.uint8)
y = torch.randint(0, 4, (8, 128, 128), dtype=torch.uint8)
optimiser = torch.optim.AdamW(module.parameters())
times = []
for i in range(int(sys.argv[2]) + 2):  # two warm-up steps
    start = time.process_time()
    images, target = module.prepare_batch((x, y))
    loss = module.loss(module(images), target)
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()
    times.append(time.process_time() - start)
print(statistics.median(times[2:]))
"""


@dataclass
class Variant:
    name: str
    deterministic: bool
    threads: int | None
    env: dict[str, str]
    seconds: dict[str, list[float]] = field(default_factory=dict)  # "<stage>@<model>" -> per round
    cpu: dict[str, list[float]] = field(default_factory=dict)  # the same, CPU seconds
    digests: dict[str, set[str]] = field(default_factory=dict)  # "<model>" -> model.pt + metrics hashes
    miou: dict[str, float] = field(default_factory=dict)


def parse_variant(text: str) -> Variant:
    name, deterministic, *rest = text.split(":")
    threads = int(rest[0]) if rest and rest[0] else None
    env = dict(pair.split("=", 1) for pair in rest[1].split(",")) if len(rest) > 1 and rest[1] else {}
    return Variant(name, deterministic == "true", threads, env)


def write_params(base: dict, variant: Variant, epochs: int | None, path: Path) -> None:
    params = json.loads(json.dumps(base))
    for section in ("train", "evaluate"):
        params[section]["deterministic"] = variant.deterministic
        if variant.threads is not None:
            params[section]["threads"] = variant.threads
    if epochs is not None:
        params["train"]["epochs"] = epochs
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def run_variant(variant: Variant, models: list[str], work: Path, args: argparse.Namespace) -> None:
    """Train and evaluate every model once in a fresh folder; note seconds, hashes and mIoU."""
    folder = work / variant.name
    folder.mkdir(parents=True, exist_ok=True)
    # the variant's environment alone decides: nothing pinned by the shell this runs in
    env = {k: v for k, v in os.environ.items() if k not in pinned_environment(1) and not k.startswith("DVC_")}
    env.update(variant.env, PYTHONPATH=os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")]))
    prefix = ["taskset", "-c", args.cores] if args.cores else []
    for model in models:
        for stage, extra in (
            (
                "train",
                [
                    "--out",
                    f"models/{model}",
                    "--runs",
                    "runs",
                    "--live",
                    f"results/train/{model}",
                    "--resume-dir",
                    f"checkpoints/{model}",
                ],
            ),
            ("evaluate", ["--out", f"results/evaluate/{model}"]),
        ):
            command = [
                *prefix,
                sys.executable,
                str(REPO / "stages" / f"{stage}.py"),
                "--model",
                model,
                "--params",
                str(work / f"{variant.name}.yaml"),
                "--coco",
                str(args.coco.resolve()),
                "--masks",
                str(args.masks.resolve()),
                *extra,
            ]
            start, used = time.perf_counter(), _children_cpu()
            result = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, check=False)
            if result.returncode != 0:
                sys.exit(f"{variant.name} {stage}@{model} failed:\n{result.stderr[-3000:]}")
            variant.seconds.setdefault(f"{stage}@{model}", []).append(time.perf_counter() - start)
            variant.cpu.setdefault(f"{stage}@{model}", []).append(_children_cpu() - used)
        model_bytes = (folder / "models" / model / "model.pt").read_bytes()
        metrics = (folder / "results" / "evaluate" / model / "metrics.json").read_bytes()
        digest = hashlib.sha256(model_bytes).hexdigest()[:12] + "/" + hashlib.sha256(metrics).hexdigest()[:12]
        variant.digests.setdefault(model, set()).add(digest)
        variant.miou[model] = json.loads(metrics)["miou"]
        print(
            f"{variant.name} {model}: train {variant.seconds[f'train@{model}'][-1]:.1f} s "
            f"(CPU {variant.cpu[f'train@{model}'][-1]:.1f}), evaluate {variant.seconds[f'evaluate@{model}'][-1]:.1f}"
            f" s (CPU {variant.cpu[f'evaluate@{model}'][-1]:.1f}), {digest}, load average "
            f"{os.getloadavg()[0]:.2f}",
            flush=True,
        )


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_steps(variants: list[Variant], models: list[str], args: argparse.Namespace) -> None:
    """Per model, one step's median CPU ms on one thread for each variant, rounds alternated."""
    base = {k: v for k, v in os.environ.items() if k not in pinned_environment(1)}
    base.update(
        PYTHONPATH=os.pathsep.join([str(REPO / "src"), base.get("PYTHONPATH", "")]),
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
    )
    ms: dict[tuple[str, str], list[float]] = {}
    for r in range(args.rounds):
        for v in variants[r % len(variants) :] + variants[: r % len(variants)]:
            env = {**base, **(pinned_environment(1) if v.deterministic else {}), **v.env}
            for model in models:
                out = subprocess.run(
                    [sys.executable, "-c", STEP, model, str(args.steps)],
                    env=env,
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
                ms.setdefault((v.name, model), []).append(1000 * float(out.split()[-1]))
        print(f"round {r + 1} done, load average {os.getloadavg()[0]:.2f}", flush=True)
    print("\n| variant | " + " | ".join(f"{m} ms/step (x first)" for m in models) + " |")
    print("|---" * (len(models) + 1) + "|")
    for v in variants:
        cells = [
            f"{statistics.median(ms[v.name, m]):.0f} "
            f"({statistics.median(ms[v.name, m]) / statistics.median(ms[variants[0].name, m]):.2f})"
            for m in models
        ]
        print(f"| {v.name} | " + " | ".join(cells) + " |")


def report(variants: list[Variant], models: list[str]) -> None:
    """One row per variant: per model, median wall-clock (CPU) seconds of train and evaluate, mIoU and
    hashes; the totals, and their ratio to the first variant's."""
    print(
        "\n| variant | "
        + " | ".join(
            f"{m} train s (CPU) | {m} evaluate s (CPU) | {m} mIoU | {m} model/metrics" for m in models
        )
        + " | total s (CPU) | ratio wall (CPU) |"
    )
    print("|---" * (4 * len(models) + 3) + "|")
    base = None
    for v in variants:
        wall = sum(statistics.median(s) for s in v.seconds.values())
        cpu = sum(statistics.median(s) for s in v.cpu.values())
        base = base or (wall, cpu)
        cells = []
        for m in models:
            cells += [
                _cell(v, f"train@{m}"),
                _cell(v, f"evaluate@{m}"),
                f"{v.miou[m]:.4f}",
                " ".join(sorted(v.digests[m])),
            ]
        print(
            f"| {v.name} | " + " | ".join(cells) + f" | {wall:.1f} ({cpu:.1f}) | "
            f"{wall / base[0]:.2f} ({cpu / base[1]:.2f}) |"
        )


def _cell(variant: Variant, key: str) -> str:
    return f"{statistics.median(variant.seconds[key]):.1f} ({statistics.median(variant.cpu[key]):.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+")
    parser.add_argument("--variant", action="append", type=parse_variant)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epochs", type=int, help="default: params.yaml's")
    parser.add_argument("--cores", help="run the stages on these cores only (taskset -c)")
    parser.add_argument("--steps", type=int, help="time N training steps per model on one thread instead")
    parser.add_argument("--params", type=Path, default=REPO / "params.yaml")
    parser.add_argument("--coco", type=Path, default=REPO / "data" / "coco")
    parser.add_argument("--masks", type=Path, default=REPO / "data" / "masks")
    args = parser.parse_args()
    base = yaml.safe_load(args.params.read_text())
    models = args.models or list(base["models"])
    variants = args.variant or [parse_variant("pinned:true"), parse_variant("free:false")]
    if args.steps:
        run_steps(variants, models, args)
        return
    with tempfile.TemporaryDirectory(prefix="bench-pinning-") as tmp:
        work = Path(tmp)
        for v in variants:
            write_params(base, v, args.epochs, work / f"{v.name}.yaml")
        for r in range(args.rounds):
            order = variants[r % len(variants) :] + variants[: r % len(variants)]  # rotate who goes first
            for v in order:
                run_variant(v, models, work, args)
                print(f"round {r + 1}: {v.name} done, load average {os.getloadavg()[0]:.2f}", flush=True)
    report(variants, models)


if __name__ == "__main__":
    main()

"""Two machines emulated on one: the train and evaluate stages, and predict, give the same bytes with every
kernel and core of this CPU as with an AVX2-only CPU of one core (``deterministic: true``, the default)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import REPO, shapes_pair, write_dataset

from cocoseg.core.arithmetic import pinned_environment

# What another machine looks like to the libraries: an instruction set no wider than AVX2 ...
AVX2_MACHINE = {
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_CBWR": "AVX2",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    "ATEN_CPU_CAPABILITY": "avx2",
}
PARAMS = {
    "train": {
        "epochs": 2,
        "batch_size": 2,
        "image_size": [32, 32],
        "workers": "auto",
        "accelerator": "cpu",
        "devices": 1,
        "threads": 2,
    },
    "models": {"x": {"arch": "fastscnn", "lr": 0.01}},
    "evaluate": {"overlays": 1, "speed_batches": 1, "workers": 0, "threads": 2},
}
TIMING = {"speed.json"}


# ... and one core: the process narrows its affinity (as `taskset -c`), then becomes the stage script
ONE_CORE = [
    "-c",
    (
        "import os, sys; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
        "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
    ),
]


def stage(name: str, data: Path) -> list[str]:
    return [
        str(REPO / "stages" / f"{name}.py"),
        "--model",
        "x",
        "--params",
        str(data / "params.yaml"),
        "--coco",
        str(data / "data" / "coco"),
        "--masks",
        str(data / "data" / "masks"),
    ]


def run_both(args: list[str], machines: dict[str, Path], envs: dict[str, dict[str, str]]) -> None:
    """``python <args>`` on both machines at once; each must succeed."""
    running = {
        name: subprocess.Popen(
            [sys.executable, *(ONE_CORE if name == "narrow" else []), *args],
            cwd=path,
            env=envs[name],
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for name, path in machines.items()
    }
    for name, process in running.items():
        output, _ = process.communicate(timeout=240)
        assert process.returncode == 0, f"{args[0]} on the {name} machine:\n{output}"


def outputs(machine: Path) -> dict[str, bytes]:
    """Every file the stages and predict wrote, timing files aside."""
    return {
        str(p.relative_to(machine)): p.read_bytes()
        for top in ("models", "results", "predictions")
        for p in sorted((machine / top).rglob("*"))
        if p.is_file() and p.name not in TIMING
    }


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs Linux's CPU affinity")
def test_full_machine_and_avx2_single_core_machine_give_the_same_bytes(tmp_path: Path) -> None:
    data = tmp_path / "data"
    pairs = [shapes_pair(48, 64, seed) for seed in range(6)]
    write_dataset(data, [p[0] for p in pairs], [p[1] for p in pairs], num_val=2)
    (data / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    clean = {
        k: v
        for k, v in os.environ.items()  # this machine as it is
        if k not in {**pinned_environment(1), **AVX2_MACHINE} and not k.startswith("DVC_")
    }
    envs = {"full": clean, "narrow": {**clean, **AVX2_MACHINE}}
    machines = {name: tmp_path / name for name in envs}
    for path in machines.values():
        path.mkdir()
    run_both(stage("train", data), machines, envs)
    run_both(stage("evaluate", data), machines, envs)
    run_both(
        [
            "-m",
            "cocoseg",
            "predict",
            "--model",
            "models/x/model.pt",
            "--out",
            "predictions",
            str(data / "data" / "coco" / "val2017"),
        ],
        machines,
        envs,
    )

    full, narrow = outputs(machines["full"]), outputs(machines["narrow"])
    assert "models/x/model.pt" in full and "results/evaluate/x/metrics.json" in full
    assert "results/train/x/plots/metrics/val/miou.tsv" in full  # the history
    assert "predictions/000000000006_mask.png" in full
    assert sorted(full) == sorted(narrow)
    assert [name for name in full if full[name] != narrow[name]] == []

    # each run records what it computed with: the same pins, whatever the machine
    for name, path in machines.items():
        record = json.loads(next((path / "runs").glob("x_miou_*/arithmetic.json")).read_text())
        assert record["deterministic"] is True and record["threads"] == 2
        assert record["cores"] == 1 if name == "narrow" else record["cores"] == len(os.sched_getaffinity(0))
        assert record["pinned"] == pinned_environment(2)
        speed = json.loads((path / "results" / "evaluate" / "x" / "speed.json").read_text())
        assert speed["threads"] == 2 and speed["kernels"] == record["kernels"]

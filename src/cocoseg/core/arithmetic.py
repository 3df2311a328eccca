"""What decides the bits of CPU arithmetic, pinned before torch is imported.

PyTorch's CPU kernels (its own, oneDNN's convolutions, MKL's matrix products) are chosen for the
instruction set the CPU has, and split their sums over the threads they run on; either changes the last
bits of a result, and training compounds them into other weights and scores. With ``deterministic: true``
the stages pin both, so the same parameters give the same bytes on any x86-64 CPU with AVX2: the kernels
are capped at AVX2 (MKL's at its vendor-neutral path) and the thread count is a parameter. They are
pinned in the environment, where the libraries read them as they load and where DataLoader workers and
DDP processes inherit them; so ``pin_arithmetic`` must run before torch is imported. ``deterministic:
false`` leaves every kernel and core to the machine. docs/reproducibility.md has the measurements.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
from typing import Any

from cocoseg.core.machine import usable_cores
from cocoseg.core.params import EvaluateConfig

log = logging.getLogger(__name__)

ISA = "AVX2"  # the widest instruction set every x86-64 CPU of the last decade has (Intel 2013, AMD 2015)
_pinned_before_torch = False


def pinned_environment(threads: int) -> dict[str, str]:
    """The environment that fixes CPU arithmetic: kernels for ``ISA``, ``threads`` threads."""
    n = str(threads)
    return {
        "ONEDNN_MAX_CPU_ISA": ISA,  # oneDNN (convolutions): no AVX-512, VNNI or AMX kernels
        # MKL (matrix products): its conditional numerical reproducibility on the one code path it keeps
        # alike on Intel and AMD CPUs (its AVX2 path is alike across Intel CPUs only)
        "MKL_CBWR": "COMPATIBLE",
        "ATEN_CPU_CAPABILITY": ISA.lower(),  # PyTorch's own vectorised kernels (softmax, exp, ...)
        "OMP_NUM_THREADS": n,  # how each parallel loop and reduction is split
        "MKL_NUM_THREADS": n,
        "OMP_DYNAMIC": "FALSE",  # no thread count picked at run time from the machine's load or cores
        "MKL_DYNAMIC": "FALSE",
        # Speed, not bits: threads that sleep between parallel regions instead of spinning. A fixed count
        # may exceed the cores free (a busy or smaller machine), and spinning threads then wait for
        # descheduled ones at every barrier: 5x slower, measured.
        "OMP_WAIT_POLICY": "PASSIVE",
    }


def pin_arithmetic(deterministic: bool, threads: int) -> dict[str, str]:
    """Put the pins into this process's environment (child processes inherit them); return them.

    ``deterministic: false`` pins nothing. Values the user's environment had are overridden: the
    parameters, not the shell, decide the experiment.
    """
    global _pinned_before_torch
    if not deterministic:
        return {}
    pins = pinned_environment(threads)
    overridden = {key: os.environ[key] for key in pins if os.environ.get(key, pins[key]) != pins[key]}
    if overridden:
        log.info(
            "deterministic: overriding %s from the environment",
            ", ".join(f"{k}={v}" for k, v in sorted(overridden.items())),
        )
    os.environ.update(pins)
    _pinned_before_torch = _pinned_before_torch or "torch" not in sys.modules
    return pins


def settle_arithmetic(deterministic: bool, threads: int) -> dict[str, Any]:
    """After torch is imported: set the thread count (also where torch came first, as in a notebook)
    and return what this process computes with, for the run's records; log it in one line."""
    import torch

    if deterministic:
        torch.set_num_threads(threads)
    record = {
        "deterministic": deterministic,
        "threads": torch.get_num_threads(),
        "kernels": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "cores": usable_cores(),
        "pinned": pinned_environment(threads) if deterministic else {},
    }
    problem = _pin_problem(record) if deterministic else None
    if problem:
        log.warning("deterministic: %s; the bytes will match this machine's reruns only", problem)
    elif deterministic:
        log.info(
            "arithmetic pinned for the same bytes on any x86-64 CPU with %s: %s kernels, %d threads",
            ISA,
            ISA,
            record["threads"],
        )
    else:
        log.info(
            "arithmetic not pinned (deterministic: false): %s kernels, %d threads; another machine "
            "may give other bytes",
            record["kernels"],
            record["threads"],
        )
    return record


def _pin_problem(record: dict[str, Any]) -> str | None:
    """Why the pins cannot hold here, or None."""
    if record["machine"].lower() not in ("x86_64", "amd64"):
        return f"{record['machine']} is not x86-64, whose kernels the pins choose"
    if not _pinned_before_torch:
        return "torch was imported before the instruction set was pinned (run the stage script)"
    if record["kernels"] != ISA:
        return f"this CPU runs torch's {record['kernels']} kernels, not {ISA}"
    return None


def cpu_model() -> str:
    """The CPU's model name where the system tells it (Linux), else the platform's processor string."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def add_arithmetic_flags(parser: argparse.ArgumentParser) -> None:
    """``--threads`` and ``--[no-]deterministic`` of a command that runs a model outside DVC (predict),
    with evaluate's defaults: its outputs follow the same rule as evaluate's metrics."""
    defaults = EvaluateConfig()
    parser.add_argument(
        "--threads",
        type=_threads,
        default=defaults.threads,
        help=f"CPU threads when deterministic (default {defaults.threads}): they change the bits",
    )
    parser.add_argument(
        "--deterministic",
        action=argparse.BooleanOptionalAction,
        default=defaults.deterministic,
        help=f"the same bytes on any x86-64 CPU with {ISA} (default); --no-deterministic: "
        "every kernel and core of this machine",
    )


def _threads(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of threads (an integer >= 1)")
    return int(text)

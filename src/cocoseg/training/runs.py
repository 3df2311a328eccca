"""Run history outside DVC's outputs: one folder per training run, as the seed's runs/ had.

    runs/<model>_miou_<YYYYmmdd-HHMMSS>[_<experiment>]/
        events.out.tfevents.*    TensorBoard: per-step train loss and lr, per-epoch train and val metrics,
                                 the first-iteration metrics, the run's parameters and scores (HParams)
        hparams.yaml             the run's parameters
        metrics_first_iter.txt   val scores after the first optimiser step
        final_metrics.txt        the best epoch's val scores, and the settings the run used
        arithmetic.json          what its CPU arithmetic ran on: pinned kernels and threads, torch, CPU

Every run gets a new folder, so `tensorboard --logdir runs` shows all runs side by side, queued
experiments included. Event files carry wall-clock times, so they stay out of DVC's cache and git.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from cocoseg.core.files import write_json, write_text
from cocoseg.core.layout import RUNS_DIR

METRIC = "miou"  # the monitored val metric, named in the folder as the seed named its runs


def runs_root() -> Path:
    """``runs/`` of the repository the user works in.

    DVC runs a queued experiment in a temporary copy under .dvc/tmp/exps and sets DVC_ROOT to the
    user's repository, so the history of queued runs lands beside the others instead of being deleted
    with the copy.
    """
    return Path(os.environ.get("DVC_ROOT", ".")) / RUNS_DIR


def run_name(model: str, runs_dir: Path, now: float | None = None) -> str:
    """``<model>_miou_<time>[_<experiment>]``, with ``-2``, ``-3``... if a run of that second exists."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    experiment = os.environ.get("DVC_EXP_NAME")  # set by `dvc exp run`, absent under `dvc repro`
    name = f"{model}_{METRIC}_{stamp}" + (f"_{experiment}" if experiment else "")
    taken = 1
    while (Path(runs_dir) / (name if taken == 1 else f"{name}-{taken}")).exists():
        taken += 1
    return name if taken == 1 else f"{name}-{taken}"


def write_run_summary(
    run_dir: Path,
    first_iter: Path,
    best: dict[str, Any],
    settings: dict[str, Any],
    arithmetic: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The seed's two text files, values as in the dvclive metrics, one ``key: value`` a line, and
    ``arithmetic.json``, the record of ``core.arithmetic.settle_arithmetic``. Returns the first-iteration
    metrics ({} when the run never scored them)."""
    first = json.loads(first_iter.read_text()) if first_iter.is_file() else {}
    if first:
        write_text(run_dir / "metrics_first_iter.txt", _lines(first))
    write_text(run_dir / "final_metrics.txt", _lines({**best, **settings}))
    if arithmetic is not None:
        write_json(run_dir / "arithmetic.json", arithmetic)
    return first


def _lines(values: dict[str, Any]) -> str:
    return "".join(f"{key}: {value}\n" for key, value in sorted(values.items()))

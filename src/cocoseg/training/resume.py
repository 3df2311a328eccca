"""Training that survives a kill: a last-epoch checkpoint to resume from, and outputs swapped in on success.

Everything lives under one folder per model, outside every DVC output and ignored by git, so neither
``dvc repro`` nor ``dvc exp run`` deletes it before the stage runs, and a failed run changes nothing
that DVC or git track:

    checkpoints/<name>/run/live, run/runs_name.txt the run in progress: dvclive history, its runs/ folder
    checkpoints/<name>/last/                       the last finished epoch: last.ckpt (model, optimiser,
                                                   scheduler, loops, callbacks, RNG states), a copy of
                                                   run/ as it was then, and the run's fingerprint

A rerun resumes from ``last/`` only when the fingerprint (every parameter the stage reads, plus the
split and the labels) is unchanged; anything else starts fresh. When training succeeds, the new
history replaces ``results/train/<name>`` whole, and the folder goes. TensorBoard events go to the run's
own folder under ``runs/`` (see runs.py), which a resumed run writes on into.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from cocoseg.core.files import replace_dir, write_text
from cocoseg.core.layout import LABELS_FILE, SPLIT_FILE
from cocoseg.core.params import Params

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class RunState:
    """The folder ``checkpoints/<name>`` and the paths inside it."""

    root: Path

    @property
    def live(self) -> Path:
        return self.root / "run" / "live"

    def run_name(self, new_name: Callable[[], str]) -> str:
        """The runs/ folder name of this run: kept in the run state, so a resumed run writes on into it."""
        path = self.root / "run" / "runs_name.txt"
        if not path.is_file():
            write_text(path, new_name())
        return path.read_text()

    @property
    def saved(self) -> Path:
        return self.root / "last"

    @property
    def checkpoint(self) -> Path:
        return self.saved / "last.ckpt"

    @property
    def pending(self) -> Path:
        return self.root / "pending.ckpt"  # written at an epoch's end, kept once its history is complete


def run_fingerprint(params: Params, name: str, masks_root: Path) -> str:
    """A digest of what decides the run: base, train, models.<name>, and the masks stage's split and labels."""
    content = {
        "base": dataclasses.asdict(params.base),
        "train": dataclasses.asdict(params.train),
        "model": dataclasses.asdict(params.model(name)),
        **{f: (Path(masks_root) / f).read_text() for f in (SPLIT_FILE, LABELS_FILE)},
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()


def prepare_run(state: RunState, fingerprint: str) -> Path | None:
    """The checkpoint to resume from, with the history restored as it was then; or None: a fresh start.

    Only the first process touches the folder: with several GPUs, Lightning starts the other ranks by
    running the stage again once training has begun, and they only read.
    """
    saved = state.saved / "fingerprint.txt"
    resumable = state.checkpoint.is_file() and saved.is_file() and saved.read_text() == fingerprint
    if os.environ.get("LOCAL_RANK", "0") != "0" or os.environ.get("NODE_RANK", "0") != "0":
        return state.checkpoint if resumable else None
    if resumable:
        shutil.rmtree(state.root / "run", ignore_errors=True)
        shutil.copytree(state.saved / "run", state.root / "run")
        state.pending.unlink(missing_ok=True)  # an epoch whose history was not complete: run it again
        log.info("resuming from %s (delete %s to start fresh)", state.checkpoint, state.root)
        return state.checkpoint
    if state.root.exists():
        log.info("parameters or data changed since %s was written: starting fresh", state.root)
    shutil.rmtree(state.root, ignore_errors=True)
    return None


def start_epoch(checkpoint: Path | None) -> int:
    """The epoch a run resumed from ``checkpoint`` starts at (0 for a fresh run)."""
    if checkpoint is None:
        return 0
    return int(torch.load(checkpoint, map_location="cpu", weights_only=False, mmap=True)["epoch"]) + 1


def publish_run(state: RunState, live_dir: Path) -> None:
    """Swap the finished run's history in for the previous one, then drop the resume folder."""
    replace_dir(state.live, live_dir)
    shutil.rmtree(state.root, ignore_errors=True)


def capture_rng() -> dict[str, Any]:
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class EpochCheckpoint(L.Callback):
    """Keep ``last/`` at the last finished epoch; must be the last callback, so it saves the others' state.

    The checkpoint is written at an epoch's end, with the RNG states of that moment, but the train-epoch
    metrics reach dvclive only after that hook; so it is kept (with a copy of the history) when the next
    epoch starts. A run killed in between repeats that one epoch and gets the same history.
    """

    def __init__(self, state: RunState, fingerprint: str) -> None:
        self.state, self.fingerprint = state, fingerprint

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch + 1 < trainer.max_epochs:  # after the last epoch the run is published
            try:
                trainer.save_checkpoint(self.state.pending, weights_only=False)  # the whole training state
            except OSError as err:  # a full disk: never leave a partial checkpoint behind
                self.state.pending.unlink(missing_ok=True)
                raise OSError(err.errno, err.strerror, str(self.state.pending)) from None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero or not self.state.pending.is_file():
            return
        tmp = self.state.root / "last.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            shutil.copytree(self.state.root / "run", tmp / "run")
            write_text(tmp / "fingerprint.txt", self.fingerprint)
        except OSError:  # a full disk: the previous last/ stays, the partial copy goes
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.state.pending.replace(tmp / "last.ckpt")
        replace_dir(tmp, self.state.saved)

    def state_dict(self) -> dict[str, Any]:
        return {"rng": capture_rng()}  # called while the checkpoint is written

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        restore_rng(state_dict["rng"])  # called on resume, before the first batch is drawn

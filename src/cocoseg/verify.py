"""``cocoseg verify``: rerun the committed pipeline in a temporary clone; list each output whose hash
differs from the committed dvc.lock.

    $ git clone -q <repository> <tmp>/clone        the committed state: nothing of the workspace
    $ dvc repro --force                            in the clone, every stage from nothing
    (then every output's hash in the clone's new dvc.lock against the committed one)

Given stage names (``cocoseg verify train@unet evaluate@unet``), only those rerun: the clone takes the
other stages' outputs from this repository's DVC cache (``dvc checkout``), and the rerun's outputs are
stored there too. Timing files are listed apart: they differ on every run by nature.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from cocoseg.core.errors import UserError

log = logging.getLogger(__name__)

# Outputs that hold wall-clock figures, never equal between two runs: evaluate's speed.json, and the
# comparison table and JSON, which copy each model's images per second from it.
TIMING = ("speed.json", "compare.md", "compare.json")


class VerifyError(UserError):
    """The repository cannot be verified: not a git repository, no dvc.lock, a failed rerun."""


@dataclass(frozen=True)
class OutputCheck:
    """One output of a stage that was rerun: its hash in the committed dvc.lock and after the rerun."""

    path: str
    committed: str | None
    rerun: str | None

    @property
    def status(self) -> str:
        if Path(self.path).name in TIMING:
            return "timing"
        return "same" if self.committed == self.rerun else "DIFFERS"

    def line(self) -> str:
        if self.status == "DIFFERS":
            return f"DIFFERS  {self.path}: committed {_short(self.committed)}, rerun {_short(self.rerun)}"
        return f"{self.status:<8} {self.path}" + (" (not compared)" if self.status == "timing" else "")


def _short(digest: str | None) -> str:
    return "none" if digest is None else digest.removesuffix(".dir")[:12]


def lock_outputs(lock: Mapping[str, Any], stages: Sequence[str] | None = None) -> dict[str, str | None]:
    """``{path: md5}`` of every output (cached or not) of ``stages`` (default: all) in a parsed dvc.lock."""
    found = (lock or {}).get("stages", {})
    return {
        out["path"]: out.get("md5")
        for name, stage in found.items()
        if stages is None or name in stages
        for out in stage.get("outs", [])
    }


def compare_locks(
    committed: Mapping[str, Any], rerun: Mapping[str, Any], stages: Sequence[str] | None = None
) -> list[OutputCheck]:
    """Every output of ``stages`` in either lock, in path order, with both hashes."""
    before, after = lock_outputs(committed, stages), lock_outputs(rerun, stages)
    return [
        OutputCheck(path, before.get(path), after.get(path)) for path in sorted(before.keys() | after.keys())
    ]


def verify(repo: Path, targets: Sequence[str] = (), workdir: Path | None = None, keep: bool = False) -> int:
    """Rerun ``repo``'s committed pipeline (or ``targets``) in a clone; print one line per output.

    Returns 0 when every output equals the committed dvc.lock (timing files aside), else 1."""
    root = _git_root(repo)
    committed = yaml.safe_load(
        _git(
            root,
            "show",
            "HEAD:dvc.lock",
            problem="the last commit has no dvc.lock: run the pipeline and commit it",
        )
    )
    if _git(root, "status", "--porcelain", "--untracked-files=no", problem="git status failed").strip():
        log.warning("the workspace has uncommitted changes; verify reruns the last commit, without them")
    parent = Path(tempfile.mkdtemp(prefix="cocoseg-verify-", dir=workdir))
    clone = parent / "clone"
    try:
        _rerun(root, clone, targets)
        rerun = yaml.safe_load((clone / "dvc.lock").read_text())
    finally:
        if keep:
            log.info("the rerun is kept in %s", clone)
        else:
            shutil.rmtree(parent, ignore_errors=True)
    checks = compare_locks(committed, rerun, list(targets) or None)
    for check in checks:
        _emit(check.line())
    differ = [c for c in checks if c.status == "DIFFERS"]
    _emit(
        f"{len(checks)} outputs checked, {len(differ)} differ from the dvc.lock of commit "
        f"{_git(root, 'rev-parse', '--short', 'HEAD', problem='no commit').strip()}"
    )
    return 1 if differ else 0


def _rerun(root: Path, clone: Path, targets: Sequence[str]) -> None:
    """Clone ``root``'s HEAD to ``clone`` and run DVC there on the clone's own code."""
    _run(["git", "clone", "-q", str(root), str(clone)], root)
    if targets:  # the stages not rerun: their outputs, linked from this repository's cache
        cache = subprocess.run(
            [sys.executable, "-m", "dvc", "cache", "dir"],
            cwd=root,
            check=False,
            capture_output=True,
            text=True,
        )
        if cache.returncode != 0:
            raise VerifyError(f"{root}: no DVC cache to take the other stages' outputs from")
        _run(["dvc", "cache", "dir", "--local", cache.stdout.strip()], clone)
        _run(["dvc", "checkout", "--quiet"], clone)
    _run(["dvc", "repro", "--force", *(["--single-item", *targets] if targets else [])], clone)


def _run(command: list[str], cwd: Path) -> None:
    """Run a git or dvc command, printed first (so users learn the sequence); its own output goes on."""
    _emit("$ " + shlex.join(command))
    if command[0] == "dvc":  # the dvc of this Python, whatever PATH says
        command = [sys.executable, "-m", "dvc", *command[1:]]
    # The clone's stages import the clone's code, not the installed package: the commit is what is checked.
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(cwd / "src"), os.environ.get("PYTHONPATH", "")]),
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    }
    if subprocess.run(command, cwd=cwd, env=env, check=False).returncode != 0:
        raise VerifyError(f"{shlex.join(command)} failed in {cwd} (see its output above)")


def _git_root(path: Path) -> Path:
    return Path(
        _git(
            path,
            "rev-parse",
            "--show-toplevel",
            problem="not inside a git repository: verify reruns a commit",
        ).strip()
    )


def _git(cwd: Path, *args: str, problem: str) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise VerifyError(f"{cwd}: {problem}")
    return result.stdout


def _emit(text: str) -> None:
    """The verdict is the command's output (stdout); diagnostics go through logging to stderr."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()

"""For the DVC end-to-end tests: a copy of this project in a temporary repo, and the venv's commands run in it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def copy_project(repo: Path) -> None:
    """Copy dvc.yaml, params.yaml, stages/ and src/ (the stages' deps; imports use the venv's install)."""
    repo.mkdir(parents=True)
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(REPO / name, repo / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(REPO / "stages", repo / "stages", ignore=ignore)
    shutil.copytree(REPO / "src", repo / "src", ignore=ignore)


def run(repo: Path, *args: str, timeout: float = 300) -> str:
    """Run ``dvc`` (the venv's) or another command in ``repo``; return stdout and stderr together."""
    venv_bin = str(Path(sys.executable).parent)  # so `python` in stage commands is the venv's too
    # One torch thread per stage: the tiny tensors gain nothing from two, and on a busy 2-core machine an
    # oversubscribed thread pool made a DeepLabV3 step 5-10x slower.
    env = {**os.environ, "PATH": os.pathsep.join([venv_bin, os.environ.get("PATH", "")]),
           "DVC_NO_ANALYTICS": "1", "GIT_TERMINAL_PROMPT": "0", "OMP_NUM_THREADS": "1"}
    exe = str(Path(venv_bin) / "dvc") if args[0] == "dvc" else args[0]
    result = subprocess.run([exe, *args[1:]], cwd=repo, env=env, capture_output=True, text=True, timeout=timeout)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output

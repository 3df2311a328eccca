"""A failed `dvc exp run` deletes no output (issue 21, class 5): for a bad value of a parameter of each stage,
the check stage, which every stage depends on, fails first with the stage's own line, before DVC removes any
output; `git status` then shows only params.yaml and every output's bytes are as they were."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import git_commit, one_model_project, run_in

# One bad value (or two) for a parameter of every stage; what each used to cost is in docs/hostile-input.md.
BAD = {
    "download": (["data.sample.num_images=8"], "data.sample.num_images: 8 is not allowed"),
    "extract": (["data.splits=[train2017]"], "data.splits: ['train2017'] is not allowed"),
    "masks": (["masks.overlap=biggest"], "masks.overlap: 'biggest' is not allowed"),
    "masks, a range": (["masks.val_fraction=1.5"], "masks.val_fraction: 1.5 is not allowed"),
    "masks, a name": (["masks.categories=[dgo]"], "masks.categories: unknown category 'dgo'"),
    "train": (["train.lr=-1"], "train.lr: -1.0 is not allowed"),
    "evaluate": (["evaluate.upsample=cubic"], "evaluate.upsample: 'cubic' is not allowed"),
    # An edit (-S models={} merges nothing), then `dvc repro`: `dvc exp run` first checks the workspace out
    # (`dvc checkout --force`), which removes the outputs of stages gone from dvc.yaml (here every train and
    # evaluate stage) before any stage runs; see docs/hostile-input.md.
    "compare": ("models: {}", "models: no model is defined"),
}


def outputs(repo: Path) -> dict[str, str]:
    """SHA-256 of every file of every stage output (DVC-cached and git-tracked alike)."""
    files = [p for top in ("data", "models", "results") for p in (repo / top).rglob("*") if p.is_file()]
    return {
        str(p.relative_to(repo)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(files)
        if "downloads" not in p.parts
    }


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shrunken one-model pipeline, reproduced and committed."""
    repo = tmp_path_factory.mktemp("failed") / "repo"
    one_model_project(repo)
    run_in(repo, "dvc", "repro", timeout=600)
    git_commit(repo, "reproduced")
    return repo


@pytest.mark.slow
@pytest.mark.parametrize("stage", sorted(BAD))
def test_failed_experiment_deletes_no_output(repo: Path, stage: str) -> None:
    changes, message = BAD[stage]
    assert run_in(repo, "git", "status", "--porcelain") == ""
    before = outputs(repo)
    assert any(name.startswith("data/masks/semantic/") for name in before)
    env = {
        **os.environ,
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
        "DVC_NO_ANALYTICS": "1",
        "OMP_NUM_THREADS": "1",
    }
    command = ["dvc", "exp", "run", *(arg for change in changes for arg in ("-S", change))]
    if isinstance(changes, str):  # an edit of params.yaml by hand, then `dvc repro`
        text = (repo / "params.yaml").read_text()
        (repo / "params.yaml").write_text(
            text[: text.index("models:")] + changes + "\n" + text[text.index("evaluate:") :]
        )
        command = ["dvc", "repro"]
    result = subprocess.run(
        command, cwd=repo, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    output = result.stdout + result.stderr
    try:
        assert result.returncode != 0, output
        assert f"ERROR cocoseg: params.yaml: {message}" in output, output
        assert "Running stage 'check'" in output and "Running stage 'download'" not in output
        assert "Traceback" not in output
        assert run_in(repo, "git", "status", "--porcelain") == " M params.yaml\n", output
        assert outputs(repo) == before
    finally:
        run_in(repo, "git", "checkout", "params.yaml")

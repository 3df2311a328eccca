"""Training under DVC survives: a SIGKILL mid-epoch resumes to the same bytes, and a failed experiment
leaves `dvc status` and `git status` showing only what the user changed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from helpers import REPO, copy_project, run_in

GIT = ("-c", "user.name=test", "-c", "user.email=test@example.com", "-c", "commit.gpgsign=false")
OUTPUTS = (
    "models/fastscnn/model.pt",
    "results/train/fastscnn/metrics.json",
    "results/train/fastscnn/metrics_first_iter.json",
    "results/evaluate/fastscnn/metrics.json",
)


def env() -> dict[str, str]:
    venv_bin = str(Path(sys.executable).parent)
    return {
        **os.environ,
        "PATH": os.pathsep.join([venv_bin, os.environ.get("PATH", "")]),
        "DVC_NO_ANALYTICS": "1",
        "GIT_TERMINAL_PROMPT": "0",
        "OMP_NUM_THREADS": "1",
        "CUDA_VISIBLE_DEVICES": "",
    }  # no GPU, anywhere


def set_params(repo: Path, **train: object) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["train"].update(train)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def snapshot(repo: Path) -> dict[str, bytes]:
    files = {name: (repo / name).read_bytes() for name in OUTPUTS}
    plots = repo / "results" / "train" / "fastscnn" / "plots"
    return files | {str(p.relative_to(repo)): p.read_bytes() for p in sorted(plots.rglob("*.tsv"))}


def commit(repo: Path, message: str) -> None:
    run_in(repo, "git", "add", "-A")
    run_in(repo, "git", *GIT, "commit", "-q", "-m", message)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-model project (Fast-SCNN, 4 epochs of 5 batches on the shrunken sample), committed after repro."""
    repo = tmp_path_factory.mktemp("survives") / "repo"
    copy_project(repo)
    shutil.copy(REPO / ".gitignore", repo / ".gitignore")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["data"]["sample"].update(num_images=16, min_size=64, max_size=80)
    params["masks"].update(preview=0, workers=1)
    params["train"].update(epochs=4, batch_size=2, image_size=[64, 64], workers=0)
    params["models"] = {
        "fastscnn": {"arch": "fastscnn", "encoder": "resnet18", "lr": 0.01}
    }  # encoder: for -S
    params["evaluate"].update(speed_batches=1, workers=0)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run_in(repo, "git", "init", "-q")
    run_in(repo, "dvc", "init", "-q")
    run_in(repo, "dvc", "config", "core.check_update", "false")
    commit(repo, "one-model pipeline")  # dvclive needs a commit (treeverse/dvclive#522)
    run_in(repo, "dvc", "repro", timeout=600)
    commit(repo, "reference run")
    return repo


@pytest.mark.slow
def test_sigkill_mid_epoch_then_repro_resumes_to_the_same_bytes(repo: Path) -> None:
    reference = snapshot(repo)
    set_params(repo, epochs=3)  # another run first, so that going back to 4 epochs is a change DVC reruns
    run_in(repo, "dvc", "repro", timeout=600)
    other = snapshot(repo)
    set_params(repo, epochs=4)

    proc = subprocess.Popen(
        [shutil.which("dvc", path=env()["PATH"]), "repro"],
        cwd=repo,
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    saved = repo / "checkpoints" / "fastscnn" / "last" / "last.ckpt"
    deadline = time.monotonic() + 300
    while not saved.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)  # dvc and the stage, in the epoch after the first saved one
    proc.wait()
    assert saved.is_file(), "training ended before a checkpoint was kept"
    assert snapshot(repo) == other  # the killed run replaced nothing

    output = run_in(repo, "dvc", "repro", timeout=600)
    assert "resuming from checkpoints/fastscnn/last/last.ckpt" in output, output
    assert "Running stage 'train@fastscnn'" in output
    assert snapshot(repo) == reference  # model bytes, metrics, every history row, and evaluate's scores
    assert not (repo / "checkpoints" / "fastscnn").exists()
    # the same outputs, so DVC skipped evaluate, and dvc.lock and results/ are as committed after the reference
    assert run_in(repo, "git", "status", "--porcelain") == ""


def status(repo: Path) -> tuple[str, dict]:
    git = run_in(repo, "git", "status", "--porcelain")
    return git, json.loads(run_in(repo, "dvc", "status", "--json").strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize(
    ("changes", "error"),
    [
        (
            ["models.fastscnn.arch=unet", "models.fastscnn.encoder=resnet343"],
            "models.fastscnn.encoder: 'resnet343' is not allowed",
        ),
        (["train.accelerator=gpu"], "train.accelerator: 'gpu' with train.devices 'auto' is not possible"),
    ],
)
def test_failed_experiment_changes_only_params(repo: Path, changes: list[str], error: str) -> None:
    assert status(repo) == ("", {})
    before = snapshot(repo)
    result = subprocess.run(
        ["dvc", "exp", "run", *(a for c in changes for a in ("-S", c))],
        cwd=repo,
        env=env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    assert error in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    git, dvc = status(repo)
    assert git == " M params.yaml\n"  # what the user changed, nothing else
    assert set(dvc) <= {"check", "train@fastscnn", "evaluate@fastscnn", "compare"}, dvc
    for stage, changes_seen in dvc.items():  # only params.yaml changed; no output deleted or modified
        assert [set(change.get("changed deps", {})) for change in changes_seen] == [{"params.yaml"}], (
            stage,
            dvc,
        )
    assert snapshot(repo) == before
    run_in(repo, "git", "checkout", "params.yaml")

"""cocoseg verify: the committed dvc.lock against a rerun in a temporary clone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import assert_one_error, git_commit, one_model_project, run_in

from cocoseg.verify import OutputCheck, compare_locks, lock_outputs

LOCK = {
    "schema": "2.0",
    "stages": {
        "masks": {
            "cmd": "python stages/masks.py",
            "outs": [
                {"path": "data/masks/semantic", "hash": "md5", "md5": "aaaa.dir", "size": 1, "nfiles": 2},
                {"path": "data/masks/split.json", "hash": "md5", "md5": "bbbb", "size": 1},
            ],
        },
        "evaluate@x": {
            "cmd": "python stages/evaluate.py --model x",
            "outs": [
                {"path": "results/evaluate/x/metrics.json", "hash": "md5", "md5": "cccc", "size": 1},
                {"path": "results/evaluate/x/speed.json", "hash": "md5", "md5": "dddd", "size": 1},
            ],
        },
    },
}


def with_hash(lock: dict, path: str, md5: str) -> dict:
    stages = {
        name: {
            **stage,
            "outs": [{**out, "md5": md5} if out["path"] == path else out for out in stage["outs"]],
        }
        for name, stage in lock["stages"].items()
    }
    return {**lock, "stages": stages}


def test_lock_outputs_of_all_or_some_stages() -> None:
    assert lock_outputs(LOCK) == {
        "data/masks/semantic": "aaaa.dir",
        "data/masks/split.json": "bbbb",
        "results/evaluate/x/metrics.json": "cccc",
        "results/evaluate/x/speed.json": "dddd",
    }
    assert set(lock_outputs(LOCK, ["masks"])) == {"data/masks/semantic", "data/masks/split.json"}
    assert lock_outputs({}) == {}


def test_compare_names_what_differs_and_leaves_timing_files_aside() -> None:
    rerun = with_hash(
        with_hash(LOCK, "data/masks/semantic", "eeee.dir"), "results/evaluate/x/speed.json", "ffff"
    )
    checks = {c.path: c.status for c in compare_locks(LOCK, rerun)}  # models, masks, history: reproduced
    assert checks == {
        "data/masks/semantic": "DIFFERS",
        "data/masks/split.json": "same",
        "results/evaluate/x/metrics.json": "same",
        "results/evaluate/x/speed.json": "timing",
    }
    only = compare_locks(LOCK, rerun, ["evaluate@x"])
    assert [c.path for c in only] == ["results/evaluate/x/metrics.json", "results/evaluate/x/speed.json"]


def test_an_output_only_one_lock_has_differs() -> None:
    rerun = {"stages": {"masks": {"outs": LOCK["stages"]["masks"]["outs"][:1]}}}
    (check,) = [c for c in compare_locks(LOCK, rerun, ["masks"]) if c.status == "DIFFERS"]
    assert check == OutputCheck("data/masks/split.json", "bbbb", None)
    assert check.line() == "DIFFERS  data/masks/split.json: committed bbbb, rerun none"


@pytest.mark.parametrize("committed", [False, True])
def test_no_repository_or_no_lock_is_one_error_line(tmp_path: Path, committed: bool) -> None:
    if committed:  # a repository whose last commit holds no dvc.lock
        run_in(tmp_path, "git", "init", "-q")
        (tmp_path / "params.yaml").write_text("{}\n")
        git_commit(tmp_path, "no pipeline run yet")
    result = subprocess.run(
        [sys.executable, "-m", "cocoseg", "verify"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "GIT_CEILING_DIRECTORIES": str(tmp_path.parent)},
    )
    message = "the last commit has no dvc.lock" if committed else "not inside a git repository"
    assert_one_error(result, str(tmp_path), message)


def verify_in(repo: Path, *args: str) -> tuple[int, list[str]]:
    """``cocoseg verify`` in ``repo``: its exit status and the lines it prints, DVC's own output and the
    commands it runs aside."""
    env = {
        **os.environ,
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
        "DVC_NO_ANALYTICS": "1",
    }
    result = subprocess.run(
        [sys.executable, "-m", "cocoseg", "verify", *args],
        cwd=repo,
        env=env,
        text=True,
        capture_output=True,
        timeout=600,
        check=False,
    )
    assert "Traceback" not in result.stderr, result.stderr
    lines = [
        line
        for line in result.stdout.splitlines()
        if line.split(" ", 1)[0] in ("same", "DIFFERS", "timing") or "outputs checked" in line
    ]
    return result.returncode, lines


@pytest.mark.slow
def test_verify_reruns_the_commit_and_names_each_output_that_differs(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    one_model_project(repo)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["train"]["threads"] = params["evaluate"]["threads"] = 1
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (repo / ".gitignore").write_text("runs/\ncheckpoints/\n")
    run_in(repo, "dvc", "repro")
    # The committed lock claims other bytes for one output: verify must name that one and no other.
    lock_path, metrics = repo / "dvc.lock", "results/evaluate/fastscnn/metrics.json"
    outputs = lock_outputs(yaml.safe_load(lock_path.read_text()))
    lock_path.write_text(
        yaml.safe_dump(with_hash(yaml.safe_load(lock_path.read_text()), metrics, "0" * 32), sort_keys=False)
    )
    git_commit(repo, "results")
    work = tmp_path / "work"
    work.mkdir()

    status, lines = verify_in(repo, "--workdir", str(work))
    assert status == 1
    assert [line for line in lines if line.startswith("DIFFERS")] == [
        f"DIFFERS  {metrics}: committed 000000000000, rerun {outputs[metrics][:12]}"
    ]  # the real bytes again
    timing = {"results/evaluate/fastscnn/speed.json", "results/compare.md", "results/compare.json"}
    assert {line.split()[1] for line in lines if line.startswith("same")} == set(outputs) - timing - {metrics}
    assert {line.split()[1] for line in lines if line.startswith("timing")} == timing  # images/s
    assert lines[-1].startswith(f"{len(outputs)} outputs checked, 1 differ")
    assert list(work.iterdir()) == []  # the clone is gone

    # Only one stage: it reruns on the other stages' outputs from this repository's cache.
    status, lines = verify_in(repo, "evaluate@fastscnn", "--workdir", str(work))
    assert status == 1
    assert sorted(line.split()[1].rstrip(":") for line in lines[:-1]) == sorted(
        p for p in outputs if p.startswith("results/evaluate/fastscnn/")
    )
    assert [line.split()[1] for line in lines if line.startswith("DIFFERS")] == [f"{metrics}:"]

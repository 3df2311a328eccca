"""params.yaml changed while a stage runs (issue 21, class 6): the stage notices that a parameter it read is
no longer what params.yaml holds and fails before it publishes anything, so DVC writes no lock that records
parameters the outputs were not made with."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from helpers import REPO, assert_one_error, one_model_project, run_in, write_sample
from proctree import GB, assert_contained, watch

from cocoseg.core.params_guard import STAGE_PARAMS

# The masks stage as a user runs it, with params.yaml edited the moment the stage has read it: what a
# `dvc exp run -S ...` refused by DVC's lock does to a running `dvc repro`.
EDIT_WHILE_RUNNING = """
import runpy, sys
import cocoseg.masks.build as build
real, old, new = build.build_masks, sys.argv[1], sys.argv[2]
def edited_meanwhile(*args, **kwargs):
    text = open("params.yaml").read()
    open("params.yaml", "w").write(text.replace(old, new))
    return real(*args, **kwargs)
build.build_masks = edited_meanwhile
stage = sys.argv[3]
sys.argv = [stage, "--coco", "coco", "--out", "masks"]
runpy.run_path(stage, run_name="__main__")
"""


def masks_while_edited(tmp_path: Path, old: str, new: str):
    return watch(
        [sys.executable, "-c", EDIT_WHILE_RUNNING, old, new, str(REPO / "stages" / "masks.py")], tmp_path
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    write_sample(tmp_path / "coco", num_images=16)
    (tmp_path / "params.yaml").write_text(
        "masks:\n  overlap: void\n  workers: 1\n  preview: 1\ntrain:\n  epochs: 3\n"
    )
    return tmp_path


def test_a_stage_whose_parameters_changed_publishes_nothing(project: Path) -> None:
    result = masks_while_edited(project, "overlap: void", "overlap: smaller_on_top")
    assert_one_error(
        result,
        "params.yaml: masks.overlap changed while this stage ran ('void' when it started, "
        "'smaller_on_top' now); nothing was published",
    )
    assert not (project / "masks").exists()
    assert sorted(p.name for p in project.iterdir()) == ["coco", "params.yaml"]  # no temporary folder left
    assert_contained(result, limit=GB)


def test_a_change_to_what_the_stage_does_not_read_is_no_alarm(project: Path) -> None:
    result = masks_while_edited(project, "epochs: 3", "epochs: 2")
    assert result.returncode == 0, result.stderr
    assert (project / "masks" / "manifest.tsv").is_file()


def test_the_guarded_keys_are_the_stages_params_in_dvc_yaml() -> None:
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        body = stage.get("do", stage)
        declared = [str(p).replace("${key}", "{model}") for p in body.get("params", [])]
        assert tuple(declared) == STAGE_PARAMS[name], name


@pytest.mark.slow
def test_exp_run_refused_by_the_lock_does_not_leave_a_false_lock(tmp_path: Path) -> None:
    """The issue's case: `dvc exp run -S train.epochs=2` while `dvc repro` trains is refused by DVC's lock, yet
    rewrites params.yaml; the training run must then fail rather than let dvc.lock record epochs: 2."""
    repo = tmp_path / "repo"
    one_model_project(repo)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["train"]["epochs"] = 3
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    dvc = str(Path(sys.executable).parent / "dvc")
    repro = subprocess.Popen(
        [dvc, "repro"], cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    deadline = time.monotonic() + 300
    while not (repo / "checkpoints" / "fastscnn" / "run").exists() and repro.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    refused = subprocess.run(
        [dvc, "exp", "run", "-S", "train.epochs=2"],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output, _ = repro.communicate(timeout=600)
    assert refused.returncode != 0
    if "epochs: 2" not in (repo / "params.yaml").read_text():
        pytest.skip("this DVC did not rewrite params.yaml before refusing the run: nothing to guard against")
    assert repro.returncode != 0, output
    # DVC rewrites params.yaml more than once while it refuses the run (-S's 2, the commit's 1, the
    # workspace's 3 back): the stage sees whichever it checks at, never the 3 it started with
    changed = re.search(
        r"params\.yaml: train\.epochs changed while this stage ran \(3 when it started, (\d) now\)", output
    )
    assert changed and changed.group(1) in ("1", "2"), output
    assert "Traceback" not in output
    lock = yaml.safe_load((repo / "dvc.lock").read_text()) if (repo / "dvc.lock").exists() else {"stages": {}}
    assert "train@fastscnn" not in lock["stages"]  # no lock that calls a 3-epoch run a 2-epoch one
    assert not (repo / "models" / "fastscnn" / "model.pt").exists()
    shutil.rmtree(repo / "checkpoints", ignore_errors=True)
    assert "train@fastscnn" in run_in(repo, "dvc", "status")

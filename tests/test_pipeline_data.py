"""The data half under DVC: download -> extract -> masks in a fresh repo, then a no-op and a param rerun."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def dvc(repo: Path, *args: str) -> str:
    """Run the venv's dvc in ``repo``; return stdout and stderr together."""
    venv_bin = str(Path(sys.executable).parent)  # so `python` in stage commands is the venv's too
    env = {**os.environ, "PATH": os.pathsep.join([venv_bin, os.environ.get("PATH", "")]),
           "DVC_NO_ANALYTICS": "1", "GIT_TERMINAL_PROMPT": "0"}
    result = subprocess.run([str(Path(venv_bin) / "dvc"), *args], cwd=repo, env=env, capture_output=True,
                            text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


@pytest.mark.slow
def test_dvc_repro_masks(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(REPO / name, repo / name)
    shutil.copytree(REPO / "stages", repo / "stages", ignore=shutil.ignore_patterns("__pycache__"))
    # dvc.yaml names library files as deps; the stages import the editable install all the same
    shutil.copytree(REPO / "src" / "cocoseg", repo / "src" / "cocoseg",
                    ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    dvc(repo, "init", "-q")
    dvc(repo, "config", "core.check_update", "false")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["masks"]["workers"] = 2
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    first = dvc(repo, "repro", "masks")
    for stage in ("download", "extract", "masks"):
        assert f"Running stage '{stage}'" in first
    masks = repo / "data" / "masks"
    report = json.loads((masks / "report.json").read_text())
    assert report["counts"]["images_written"] == 61
    assert len(list((masks / "semantic" / "val2017").glob("*.png"))) == 61
    assert len(list((masks / "preview").glob("*.png"))) == params["masks"]["preview"]
    assert (repo / "dvc.lock").is_file()
    assert set(yaml.safe_load((repo / "dvc.lock").read_text())["stages"]) == {"download", "extract", "masks"}
    before = (masks / "semantic" / "val2017" / "000000000001.png").stat().st_mtime_ns

    second = dvc(repo, "repro", "masks")
    assert "Running stage" not in second
    for stage in ("download", "extract", "masks"):
        assert f"Stage '{stage}' didn't change, skipping" in second
    assert "Data and pipelines are up to date." in second
    assert (masks / "semantic" / "val2017" / "000000000001.png").stat().st_mtime_ns == before

    params["masks"]["preview"] = 0  # a masks-only knob; also checks an empty preview folder is fine
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    third = dvc(repo, "repro", "masks")
    assert "Stage 'download' didn't change, skipping" in third
    assert "Stage 'extract' didn't change, skipping" in third
    assert "Running stage 'masks'" in third
    assert "Running stage 'download'" not in third and "Running stage 'extract'" not in third
    assert list((masks / "preview").glob("*.png")) == []
    assert "Running stage" not in dvc(repo, "repro", "masks")

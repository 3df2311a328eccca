"""The data half under DVC: download -> extract -> masks in a fresh repo, then a no-op and a param rerun."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from helpers import copy_project, run_in


def dvc(repo: Path, *args: str) -> str:
    return run_in(repo, "dvc", *args, timeout=120)


@pytest.mark.slow
def test_dvc_repro_masks(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    copy_project(repo)
    run_in(repo, "git", "init", "-q")
    dvc(repo, "init", "-q")
    dvc(repo, "config", "core.check_update", "false")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["masks"]["workers"] = 2
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    first = dvc(repo, "repro", "masks")
    for stage in ("check", "download", "extract", "masks"):
        assert f"Running stage '{stage}'" in first
    masks = repo / "data" / "masks"
    report = json.loads((masks / "report.json").read_text())
    assert report["counts"]["images_written"] == 61
    assert len(list((masks / "semantic" / "val2017").glob("*.png"))) == 61
    assert len(list((masks / "preview").glob("*.png"))) == params["masks"]["preview"]
    assert (repo / "dvc.lock").is_file()
    assert set(yaml.safe_load((repo / "dvc.lock").read_text())["stages"]) == {
        "check",
        "download",
        "extract",
        "masks",
    }
    before = (masks / "semantic" / "val2017" / "000000000001.png").stat().st_mtime_ns

    second = dvc(repo, "repro", "masks")
    assert "Running stage" not in second
    for stage in ("check", "download", "extract", "masks"):
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

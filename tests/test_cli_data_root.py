"""`cocoseg train|prepare --data_root DIR`: the layout found in DIR becomes -S values that DVC's own parser
applies to params.yaml, giving a valid data.source: local configuration."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from dvc.utils.hydra import apply_overrides
from helpers import committed_params
from local_exports import write_coco_layout, write_roboflow
from test_cli import dry_run, set_values

from cocoseg.core.params import load_params


@pytest.fixture
def params_path(tmp_path: Path) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(committed_params())
    return path


def local_splits(params_path: Path) -> dict[str, tuple[str, str]]:
    data = load_params(params_path).data
    assert data.source == "local"
    return {name: (str(s.annotations), str(s.images)) for name, s in data.local.splits.items()}


def test_a_roboflow_export_outside_the_repository_gets_absolute_paths(
    params_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    export = write_roboflow(tmp_path / 'my export\'s "v2"')  # a space, a quote and double quotes
    (tmp_path / "repo").mkdir()
    monkeypatch.chdir(tmp_path / "repo")
    command = dry_run(params_path, "train", "--data_root", str(export), "--epochs", "2")
    assert command[:5] == ["dvc", "exp", "run", "-S", "data.source=local"]
    assert set_values(command)[1] == "data.splits=[test,train,valid]"
    apply_overrides(str(params_path), set_values(command))
    assert load_params(params_path).data.splits == ("test", "train", "valid")
    assert local_splits(params_path) == {
        s: (f"{export}/{s}/_annotations.coco.json", f"{export}/{s}") for s in ("test", "train", "valid")
    }
    assert load_params(params_path).train.epochs == 2


def test_an_export_inside_the_repository_gets_relative_paths_and_replaces_earlier_splits(
    params_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = yaml.safe_load(params_path.read_text())
    raw["data"]["local"]["splits"] = {"old": {"annotations": "old.json", "images": "old"}}
    params_path.write_text(yaml.safe_dump(raw))
    write_coco_layout(tmp_path / "exports" / "coco", {"train2017": 1, "val2017": 1}, "images/{split}")
    monkeypatch.chdir(tmp_path)
    command = dry_run(params_path, "prepare", "--data_root", "exports/coco", "--visualize", "2")
    assert command[:4] == ["dvc", "exp", "run", "masks"]
    assert "~data.local.splits" in set_values(command)
    apply_overrides(str(params_path), set_values(command))
    assert local_splits(params_path) == {
        s: (f"exports/coco/annotations/instances_{s}.json", f"exports/coco/images/{s}")
        for s in ("train2017", "val2017")
    }
    assert load_params(params_path).masks.preview == 2


def run_cli(params_path: Path, *words: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cocoseg", *words, "--params", str(params_path), "--dry-run"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        check=False,
    )


def test_an_unrecognised_folder_is_one_line_listing_what_it_holds(params_path: Path, tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.jpg").write_bytes(b"x")
    result = run_cli(params_path, "train", "--data_root", "photos", cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
    assert errors == [
        (
            "ERROR cocoseg: photos: no COCO export layout recognised: found no JSON file, 1 image(s) "
            "in ./; expected <split>/_annotations.coco.json beside its images, "
            "annotations/instances_<split>.json with <split>/ or images/<split>/, or a COCO JSON beside "
            "an images folder"
        )
    ]


def test_a_split_yaml_would_read_as_a_number_is_refused(params_path: Path, tmp_path: Path) -> None:
    write_roboflow(tmp_path / "export", {"2023": 1})
    result = run_cli(params_path, "prepare", "--data_root", "export", cwd=tmp_path)
    assert result.returncode == 1
    assert "--data_root export: split '2023' would read as 2023 in params.yaml" in result.stderr


def test_queueing_an_untracked_folder_inside_the_repository_warns(params_path: Path, tmp_path: Path) -> None:
    write_roboflow(tmp_path / "export", {"train": 1})
    result = run_cli(params_path, "train", "--data_root", "export", "--queue", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (
        "a queued experiment runs in a copy of the repository, which holds export only if git"
        in result.stderr
    )
    (tmp_path / "export.dvc").write_text("outs: []\n")  # tracked by DVC: the copy gets it with the repository
    result = run_cli(params_path, "train", "--data_root", "export", "--queue", cwd=tmp_path)
    assert "queued experiment" not in result.stderr

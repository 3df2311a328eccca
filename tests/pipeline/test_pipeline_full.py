"""The whole pipeline under DVC on a shrunken configuration: repro, a no-op, then one model's experiment."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import torch
import yaml
from helpers import copy_project, git_commit, ran, run_in

MODELS = ("unet", "deeplabv3", "fastscnn")
STAGES = ("check", "download", "extract", "masks", *(f"train@{m}" for m in MODELS), *(f"evaluate@{m}" for m in MODELS),
          "compare")


@pytest.mark.slow
def test_dvc_repro_whole_pipeline(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    copy_project(repo)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["data"]["sample"].update(num_images=16, min_size=64, max_size=80)  # evaluate scores at full size
    params["masks"].update(preview=1, workers=2)
    params["train"].update(epochs=1, image_size=[64, 64], workers=0)
    params["evaluate"]["speed_batches"] = 1
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run_in(repo, "git", "init", "-q")
    run_in(repo, "dvc", "init", "-q")
    run_in(repo, "dvc", "config", "core.check_update", "false")
    # A clone has commits; a fresh `git init` has none, and dvclive 3.49 then crashes in the train stage
    # (it asks git for HEAD before checking there is one, treeverse/dvclive#522): start from a commit.
    git_commit(repo, "shrunken pipeline")

    first = run_in(repo, "dvc", "repro")
    assert ran(first) == set(STAGES), first
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    assert set(lock) == set(STAGES)
    for model in MODELS:
        assert (repo / "models" / model / "model.pt").is_file()
    compare = json.loads((repo / "results" / "compare.json").read_text())
    assert sorted(r["model"] for r in compare["models"]) == sorted(MODELS)
    lines = (repo / "results" / "compare.md").read_text().splitlines()
    rows = [line.split(" | ")[0].removeprefix("| ") for line in lines if line.startswith("| ")][1:]
    assert sorted(rows) == sorted(MODELS)  # one row per model, after the header
    metrics = run_in(repo, "dvc", "metrics", "show")
    for model in MODELS:
        assert f"results/evaluate/{model}/metrics.json" in metrics
        assert f"results/train/{model}/metrics.json" in metrics

    second = run_in(repo, "dvc", "repro")
    assert ran(second) == set(), second
    assert "Data and pipelines are up to date." in second

    # What a user does to try one knob: commit the results, then an experiment that changes one model's lr.
    git_commit(repo, "baseline")
    before = {m: (repo / "models" / m / "model.pt").read_bytes() for m in MODELS}
    third = run_in(repo, "dvc", "exp", "run", "-S", "models.fastscnn.lr=0.02")
    assert ran(third) == {"check", "train@fastscnn", "evaluate@fastscnn", "compare"}, third  # check: any param
    assert yaml.safe_load((repo / "params.yaml").read_text())["models"]["fastscnn"]["lr"] == 0.02
    assert (repo / "models" / "unet" / "model.pt").read_bytes() == before["unet"]
    assert (repo / "models" / "fastscnn" / "model.pt").read_bytes() != before["fastscnn"]
    table = list(csv.DictReader(io.StringIO(run_in(repo, "dvc", "exp", "show", "--csv"))))
    lr = next(column for column in table[0] if column.endswith("models.fastscnn.lr"))
    assert [row[lr] for row in table if row["Experiment"]] == ["0.02"]  # the experiment is recorded ...
    assert [row[lr] for row in table if row["typ"] == "baseline" and row["rev"] != "workspace"] == ["0.01"]

    # A fourth model is one params.yaml entry: any segmentation-models-pytorch architecture by its name.
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["models"]["fpn"] = {"arch": "fpn", "encoder": "resnet18", "encoder_weights": None,
                               "options": {"decoder_pyramid_channels": 32, "decoder_segmentation_channels": 32}}
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    fourth = run_in(repo, "dvc", "repro")
    assert ran(fourth) == {"check", "train@fpn", "evaluate@fpn", "compare"}, fourth
    spec = torch.load(repo / "models" / "fpn" / "model.pt", weights_only=True)["model"]
    assert spec["arch"] == "fpn" and spec["decoder_pyramid_channels"] == 32  # options travel in the model file
    assert 0 <= json.loads((repo / "results" / "evaluate" / "fpn" / "metrics.json").read_text())["miou"] <= 1
    compare = json.loads((repo / "results" / "compare.json").read_text())
    assert sorted(r["model"] for r in compare["models"]) == sorted([*MODELS, "fpn"])
    curves = list(csv.DictReader(io.StringIO((repo / "results" / "val_miou.tsv").read_text()), delimiter="\t"))
    assert {row["model"] for row in curves} == {*MODELS, "fpn"}  # the all-models plot follows params.yaml

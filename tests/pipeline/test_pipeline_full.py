"""The whole pipeline under DVC on a shrunken configuration: repro (its log read as a user reads it), a no-op,
then one model's experiment through `cocoseg train`, whose comparison must be its own."""

from __future__ import annotations

import csv
import io
import json
import re
import sys
from pathlib import Path

import pytest
import torch
import yaml
from helpers import copy_project, git_commit, ran, run_in

MODELS = ("unet", "deeplabv3", "fastscnn")
STAGES = (
    "check",
    "download",
    "extract",
    "masks",
    *(f"train@{m}" for m in MODELS),
    *(f"evaluate@{m}" for m in MODELS),
    "compare",
)


@pytest.mark.slow
def test_dvc_repro_whole_pipeline(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    copy_project(repo)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["data"]["sample"].update(num_images=16, min_size=64, max_size=80)  # evaluate scores at full size
    params["masks"].update(preview=1, workers=2)
    params["train"].update(epochs=2, image_size=[64, 64], workers=0)
    params["evaluate"]["speed_batches"] = 1
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run_in(repo, "git", "init", "-q")
    run_in(repo, "dvc", "init", "-q")
    run_in(repo, "dvc", "config", "core.check_update", "false")
    # A clone has commits; a fresh `git init` has none, and dvclive 3.49 then crashes in the train stage
    # (it asks git for HEAD before checking there is one, treeverse/dvclive#522): start from a commit.
    git_commit(repo, "shrunken pipeline")

    first = run_in(repo, "dvc", "repro", interleaved=True)
    assert ran(first) == set(STAGES), first
    check_log(first)
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    assert set(lock) == set(STAGES)
    for model in MODELS:
        assert (repo / "models" / model / "model.pt").is_file()
    compare = json.loads((repo / "results" / "compare.json").read_text())
    assert sorted(r["model"] for r in compare["models"]) == sorted(MODELS)
    models_table, classes_table = (repo / "results" / "compare.md").read_text().split("## IoU per class")
    rows = [
        line.split(" | ")[0].removeprefix("| ") for line in models_table.splitlines() if line.startswith("| ")
    ]
    assert sorted(rows[1:]) == sorted(MODELS)  # one row per model, after the header
    assert "| class | IoU " in classes_table and "| background | " in classes_table
    metrics = run_in(repo, "dvc", "metrics", "show")
    for model in MODELS:
        assert f"results/evaluate/{model}/metrics.json" in metrics
        assert f"results/train/{model}/metrics.json" in metrics

    second = run_in(repo, "dvc", "repro")
    assert ran(second) == set(), second
    assert "Data and pipelines are up to date." in second

    # What a user does to try one knob: commit the results, then an experiment that retrains one model
    # (the seed's `train.py --models fastscnn --lr 0.02`). Its comparison must hold its own scores.
    git_commit(repo, "baseline")
    before = {m: (repo / "models" / m / "model.pt").read_bytes() for m in MODELS}
    third = run_in(
        repo,
        sys.executable,
        "-m",
        "cocoseg",
        "train",
        "--models",
        "fastscnn",
        "--lr",
        "0.02",
        "--epochs",
        "1",
        "-n",
        "fastscnn-lr002",
    )
    assert ran(third) == {"check", "train@fastscnn", "evaluate@fastscnn", "compare"}, (
        third
    )  # check: any param
    assert yaml.safe_load((repo / "params.yaml").read_text())["models"]["fastscnn"]["lr"] == 0.02
    for model in ("unet", "deeplabv3"):  # left out: not retrained
        assert (repo / "models" / model / "model.pt").read_bytes() == before[model]
    assert (repo / "models" / "fastscnn" / "model.pt").read_bytes() != before["fastscnn"]
    evaluated = {
        m: json.loads((repo / "results" / "evaluate" / m / "metrics.json").read_text()) for m in MODELS
    }
    assert json.loads((repo / "results" / "miou.json").read_text())["miou"] == {
        m: evaluated[m]["miou"] for m in MODELS
    }
    for row in json.loads((repo / "results" / "compare.json").read_text())["models"]:
        assert {k: row[k] for k in evaluated[row["model"]]} == evaluated[row["model"]]
    table = list(csv.DictReader(io.StringIO(run_in(repo, "dvc", "exp", "show", "--csv"))))
    (experiment,) = (row for row in table if row["Experiment"] == "fastscnn-lr002")
    evaluated_column = next(c for c in table[0] if c.endswith("results/evaluate/fastscnn/metrics.json:miou"))
    assert experiment["miou.fastscnn"] == experiment[evaluated_column] != "", (
        experiment
    )  # the experiment's own
    lr = next(column for column in table[0] if column.endswith("models.fastscnn.lr"))
    assert experiment[lr] == "0.02"  # the experiment is recorded ...
    assert [row[lr] for row in table if row["typ"] == "baseline" and row["rev"] != "workspace"] == ["0.01"]

    # A fourth model is one params.yaml entry: any segmentation-models-pytorch architecture by its name.
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["models"]["fpn"] = {
        "arch": "fpn",
        "encoder": "resnet18",
        "encoder_weights": None,
        "options": {"decoder_pyramid_channels": 32, "decoder_segmentation_channels": 32},
    }
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    fourth = run_in(repo, "dvc", "repro")
    assert ran(fourth) == {"check", "train@fpn", "evaluate@fpn", "compare"}, fourth
    spec = torch.load(repo / "models" / "fpn" / "model.pt", weights_only=True)["model"]
    assert (
        spec["arch"] == "fpn" and spec["decoder_pyramid_channels"] == 32
    )  # options travel in the model file
    assert 0 <= json.loads((repo / "results" / "evaluate" / "fpn" / "metrics.json").read_text())["miou"] <= 1
    compare = json.loads((repo / "results" / "compare.json").read_text())
    assert sorted(r["model"] for r in compare["models"]) == sorted([*MODELS, "fpn"])
    curves = list(
        csv.DictReader(io.StringIO((repo / "results" / "val_miou.tsv").read_text()), delimiter="\t")
    )
    assert {row["model"] for row in curves} == {*MODELS, "fpn"}  # the all-models plot follows params.yaml


def check_log(output: str) -> None:
    """What `dvc repro` printed, read as a user reads it: within each stage every INFO line once (no second
    handler), epochs counted from 0 everywhere, as Lightning's progress bar counts them; no `v_num`."""
    stages = re.split(r"Running stage '([^']+)'", output)[1:]
    for stage, log in zip(stages[::2], stages[1::2], strict=True):
        lines = [line for line in log.splitlines() if line.startswith("INFO")]
        assert len(lines) == len(set(lines)), f"{stage} printed a line twice:\n{log}"
        assert not [line for line in lines if line.startswith("INFO: ")], log  # Lightning's own format
        assert "v_num" not in log and "SubsetResult(" not in log
        if stage.startswith("train@"):
            epochs = re.findall(r"\bepoch (\d+) of 0-(\d+)", log)
            assert epochs and {last for _, last in epochs} == {"1"}, log  # 2 epochs: 0 and 1
            assert [e for e, _ in epochs][:2] == ["0", "1"], log
            assert re.search(r"for 2 epochs \(0-1\)", log), log
            assert re.search(r"best val/miou \S+ at epoch [01] of 0-1 ", log), log
            assert not re.search(r"epoch \d+/\d+", log), log  # no other way of counting

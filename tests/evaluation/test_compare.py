"""compare: the table and the all-models curves follow params.yaml's model set exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cocoseg.core.errors import UserError
from cocoseg.evaluation.compare import render_markdown, write_comparison, write_curves, write_headline


def write_fake_evaluation(folder: Path, metrics: dict, speed: dict | None = None) -> None:
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps(metrics))
    if speed is not None:
        (folder / "speed.json").write_text(json.dumps(speed))


def test_compare_ranks_models(tmp_path: Path) -> None:
    evaluate = tmp_path / "evaluate"
    write_fake_evaluation(evaluate / "alpha",
                          {"miou": 0.5, "dice": 0.6, "pixel_accuracy": 0.9, "params": 1234567,
                           "per_class": {"cat": {"iou": 0.25, "dice": 0.4}}},
                          {"images_per_second": 123.456, "device": "cpu"})
    write_fake_evaluation(evaluate / "beta",
                          {"miou": 0.75, "dice": 0.8, "pixel_accuracy": 0.95, "params": 99,
                           "per_class": {"dog": {"iou": 0.5, "dice": 0.6}}})
    write_fake_evaluation(evaluate / "gamma",  # nothing scored: ranks last
                          {"miou": None, "dice": None, "pixel_accuracy": None, "params": 5, "per_class": {}})
    md, js = tmp_path / "compare.md", tmp_path / "compare.json"
    rows = write_comparison(evaluate, ["alpha", "beta", "gamma"], md, js)
    assert [r["model"] for r in rows] == ["beta", "alpha", "gamma"]
    assert json.loads(js.read_text())["best"] == "beta"
    write_headline(rows, tmp_path / "miou.json")  # one key per model, for `dvc exp show`'s miou.<model>
    headline = json.loads((tmp_path / "miou.json").read_text())
    assert headline == {"miou": {"alpha": 0.5, "beta": 0.75, "gamma": None}}
    table = [line for line in md.read_text().splitlines() if line.startswith("|")]
    assert table == [
        "| model | mIoU | mean Dice | pixel acc. | params | images/s | IoU cat | IoU dog |",
        "|---|---|---|---|---|---|---|---|",
        "| beta | 0.7500 | 0.8000 | 0.9500 | 99 | - | - | 0.5000 |",
        "| alpha | 0.5000 | 0.6000 | 0.9000 | 1,234,567 | 123.5 | 0.2500 | - |",
        "| gamma | - | - | - | 5 | - | - | - |",
    ]


def test_compare_follows_the_model_set(tmp_path: Path) -> None:
    """A removed model's leftover folder is not ranked; a model in params without results is an error."""
    evaluate = tmp_path / "evaluate"
    for name, miou in (("kept", 0.5), ("removed", 0.9)):
        write_fake_evaluation(evaluate / name, {"miou": miou, "per_class": {}})
    rows = write_comparison(evaluate, ["kept"], tmp_path / "c.md", tmp_path / "c.json")
    assert [r["model"] for r in rows] == ["kept"]
    assert "removed" not in (tmp_path / "c.md").read_text()
    with pytest.raises(UserError, match=r"new/metrics.json: missing \(did the evaluate@new stage run\?\)"):
        write_comparison(evaluate, ["kept", "new"], tmp_path / "c.md", tmp_path / "c.json")
    with pytest.raises(UserError, match="models section is empty"):
        write_comparison(evaluate, [], tmp_path / "c.md", tmp_path / "c.json")


def test_curves_one_row_per_model_and_step(tmp_path: Path) -> None:
    for name, values in (("a", ["0.1", "0.25"]), ("b", ["0.5"]), ("stale", ["0.9"])):
        history = tmp_path / "train" / name / "plots" / "metrics" / "val" / "miou.tsv"
        history.parent.mkdir(parents=True)
        history.write_text("step\tmiou\n" + "".join(f"{i}\t{v}\n" for i, v in enumerate(values)))
    write_curves(tmp_path / "train", ["b", "a"], tmp_path / "val_miou.tsv")
    assert (tmp_path / "val_miou.tsv").read_text() == "step\tmodel\tmiou\n0\tb\t0.5\n0\ta\t0.1\n1\ta\t0.25\n"


def test_compare_table_leaves_per_class_columns_out_beyond_twelve_classes() -> None:
    row = {"model": "m", "miou": 0.5, "per_class": {f"c{i}": {"iou": 0.5} for i in range(13)}}
    header = render_markdown([row]).splitlines()[0]
    assert header == "| model | mIoU | mean Dice | pixel acc. | params | images/s |"
    row["per_class"] = {f"c{i}": {"iou": 0.5} for i in range(12)}
    assert render_markdown([row]).splitlines()[0].count("IoU c") == 12

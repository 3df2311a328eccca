"""compare: the table and the all-models curves follow params.yaml's model set exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cocoseg.core.errors import UserError
from cocoseg.evaluation.compare import render_markdown, write_comparison, write_curves, write_headline


def write_fake_evaluation(
    folder: Path, metrics: dict, speed: dict | None = None, per_class: dict | None = None
) -> None:
    """evaluate's files: metrics.json, speed.json, and per_class.json's records from {class: (iou, dice)}."""
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps(metrics))
    if speed is not None:
        (folder / "speed.json").write_text(json.dumps(speed))
    if per_class is not None:
        records = [{"class": c, "iou": iou, "dice": dice} for c, (iou, dice) in per_class.items()]
        (folder / "per_class.json").write_text(json.dumps(records))


def test_compare_ranks_models(tmp_path: Path) -> None:
    evaluate = tmp_path / "evaluate"
    write_fake_evaluation(
        evaluate / "alpha",
        {"miou": 0.5, "dice": 0.6, "pixel_accuracy": 0.9, "params": 1234567},
        {"images_per_second": 123.456, "device": "cpu"},
        {"cat": (0.25, 0.4), "dog": (0.75, 0.8)},
    )
    write_fake_evaluation(
        evaluate / "beta",
        {"miou": 0.75, "dice": 0.8, "pixel_accuracy": 0.95, "params": 99},
        per_class={"dog": (0.5, 0.6), "cow": (0.9, 0.95)},
    )
    write_fake_evaluation(
        evaluate / "gamma",  # nothing scored: ranks last
        {"miou": None, "dice": None, "pixel_accuracy": None, "params": 5},
        per_class={},
    )
    md, js = tmp_path / "compare.md", tmp_path / "compare.json"
    rows = write_comparison(evaluate, ["alpha", "beta", "gamma"], md, js)
    assert [r["model"] for r in rows] == ["beta", "alpha", "gamma"]
    assert json.loads(js.read_text())["best"] == "beta"
    write_headline(rows, tmp_path / "miou.json")  # one key per model, for `dvc exp show`'s miou.<model>
    headline = json.loads((tmp_path / "miou.json").read_text())
    assert headline == {"miou": {"alpha": 0.5, "beta": 0.75, "gamma": None}}
    assert json.loads(js.read_text())["models"][1]["per_class"] == {
        "cat": {"iou": 0.25, "dice": 0.4},
        "dog": {"iou": 0.75, "dice": 0.8},
    }
    text = md.read_text()
    assert "## IoU per class, worst first (3 classes)" in text
    table = [line for line in text.splitlines() if line.startswith("|")]
    assert table == [
        "| model | mIoU | mean Dice | pixel acc. | params | images/s |",
        "|---|---|---|---|---|---|",
        "| beta | 0.7500 | 0.8000 | 0.9500 | 99 | - |",
        "| alpha | 0.5000 | 0.6000 | 0.9000 | 1,234,567 | 123.5 |",
        "| gamma | - | - | - | 5 | - |",
        # worst first by the mean over the models that scored the class: cat 0.25, dog 0.625, cow 0.9
        "| class | IoU beta | IoU alpha | IoU gamma |",
        "|---|---|---|---|",
        "| cat | - | 0.2500 | - |",
        "| dog | 0.5000 | 0.7500 | - |",
        "| cow | 0.9000 | - | - |",
    ]


def test_compare_follows_the_model_set(tmp_path: Path) -> None:
    """A removed model's leftover folder is not ranked; a model in params without results is an error."""
    evaluate = tmp_path / "evaluate"
    for name, miou in (("kept", 0.5), ("removed", 0.9)):
        write_fake_evaluation(evaluate / name, {"miou": miou})
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


def test_per_class_table_has_a_row_for_every_class_whatever_their_number() -> None:
    """COCO's 80 classes (and a background) each get a row, worst first; the models table stays 6 columns."""
    ious = {f"class{i:02d}": round(1 - i / 100, 2) for i in range(81)}
    rows = [{"model": "m", "miou": 0.5, "per_class": {c: {"iou": v, "dice": v} for c, v in ious.items()}}]
    lines = render_markdown(rows).splitlines()
    assert lines[0] == "| model | mIoU | mean Dice | pixel acc. | params | images/s |"
    assert "## IoU per class, worst first (81 classes)" in lines
    body = [line for line in lines if line.startswith("| class") and line != "| class | IoU m |"]
    assert len(body) == 81 and body[0] == "| class80 | 0.2000 |" and body[-1] == "| class00 | 1.0000 |"

"""Every model of params.yaml side by side: one table, best mIoU first, and a per-class table, worst class
first (results/compare.md and compare.json), each model's mIoU as one DVC metrics file (results/miou.json),
and the data of the all-models val mIoU plot (results/val_miou.tsv)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from cocoseg.core.errors import UserError
from cocoseg.core.files import write_json, write_text
from cocoseg.core.scores import SCORES

VAL_MIOU_HISTORY = "plots/metrics/val/miou.tsv"  # under results/train/<model>/, written by dvclive

# (key, header, format) after the scores' (to 4 decimals): counts with thousands separators, speed to 0.1
OTHER_COLUMNS = [("params", "params", "{:,}"), ("images_per_second", "images/s", "{:.1f}")]


def columns() -> list[tuple[str, str, str]]:
    """compare.md's columns: every score of SCORES as it stands when compare runs, then the others."""
    return [*((name, score.header, "{:.4f}") for name, score in SCORES.items()), *OTHER_COLUMNS]


def collect(evaluate_dir: Path, models: list[str]) -> list[dict[str, Any]]:
    """One row per model of params.yaml (never a leftover folder of a removed model), best mIoU first."""
    if not models:
        raise UserError("params.yaml: the models section is empty; define at least one model")
    rows = []
    for model in models:
        metrics_path = Path(evaluate_dir) / model / "metrics.json"
        if not metrics_path.is_file():
            raise UserError(f"{metrics_path}: missing (did the evaluate@{model} stage run?)")
        row = {"model": model, **json.loads(metrics_path.read_text())}
        speed_path, per_class_path = (
            metrics_path.parent / "speed.json",
            metrics_path.parent / "per_class.json",
        )
        if speed_path.is_file():
            row.update(json.loads(speed_path.read_text()))
        if per_class_path.is_file():  # [{"class", "iou", "dice"}] -> {class: {"iou", "dice"}}
            row["per_class"] = {
                r["class"]: {"iou": r["iou"], "dice": r["dice"]}
                for r in json.loads(per_class_path.read_text())
            }
        rows.append(row)
    return sorted(rows, key=lambda r: (-(r.get("miou") or 0.0), r["model"]))


def collect_curves(train_dir: Path, models: list[str]) -> list[dict[str, Any]]:
    """Every model's val mIoU per step from its dvclive history, as long-format rows (step, model, miou)."""
    rows = []
    for model in models:
        path = Path(train_dir) / model / VAL_MIOU_HISTORY
        if not path.is_file():
            raise UserError(f"{path}: missing (did the train@{model} stage run?)")
        with open(path, newline="") as f:
            rows += [
                {"step": int(r["step"]), "model": model, "miou": float(r["miou"])}
                for r in csv.DictReader(f, delimiter="\t")
            ]
    return rows


def render_markdown(rows: list[dict[str, Any]]) -> str:
    """compare.md's body: the models table (best first), then the per-class table (worst class first)."""
    if not any(r.get("per_class") for r in rows):
        return render_models(rows)
    classes = render_classes(rows)
    count = classes.count("\n") - 2
    return f"{render_models(rows)}\n## IoU per class, worst first ({count} classes)\n\n{classes}"


def render_models(rows: list[dict[str, Any]]) -> str:
    shown = columns()
    header = ["model", *(label for _, label, _ in shown)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        lines.append(
            "| " + " | ".join([r["model"], *(_fmt(r.get(key), fmt) for key, _, fmt in shown)]) + " |"
        )
    return "\n".join(lines) + "\n"


def render_classes(rows: list[dict[str, Any]]) -> str:
    """IoU per class (rows) and model (columns, best model first), worst class first: by the mean of its IoU
    over the models that scored it. Every class any model scored has a row, whatever their number; ``-``
    where a model has no score (the class is in neither its truth nor its prediction)."""
    scored = {
        c: [r["per_class"][c]["iou"] for r in rows if c in r.get("per_class", {})]
        for r in rows
        for c in r.get("per_class", {})
    }
    mean = {
        c: sum(v for v in ious if v is not None) / max(sum(v is not None for v in ious), 1)
        for c, ious in scored.items()
    }
    header = ["class", *(f"IoU {r['model']}" for r in rows)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for c in sorted(scored, key=lambda c: (mean[c], c)):
        cells = [_fmt(r.get("per_class", {}).get(c, {}).get("iou"), "{:.4f}") for r in rows]
        lines.append("| " + " | ".join([c, *cells]) + " |")
    return "\n".join(lines) + "\n"


def write_comparison(
    evaluate_dir: Path, models: list[str], out_md: Path, out_json: Path
) -> list[dict[str, Any]]:
    rows = collect(evaluate_dir, models)
    write_text(out_md, f"# Models on the val split (best first)\n\n{render_markdown(rows)}")
    write_json(out_json, {"best": rows[0]["model"], "models": rows})
    return rows


def write_headline(rows: list[dict[str, Any]], out_json: Path) -> None:
    """results/miou.json, {"miou": {model: mIoU}}: `dvc exp show` names a metric by its file path when
    several files hold it (every model's metrics.json has "miou"), but keys only this file has keep their
    short names, so the experiment table's columns read miou.unet, miou.deeplabv3, ..."""
    write_json(out_json, {"miou": {r["model"]: r.get("miou") for r in rows}})


def write_curves(train_dir: Path, models: list[str], out_tsv: Path) -> None:
    """results/val_miou.tsv: the all-models plot's data, one line per (model, step)."""
    rows = collect_curves(train_dir, models)
    lines = ["step\tmodel\tmiou", *(f"{r['step']}\t{r['model']}\t{r['miou']}" for r in rows)]
    write_text(out_tsv, "\n".join(lines) + "\n")


def _fmt(value: Any, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)

"""One table of every evaluated model, best mIoU first (results/compare.md and compare.json)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cocoseg.core.files import write_json, write_text

# (key, header, format): scores to 4 decimals, counts with thousands separators, speed to 0.1
COLUMNS = [("miou", "mIoU", "{:.4f}"), ("dice", "mean Dice", "{:.4f}"), ("pixel_accuracy", "pixel acc.", "{:.4f}"),
           ("params", "params", "{:,}"), ("images_per_second", "images/s", "{:.1f}")]


def collect(evaluate_dir: Path) -> list[dict[str, Any]]:
    rows = []
    for metrics_path in sorted(Path(evaluate_dir).glob("*/metrics.json")):
        row = {"model": metrics_path.parent.name, **json.loads(metrics_path.read_text())}
        speed_path = metrics_path.parent / "speed.json"
        if speed_path.is_file():
            row.update(json.loads(speed_path.read_text()))
        rows.append(row)
    if not rows:
        raise FileNotFoundError(f"{evaluate_dir}: no */metrics.json found (did the evaluate stages run?)")
    return sorted(rows, key=lambda r: (-(r.get("miou") or 0.0), r["model"]))


MAX_CLASS_COLUMNS = 12  # beyond this (COCO has 80) per-class IoU stays in compare.json only


def render_markdown(rows: list[dict[str, Any]]) -> str:
    classes = sorted({c for r in rows for c in r.get("per_class", {})})
    if len(classes) > MAX_CLASS_COLUMNS:
        classes = []
    header = ["model", *(label for _, label, _ in COLUMNS), *(f"IoU {c}" for c in classes)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [r["model"], *(_fmt(r.get(key), fmt) for key, _, fmt in COLUMNS),
                 *(_fmt(r.get("per_class", {}).get(c, {}).get("iou"), "{:.4f}") for c in classes)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_comparison(evaluate_dir: Path, out_md: Path, out_json: Path) -> list[dict[str, Any]]:
    rows = collect(evaluate_dir)
    write_text(out_md, f"# Models on the val split (best first)\n\n{render_markdown(rows)}")
    write_json(out_json, {"best": rows[0]["model"], "models": rows})
    return rows


def _fmt(value: Any, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)

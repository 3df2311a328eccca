"""Remake the pictures in docs/images/ from a reproduced workspace, so they show what the current code draws.

    dvc repro && python scripts/make_doc_images.py              # this workspace
    python scripts/make_doc_images.py --repo /tmp/clone         # another reproduced clone

The preview panel, the evaluate overlay and the confusion matrix are the pipeline's own PNGs (the first
of each, unet's for evaluate); the all-models curve and unet's per-class bars are the specs `dvc plots show
--json` gives the offline plots page, drawn to PNG by vl-convert (the same Vega-Lite version as the page).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import vl_convert

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from cocoseg.evaluation.offline_plots import VEGA_LITE

MODEL = "unet"
COPIED = {  # picture -> where the pipeline writes it (the first file, sorted, of a folder)
    "preview.png": "data/masks/preview",
    "overlay.png": f"results/evaluate/{MODEL}/overlays",
    "confusion.png": f"results/evaluate/{MODEL}/confusion.png",
}
DRAWN = {  # picture -> the plot's data file in dvc.yaml
    "val_miou_all_models.png": "results/val_miou.tsv",
    "per_class_iou.png": f"results/evaluate/{MODEL}/per_class.json",
}


def first_file(path: Path) -> Path:
    if path.is_file():
        return path
    files = sorted(p for p in path.iterdir() if p.suffix == ".png") if path.is_dir() else []
    if not files:
        sys.exit(f"{path}: no PNG; run `dvc repro` in that workspace first")
    return files[0]


def plot_spec(repo: Path, target: str) -> dict:
    """The filled Vega-Lite spec of one plot, as `dvc plots show` puts it in the page."""
    result = subprocess.run(
        [sys.executable, "-m", "dvc", "plots", "show", "--json", target],
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        sys.exit(f"dvc plots show --json {target} failed in {repo}:\n{result.stderr}")
    entries = json.loads(result.stdout)
    entries = entries.get("data", entries)  # DVC nests the plots under "data" in some versions
    return next(e["content"] for e in entries[target] if e.get("type") == "vega")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repo", type=Path, default=Path("."), help="a reproduced workspace")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "images")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name, source in COPIED.items():
        shutil.copyfile(first_file(args.repo / source), args.out / name)
        print(f"{args.out / name} <- {first_file(args.repo / source)}")
    for name, target in DRAWN.items():
        png = vl_convert.vegalite_to_png(plot_spec(args.repo, target), vl_version=VEGA_LITE, scale=1.5)
        (args.out / name).write_bytes(png)
        print(f"{args.out / name} <- {target} (dvc plots show --json, drawn by vl-convert)")


if __name__ == "__main__":
    main()

"""Stage compare: every model of params.yaml side by side, best mIoU first, each model's mIoU as one
metrics file, and their val mIoU curves."""

import argparse
import logging
from pathlib import Path

from cocoseg.core.params import load_params
from cocoseg.core.params_guard import guard_params
from cocoseg.core.stage import run_stage
from cocoseg.evaluation.compare import render_models, write_comparison, write_curves, write_headline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--evaluate", type=Path, default=Path("results/evaluate"))
    parser.add_argument("--train", type=Path, default=Path("results/train"))
    parser.add_argument("--md", type=Path, default=Path("results/compare.md"))
    parser.add_argument("--json", type=Path, default=Path("results/compare.json"))
    parser.add_argument("--miou", type=Path, default=Path("results/miou.json"))
    parser.add_argument("--curves", type=Path, default=Path("results/val_miou.tsv"))
    args = parser.parse_args()
    models = list(load_params(args.params).models)
    guard_params(args.params, "compare")
    rows = write_comparison(args.evaluate, models, args.md, args.json)
    write_headline(rows, args.miou)
    write_curves(args.train, models, args.curves)
    logging.getLogger("cocoseg.stages.compare").info(
        "\n%s(per class: results/compare.md)", render_models(rows)
    )


if __name__ == "__main__":
    run_stage(main)

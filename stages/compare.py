"""Stage compare: one table of all evaluated models side by side, best mIoU first."""

import argparse
import logging
from pathlib import Path

from cocoseg.core.stage import run_stage
from cocoseg.evaluation.compare import render_markdown, write_comparison


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--evaluate", type=Path, default=Path("results/evaluate"))
    parser.add_argument("--md", type=Path, default=Path("results/compare.md"))
    parser.add_argument("--json", type=Path, default=Path("results/compare.json"))
    args = parser.parse_args()
    rows = write_comparison(args.evaluate, args.md, args.json)
    logging.getLogger("cocoseg.stages.compare").info("\n%s", render_markdown(rows))


if __name__ == "__main__":
    run_stage(main)

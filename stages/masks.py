"""Stage masks: COCO annotations in --coco -> semantic/instance masks, labels, split, report, previews."""

import argparse
import logging
from pathlib import Path

from cocoseg.core.layout import REPORT_FILE
from cocoseg.core.params import load_params
from cocoseg.core.params_guard import guard_params
from cocoseg.core.stage import run_stage
from cocoseg.masks.build import build_masks
from cocoseg.masks.paint import check_masks_overlap
from cocoseg.masks.report import summary

log = logging.getLogger("cocoseg.stages.masks")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--coco", type=Path, default=Path("data/coco"))
    parser.add_argument("--out", type=Path, default=Path("data/masks"))
    args = parser.parse_args()
    params = load_params(args.params, check_masks_overlap)
    guard_params(args.params, "masks")
    # COCO 2017's classes are its 80 categories whichever images a subset drew (the sample's likewise);
    # a user's export drops the categories nothing uses (Roboflow's placeholder id 0)
    every_category = params.data.source in ("coco2017", "sample")
    report = build_masks(
        args.coco, args.out, params.data.splits, params.masks, params.base.seed, every_category
    )
    log.info("%s; see %s", summary(report), args.out / REPORT_FILE)


if __name__ == "__main__":
    run_stage(main)

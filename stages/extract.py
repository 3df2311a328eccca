"""Stage extract: unpack the archives in --raw into --out (data/coco), refusing unsafe paths."""

import argparse
from pathlib import Path

from cocoseg.core.stage import run_stage
from cocoseg.core.params import load_params
from cocoseg.core.params_guard import guard_params
from cocoseg.acquire.extract import extract_coco


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--raw", type=Path, default=Path("data/raw"))
    parser.add_argument("--out", type=Path, default=Path("data/coco"))
    args = parser.parse_args()
    params = load_params(args.params)
    guard_params(args.params, "extract")
    extract_coco(args.raw, args.out, params.data.splits)


if __name__ == "__main__":
    run_stage(main)

"""Stage extract: data/coco from --raw (data/raw): the archives and folders in its download/ folder, or the
splits the import stages wrote in its local/ folder; unsafe archive members are refused."""

import argparse
from pathlib import Path

from cocoseg.acquire.extract import extract_coco
from cocoseg.core.layout import RAW_DOWNLOAD, RAW_LOCAL
from cocoseg.core.params import load_params
from cocoseg.core.params_guard import guard_params
from cocoseg.core.stage import run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--raw", type=Path, default=Path("data/raw"))
    parser.add_argument("--out", type=Path, default=Path("data/coco"))
    args = parser.parse_args()
    params = load_params(args.params)
    guard_params(args.params, "extract")
    extract_coco(args.raw / RAW_DOWNLOAD, args.out, params.data.splits, args.raw / RAW_LOCAL)


if __name__ == "__main__":
    run_stage(main)

"""Stage download: put the raw COCO archives in --out (the offline sample, or real COCO 2017).

Real COCO is downloaded into --store (partial and verified downloads, kept between runs and never
touched by DVC), then hard-linked into --out, the stage's cached DVC output.
"""

import argparse
from pathlib import Path

from cocoseg.core.stage import run_stage
from cocoseg.core.params import load_params
from cocoseg.core.params_guard import guard_params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", type=Path, default=Path("data/raw"))
    parser.add_argument("--store", type=Path, default=Path("data/downloads"),
                        help="where downloads resume and stay (not a DVC output)")
    args = parser.parse_args()
    params = load_params(args.params)
    guard_params(args.params, "download")
    if params.data.source == "sample":
        from cocoseg.acquire.sample import write_sample_archives

        write_sample_archives(args.out, params.data.sample, params.base.seed)
    else:
        from cocoseg.acquire.fetch import fetch_coco
        from cocoseg.acquire.store import publish_downloads

        fetch_coco(params, args.store)
        publish_downloads(args.store, args.out)


if __name__ == "__main__":
    run_stage(main)

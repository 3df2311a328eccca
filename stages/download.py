"""Stage download: put the raw data in --out (data/raw/download): the offline sample's archives, COCO
2017's, or the user's export archive (data.source: archive). For data.source: local it writes only its
manifest: the import stages bring the user's files (data/raw/local/<split>).

Downloads go into --store (partial and verified downloads, kept between runs and never touched by DVC),
then are hard-linked into --out, the stage's cached DVC output.
"""

import argparse
from pathlib import Path

from cocoseg.core.params import load_params
from cocoseg.core.params_guard import guard_params
from cocoseg.core.stage import run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", type=Path, default=Path("data/raw/download"))
    parser.add_argument(
        "--store",
        type=Path,
        default=Path("data/downloads"),
        help="where downloads resume and stay (not a DVC output)",
    )
    args = parser.parse_args()
    params = load_params(args.params)
    guard_params(args.params, "download")
    source = params.data.source
    if source == "sample":
        from cocoseg.acquire.sample import write_sample_archives

        write_sample_archives(args.out, params.data.sample, params.base.seed)
    elif source == "local":
        from cocoseg.acquire.extract import write_manifest
        from cocoseg.core.files import atomic_dir

        with atomic_dir(args.out) as tmp:
            write_manifest(tmp, "local", [], [])
    else:
        from cocoseg.acquire.store import publish_downloads

        if source == "archive":
            from cocoseg.acquire.archive import fetch_archive

            fetch_archive(params.data.archive, args.store)
        else:
            from cocoseg.acquire.fetch import fetch_coco

            fetch_coco(params, args.store)
        publish_downloads(args.store, args.out)


if __name__ == "__main__":
    run_stage(main)

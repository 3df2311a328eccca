"""Stage import@<split>: one split of the user's own files (data.local.splits.<split>) into --out
(data/raw/local/<split>): the JSON byte for byte and the images it lists, copied (or, where that
changes nothing, hard-linked: see cocoseg.acquire.local). The user's folder is only read.

The split's paths are read from params.yaml, not from the command line, so any path works; DVC tracks
them as this stage's deps (dvc.yaml), which is what makes a changed file rerun exactly this split.
"""

import argparse
from pathlib import Path

from cocoseg.core.params import ConfigError, load_params
from cocoseg.core.stage import run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--split", required=True, help="a key of data.local.splits")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    splits = load_params(args.params).data.local.splits
    if args.split not in splits:
        raise ConfigError(
            f"{args.params}: data.local.splits has no split {args.split!r}; it has {sorted(splits)}"
        )
    entry = splits[args.split]
    from cocoseg.acquire.local import import_split

    import_split(args.split, Path(str(entry.annotations)), Path(str(entry.images)), args.out)


if __name__ == "__main__":
    run_stage(main)

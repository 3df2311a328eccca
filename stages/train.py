"""Stage train@<model>: train one model on the masks stage's split; export its best weights."""

import argparse
from pathlib import Path

from cocoseg.core.arithmetic import pin_arithmetic
from cocoseg.core.layout import CHECKPOINTS_DIR
from cocoseg.core.params import load_params
from cocoseg.core.params_guard import guard_params
from cocoseg.core.stage import run_stage
from cocoseg.models import check_model
from cocoseg.training.checks import check_train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True, help="a key of the models section of params.yaml")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--coco", type=Path, default=Path("data/coco"))
    parser.add_argument("--masks", type=Path, default=Path("data/masks"))
    parser.add_argument("--out", type=Path, help="default: models/<model>")
    parser.add_argument("--live", type=Path, help="dvclive folder, default: results/train/<model>")
    parser.add_argument("--runs", type=Path, help="run history (TensorBoard), default: $DVC_ROOT/runs")
    parser.add_argument(
        "--resume-dir", type=Path, help="run in progress and resume checkpoint, default: checkpoints/<model>"
    )
    args = parser.parse_args()
    params = load_params(args.params, lambda p: check_model(p, args.model), check_train)
    guard_params(args.params, "train", args.model)
    pin_arithmetic(params.train.deterministic, params.train.threads)  # before torch reads the environment
    # Imported only now: torch and Lightning take seconds to load, and a bad value must fail at once.
    from cocoseg.training.runs import runs_root
    from cocoseg.training.train import TrainPaths, train_model

    paths = TrainPaths(
        args.coco,
        args.masks,
        args.out or Path("models") / args.model,
        args.live or Path("results/train") / args.model,
        args.runs or runs_root(),
        args.resume_dir or Path(CHECKPOINTS_DIR) / args.model,
    )
    train_model(params, args.model, paths)


if __name__ == "__main__":
    run_stage(main)

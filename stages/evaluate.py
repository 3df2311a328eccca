"""Stage evaluate@<model>: score models/<model>/model.pt on the val split at the masks' resolution."""

import argparse
from pathlib import Path

from cocoseg.core.arithmetic import pin_arithmetic
from cocoseg.core.layout import model_file
from cocoseg.core.params import load_params
from cocoseg.core.params_guard import guard_params
from cocoseg.core.stage import run_stage
from cocoseg.models import check_model_name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--coco", type=Path, default=Path("data/coco"))
    parser.add_argument("--masks", type=Path, default=Path("data/masks"))
    parser.add_argument("--out", type=Path, help="default: results/evaluate/<model>")
    parser.add_argument("--device", help="default: cuda where there is one, else cpu")
    args = parser.parse_args()
    params = load_params(args.params, lambda p: check_model_name(args.model))
    guard_params(args.params, "evaluate", args.model)
    pin_arithmetic(
        params.evaluate.deterministic, params.evaluate.threads
    )  # before torch reads the environment
    # Imported only now: torch takes seconds to load, and a bad value must fail at once.
    import torch

    from cocoseg.evaluation.evaluate import evaluate_model

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    evaluate_model(
        model_file(args.model),
        args.coco,
        args.masks,
        args.out or Path("results/evaluate") / args.model,
        params.evaluate,
        device,
    )


if __name__ == "__main__":
    run_stage(main)

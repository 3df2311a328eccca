"""Stage check: every parameter of params.yaml checked as the stages will check it, before any stage runs.

DVC removes a stage's outputs just before it runs the stage, so a bad value that only the stage itself
finds (a typo in masks.overlap, an unknown encoder, models: {}) has already cost the previous outputs.
Every other stage depends on this stage's output, so DVC runs it first: a bad value stops `dvc repro` and
`dvc exp run` here, with the stage's own one-line error, before any output is touched. The output's
bytes never change while the checks pass, so it makes no stage rerun (docs/hostile-input.md).
"""

import argparse
from pathlib import Path

from cocoseg.acquire.categories import source_categories
from cocoseg.core.files import write_text
from cocoseg.core.params import ConfigError, Params, load_params
from cocoseg.core.params_guard import guard_params
from cocoseg.core.stage import run_stage
from cocoseg.masks.labels import build_label_map
from cocoseg.masks.paint import check_masks_overlap
from cocoseg.models import check_model
from cocoseg.training.checks import check_train

CHECKED = "every parameter in params.yaml passed the checks of every stage (stages/check.py)\n"


def check_models(params: Params) -> None:
    """The models section as the train and evaluate stages check it, and not empty: compare needs a model."""
    if not params.models:
        raise ConfigError("models: no model is defined; expected at least one entry, e.g. unet: {arch: unet}")
    for name in params.models:
        check_model(params, name)


def check_categories(params: Params) -> None:
    """masks.categories and masks.priority against the names the data source offers, where it is known."""
    categories = source_categories(params.data)
    if categories is not None:
        build_label_map(categories, params.masks.categories, params.masks.priority)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", type=Path, default=Path("data/params.checked"))
    args = parser.parse_args()
    load_params(args.params, check_masks_overlap, check_train, check_models, check_categories)
    guard_params(args.params, "check")  # a value changed while checking is no value checked
    write_text(args.out, CHECKED)


if __name__ == "__main__":
    run_stage(main)

"""Every bad train or model value fails the train stage in one line, naming the key, within 2 s."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import time
import typing
from pathlib import Path

import pytest
import yaml
from helpers import REPO, assert_one_error

from cocoseg.core.params import parse_params
from cocoseg.models import check_model
from cocoseg.models.smp_encoders import SMP_ENCODERS
from cocoseg.training.checks import ACCELERATORS, PRECISIONS, STRATEGIES, check_train

SHIPPED = yaml.safe_load((REPO / "params.yaml").read_text())


def edit(**changes: object) -> dict:
    """The shipped params with dotted keys set (a value of DELETE removes the key)."""
    params = copy.deepcopy(SHIPPED)
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = params
        for key in parents:
            node = node[key]
        node[last] = value
    return params


# (params, --model, fragments of the one error line)
BAD = {
    "encoder typo": (
        edit(models__unet__encoder="resnet343"),
        "unet",
        ["models.unet.encoder: 'resnet343' is not allowed", "did you mean resnet34"],
    ),
    "encoder weights": (
        edit(models__unet__encoder_weights="imagenet22k"),
        "unet",
        [
            "models.unet.encoder_weights: 'imagenet22k' is not allowed for encoder 'resnet18'",
            "['imagenet', 'ssl', 'swsl']",
        ],
    ),
    "gpu without one": (
        edit(train__accelerator="gpu"),
        "unet",
        [
            "train.accelerator: 'gpu' with train.devices 'auto' is not possible: this machine has "
            "0 gpu devices"
        ],
    ),
    "cuda devices": (
        edit(train__accelerator="cuda", train__devices=[0, 1]),
        "unet",
        ["train.accelerator: 'cuda' with train.devices [0, 1] is not possible"],
    ),
    "precision": (
        edit(train__precision="bf17"),
        "unet",
        ["train.precision: 'bf17' is not allowed", "'bf16-mixed'"],
    ),
    "accelerator": (
        edit(train__accelerator="tpux"),
        "unet",
        ["train.accelerator: 'tpux' is not allowed", "'gpu'"],
    ),
    "strategy": (edit(train__strategy="dpp"), "unet", ["train.strategy: 'dpp' is not allowed", "'ddp'"]),
    "devices zero": (edit(train__devices=0), "unet", ["train.devices: 0 is not allowed"]),
    "devices repeated": (edit(train__devices=[0, 0]), "unet", ["train.devices: [0, 0] is not allowed"]),
    "lr": (edit(train__lr=-0.1), "unet", ["train.lr: -0.1 is not allowed; expected a positive number"]),
    "lr nan": (edit(train__lr=float("nan")), "unet", ["train.lr: nan is not allowed"]),
    "batch size": (edit(train__batch_size=-8), "unet", ["train.batch_size: -8 is not allowed"]),
    "epochs": (edit(train__epochs=-1), "unet", ["train.epochs: -1 is not allowed; expected an integer >= 1"]),
    "weight decay": (edit(train__weight_decay=-1e-4), "unet", ["train.weight_decay: -0.0001 is not allowed"]),
    "seed": (edit(base__seed=-1), "unet", ["base.seed: -1 is not allowed; expected an integer from 0"]),
    "model lr 0": (
        edit(models__fastscnn__lr=0),
        "fastscnn",
        ["models.fastscnn.lr: 0.0 is not allowed; expected null (inherit train.lr)"],
    ),
    "model epochs 0": (
        edit(models__unet__epochs=0),
        "unet",
        ["models.unet.epochs: 0 is not allowed; expected null (inherit train.epochs)"],
    ),
    "model batch size 0": (
        edit(models__unet__batch_size=0),
        "unet",
        ["models.unet.batch_size: 0 is not allowed"],
    ),
    "model name": (SHIPPED, "../../data", ["--model '../../data': not allowed; expected a plain model name"]),
    "no models": (edit(models={}), "unet", ["models: no model is defined; expected at least one entry"]),
    "unknown model": (
        SHIPPED,
        "unet2",
        ["models.unet2: no such model; defined models: ['deeplabv3', 'fastscnn',"],
    ),
    "architecture": (
        edit(models__unet__arch="unett"),
        "unet",
        ["models.unet.arch: unknown architecture 'unett'"],
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_value_fails_in_one_line_within_2s(tmp_path: Path, case: str) -> None:
    params, model, fragments = BAD[case]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "keep.txt").write_text("the user's data")  # results/train/../../data is ./data
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # "no GPU" on any machine
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, str(REPO / "stages" / "train.py"), "--model", model],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    elapsed = time.perf_counter() - start
    line = assert_one_error(result, "params.yaml: ", *fragments)
    assert elapsed < 2.0, f"{elapsed:.2f} s to: {line}"
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == [
        "data",
        "data/keep.txt",
        "params.yaml",
    ]  # nothing made, nothing deleted


def test_good_values_pass() -> None:
    for changes in (
        {},
        {
            "train__accelerator": "cpu",
            "train__devices": 2,
            "train__precision": "bf16-mixed",
            "train__strategy": "ddp",
        },
        {"models__unet__encoder": "tu-resnet10t", "models__unet__encoder_weights": "imagenet"},
        {"models__unet__lr": None, "train__weight_decay": 0, "base__seed": 2**32 - 1},
    ):
        params = parse_params(edit(**changes))
        check_train(params)
        for name in params.models:
            check_model(params, name)


def test_names_follow_lightning() -> None:
    from lightning.fabric.connector import _PRECISION_INPUT_STR, _PRECISION_INPUT_STR_ALIAS
    from lightning.pytorch.accelerators import AcceleratorRegistry
    from lightning.pytorch.strategies import StrategyRegistry

    assert set(ACCELERATORS) == {"auto", "gpu", *AcceleratorRegistry.available_accelerators()}
    assert set(STRATEGIES) == {"auto", *StrategyRegistry.available_strategies()}
    assert set(PRECISIONS) == {
        "auto",
        *typing.get_args(_PRECISION_INPUT_STR),
        *typing.get_args(_PRECISION_INPUT_STR_ALIAS),
    }


def test_encoders_follow_smp() -> None:
    from segmentation_models_pytorch.encoders import encoders

    # to regenerate smp_encoders.py: {k: tuple(sorted(v.get("pretrained_settings", {}))) for k, v in encoders.items()}
    assert SMP_ENCODERS == {k: tuple(sorted(v.get("pretrained_settings", {}))) for k, v in encoders.items()}


def test_evaluate_refuses_a_path_as_model_name(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(SHIPPED))
    result = subprocess.run(
        [sys.executable, str(REPO / "stages" / "evaluate.py"), "--model", "../../x"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert_one_error(result, "--model '../../x': not allowed; expected a plain model name")


def test_timm_encoder_checked_when_training_starts() -> None:
    from cocoseg.core.params import ConfigError
    from cocoseg.training.checks import check_timm_encoder

    check_timm_encoder(parse_params(edit(models__unet__encoder="tu-resnet10t")), "unet")
    with pytest.raises(
        ConfigError,
        match=r"^models\.unet\.encoder: 'tu-resnet343' is not allowed; 'resnet343' is "
        r"not a timm model",
    ):
        check_timm_encoder(parse_params(edit(models__unet__encoder="tu-resnet343")), "unet")

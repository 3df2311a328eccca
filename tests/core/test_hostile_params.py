"""Hostile parameters (issue 21, classes 2, 3, 4 and 14): each case run as a user would, through a stage
script or the cocoseg command, and held to the bar of every hostile-input test: one ERROR line (or a
warning that says what was used), the exit code, nothing created, the process tree under 2 GB of memory
and nothing left running."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers import REPO, assert_one_error, shapes_pair, write_coco, write_dataset
from proctree import Watched, assert_contained, watch

from cocoseg.core.limits import MAX_PARAMS_NODES, cap_processes
from cocoseg.core.machine import usable_cores
from cocoseg.core.yaml_file import YamlRefused, parse_yaml


def run(tmp_path: Path, stage: str, params: str, *args: str, timeout: float = 120) -> Watched:
    (tmp_path / "params.yaml").write_text(params)
    return watch([sys.executable, str(REPO / "stages" / f"{stage}.py"), *args], tmp_path, timeout=timeout)


def files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


# --- class 3: a YAML alias bomb, and other files no parameter file is ----------------------------------


def bomb(levels: int = 9) -> str:
    """1.2 kB naming 10**levels values: ten lists of ten aliases of the list before."""
    lines = [
        "models:",
        "  unet:",
        "    arch: unet",
        "    options:",
        "      pad0: &a0 [x, x, x, x, x, x, x, x, x, x]",
    ]
    lines += [f"      pad{k}: &a{k} [{', '.join([f'*a{k - 1}'] * 10)}]" for k in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(("stage", "args"), [("train", ["--model", "unet"]), ("masks", []), ("compare", [])])
def test_alias_bomb_is_refused_before_anything_expands_it(
    tmp_path: Path, stage: str, args: list[str]
) -> None:
    """The train stage's resume fingerprint expanded this to gigabytes; every stage's reading refuses it."""
    text = bomb()
    assert len(text) < 1300
    result = run(tmp_path, stage, text, *args)
    assert_one_error(
        result, "params.yaml: its aliases expand to more than 100000 values (a YAML alias bomb?)"
    )
    assert result.seconds < 30
    assert_contained(result, limit=1 << 30)
    assert files(tmp_path) == {"params.yaml"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("models:\n  unet: &u\n    arch: unet\n    options: {me: *u}\n", "an alias contains itself"),
        (
            "base:\n  seed: 1\n" + "#" * (2 << 20) + "\n",
            "2097169 bytes, over the 1048576 a parameter file may have",
        ),
        ("models: " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply to be a parameter file"),
        ("train:\n  epochs: 3\n   lr: 1\n", "not valid YAML: mapping values are not allowed here in"),
    ],
)
def test_other_files_no_parameter_file_is_are_one_line(tmp_path: Path, text: str, message: str) -> None:
    result = run(tmp_path, "masks", text)
    line = assert_one_error(result, message)
    assert len(line) < 400
    assert_contained(result, limit=1 << 30)
    assert files(tmp_path) == {"params.yaml"}


def test_aliases_that_stay_small_are_read_as_written() -> None:
    """Anchors are YAML; only their expansion is bounded (each shared node is counted once per use)."""
    data = parse_yaml("a: &x [1, 2]\nb: *x\nc: {<<: {k: 1}, j: 2}\n")
    assert data == {"a": [1, 2], "b": [1, 2], "c": {"k": 1, "j": 2}}
    wide = "a: &x [" + ", ".join(["1"] * 1000) + "]\nb: [" + ", ".join(["*x"] * 99) + "]\n"
    with pytest.raises(YamlRefused, match=f"more than {MAX_PARAMS_NODES} values"):
        parse_yaml(wide)  # 100 uses of 1001 values
    assert parse_yaml(wide.replace("* 99", "* 90").replace(", ".join(["*x"] * 99), ", ".join(["*x"] * 90)))


# --- class 4: sections of the wrong type, options that break the network's contract -------------------


@pytest.mark.parametrize(
    ("stage", "text", "message"),
    [
        (
            "train",
            "train: []\nmodels: {unet: {arch: unet}}\n",
            "train: [] is not allowed; expected a mapping",
        ),
        ("train", "train: 0\nmodels: {unet: {arch: unet}}\n", "train: 0 is not allowed; expected a mapping"),
        ("train", "models: [unet]\n", "models: ['unet'] is not allowed; expected a mapping"),
        ("masks", "masks: void\n", "masks: 'void' is not allowed; expected a mapping"),
    ],
)
def test_section_of_the_wrong_type_is_an_error_not_the_defaults(
    tmp_path: Path, stage: str, text: str, message: str
) -> None:
    result = run(tmp_path, stage, text, *(["--model", "unet"] if stage == "train" else []))
    assert_one_error(result, f"params.yaml: {message}")
    assert_contained(result, limit=1 << 30)
    assert files(tmp_path) == {"params.yaml"}


@pytest.mark.parametrize(
    ("option", "why"),
    [
        ("in_channels: 1", "the network reads 3-channel RGB images"),
        ("classes: 5", "the class count comes from the masks stage's labels.json"),
        ("aux_params: {classes: 3}", "not a (mask, label) pair"),
    ],
)
def test_option_cocoseg_sets_itself_is_refused_at_the_start(tmp_path: Path, option: str, why: str) -> None:
    key = option.split(":")[0]
    result = run(
        tmp_path, "train", f"models:\n  unet:\n    arch: unet\n    options: {{{option}}}\n", "--model", "unet"
    )
    assert_one_error(result, f"params.yaml: models.unet.options.{key}: not allowed; ", why)
    assert result.seconds < 30  # before torch is imported
    assert files(tmp_path) == {"params.yaml"}


def test_option_that_breaks_the_output_shape_fails_before_the_first_step(tmp_path: Path) -> None:
    """deeplabv3 with upsampling 2 gives logits at a quarter of the input size: a traceback at the first
    step's loss, until the one forward pass at the start."""
    pairs = [shapes_pair(64, 64, seed) for seed in range(6)]
    write_dataset(tmp_path, [p[0] for p in pairs], [p[1] for p in pairs], num_val=2)
    params = {
        "train": {"epochs": 1, "batch_size": 2, "image_size": [64, 64], "workers": 0, "accelerator": "cpu"},
        "models": {"x": {"arch": "deeplabv3", "options": {"upsampling": 2}}},
    }
    before = files(tmp_path)
    result = run(tmp_path, "train", yaml.safe_dump(params), "--model", "x", "--runs", "runs")
    assert_one_error(
        result,
        "models.x: the network gives (1, 3, 16, 16) for a 64x64 RGB image; expected logits "
        "of shape (1, 3, 64, 64)",
    )
    assert_contained(result)
    assert not (tmp_path / "models").exists() and not (tmp_path / "results").exists()
    new = files(tmp_path) - before - {"params.yaml"}
    assert all(p.split("/")[0] in ("runs", "checkpoints") for p in new), new  # the run state is no output


# --- class 2: numbers that multiply processes or work ---------------------------------------------------


@pytest.mark.parametrize(
    ("stage", "text", "message"),
    [
        (
            "train",
            "train: {accelerator: cpu, devices: 1000}\nmodels: {unet: {arch: unet}}\n",
            (
                f"train.devices: 1000 is not allowed on the CPU, where each device is a training process: this process may "
                f"use {usable_cores()} CPU cores"
            ),
        ),
        (
            "train",
            "train: {accelerator: cpu, num_nodes: 1000}\nmodels: {unet: {arch: unet}}\n",
            "train.num_nodes: 1000 needs a launcher on every node",
        ),  # it waited for the other nodes for ever
        (
            "evaluate",
            "evaluate: {speed_batches: 100000}\nmodels: {unet: {arch: unet}}\n",
            "evaluate.speed_batches: 100000 is not allowed; expected an integer from 1 to 1000",
        ),
        (
            "download",
            "data: {source: coco2017, coco: {workers: 1000, max_images: 5}}\n",
            "data.coco.workers: 1000 is not allowed; expected an integer from 1 to 64",
        ),
        ("download", "data: {sample: {num_images: 30000}}\n", "data.sample.num_images: 30000 is not allowed"),
        (
            "download",
            "data: {sample: {min_size: 30000, max_size: 30000}}\n",
            "data.sample.max_size: 30000 is not allowed; expected an integer up to 1024",
        ),
        (
            "train",
            "train: {image_size: [40000, 40000]}\nmodels: {unet: {arch: unet}}\n",
            "train.image_size: [40000, 40000] is not allowed; expected [height, width], each from 32 to 4096",
        ),
    ],
)
def test_numbers_that_multiply_work_are_refused(tmp_path: Path, stage: str, text: str, message: str) -> None:
    args = ["--model", "unet"] if stage in ("train", "evaluate") else []
    result = run(tmp_path, stage, text, *args)
    assert_one_error(result, f"params.yaml: {message}")
    assert result.seconds < 30
    assert_contained(result, limit=1 << 30)
    assert files(tmp_path) == {"params.yaml"}


def test_masks_workers_are_capped_at_the_usable_cores_with_a_line(tmp_path: Path) -> None:
    """masks.workers: 200 started 201 processes for 3 images."""
    images = [{"id": i, "file_name": f"{i}.jpg", "height": 16, "width": 16} for i in (1, 2, 3)]
    anns = [
        {"id": i, "image_id": i, "category_id": 1, "iscrowd": 0, "segmentation": [[2, 2, 10, 2, 10, 10]]}
        for i in (1, 2, 3)
    ]
    write_coco(tmp_path / "coco", images, anns)
    result = run(tmp_path, "masks", "masks: {workers: 200, preview: 0}\n", "--coco", "coco", "--out", "masks")
    assert result.returncode == 0, result.stderr
    cores = usable_cores()
    assert (
        f"WARNING cocoseg.core.limits: masks.workers: 200 processes asked, {cores} used: this process may use "
        f"{cores} CPU cores"
    ) in result.stderr
    assert result.peak_processes <= cores + 2  # the stage, its workers, and multiprocessing's helper at most
    assert_contained(result)
    assert len(list((tmp_path / "masks" / "semantic" / "val2017").iterdir())) == 3


@pytest.mark.parametrize("key", ["train.workers", "evaluate.workers"])
def test_loader_workers_are_capped_with_a_line(key: str, caplog: pytest.LogCaptureFixture) -> None:
    """train.workers: 64 started 129 processes (64 train and 64 val loader workers)."""
    cores = usable_cores()
    with caplog.at_level(logging.WARNING):
        assert cap_processes(key, 64) == min(64, cores)
        assert cap_processes(key, 1) == 1
    lines = [r.getMessage() for r in caplog.records]
    expected = (
        f"{key}: 64 processes asked, {cores} used: this process may use {cores} CPU cores, and more "
        "processes than cores only compete for them"
    )
    assert lines == ([] if cores >= 64 else [expected])


def test_speed_timing_ends_within_its_time_budget(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """evaluate.speed_batches (at most 1000) passes, or as many as SPEED_SECONDS allow, with a line."""
    import torch

    from cocoseg.core.params import EvaluateConfig
    from cocoseg.evaluation import evaluate

    monkeypatch.setattr(evaluate, "SPEED_SECONDS", 0.3)
    slow = torch.nn.Sequential(torch.nn.Conv2d(3, 3, 3))
    calls = []
    slow.register_forward_hook(lambda *a: calls.append(__import__("time").sleep(0.05)))
    with caplog.at_level(logging.WARNING):
        speed = evaluate.measure_speed(slow, (32, 32), EvaluateConfig(speed_batches=1000), "cpu")
    assert 0 < speed < 25 and 4 <= len(calls) <= 10
    assert "evaluate.speed_batches: 1000 passes asked" in caplog.text


# --- class 14: the command line --------------------------------------------------------------------------


@pytest.mark.parametrize("models", ["", ",,,", " , "])
def test_train_with_no_model_named_trains_nothing(tmp_path: Path, models: str) -> None:
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    result = watch([sys.executable, "-m", "cocoseg", "train", "--models", models], tmp_path)
    assert_one_error(
        result,
        f"--models {models!r}: names no model; expected comma-separated names of params.yaml's "
        "models (unet, deeplabv3, fastscnn)",
    )
    assert "dvc" not in result.stdout  # no command was printed, none run
    assert_contained(result, limit=1 << 30)
    assert files(tmp_path) == {"params.yaml"}


def test_bomb_helper_names_a_billion_values() -> None:
    """The test's own bomb is what it claims: 10**9 values from 1.2 kB."""
    node = __import__("yaml").compose(bomb())
    from cocoseg.core.yaml_file import expanded_size

    assert expanded_size(node, 10**12) > 10**9
    assert np.log10(expanded_size(node, 10**12)) > 9

"""The cocoseg command: every subcommand's DVC command line, applied by DVC's own -S parser to params.yaml."""

from __future__ import annotations

import contextlib
import io
import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from dvc.utils.hydra import apply_overrides
from helpers import REPO, committed_params

from cocoseg import cli
from cocoseg.core.params import load_params

SUBCOMMANDS = ["prepare", "train", "compare", "predict", "export", "tensorboard", "verify"]


@pytest.fixture
def params_path(tmp_path: Path) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(committed_params())
    return path


def dry_run(params_path: Path, *words: str) -> list[str]:
    """The command ``cocoseg <words> --dry-run`` prints, split into words (without the leading ``$``)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main([*words, "--params", str(params_path), "--dry-run"]) == 0
    assert out.getvalue().startswith("$ ")
    return shlex.split(out.getvalue()[2:])


def set_values(command: list[str]) -> list[str]:
    return [command[i + 1] for i, word in enumerate(command) if word == "-S"]


def settings_after(params_path: Path, command: list[str]) -> dict[str, tuple[float, int, int]]:
    """Apply the command's -S values with DVC's own parser; each model's effective (lr, epochs, batch)."""
    apply_overrides(str(params_path), set_values(command))
    params = load_params(params_path)
    return {name: params.model_settings(name) for name in params.models}


@pytest.mark.parametrize("subcommand", SUBCOMMANDS)
def test_every_subcommand_has_help(subcommand: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main([subcommand, "--help"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: cocoseg {subcommand} ")


def test_python_dash_m_cocoseg_runs_the_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cocoseg", "--help"], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: cocoseg ") and "tensorboard" in result.stdout


def test_the_seed_train_command_reaches_every_model(params_path: Path) -> None:
    command = dry_run(
        params_path,
        "train",
        "--data_root",
        "data",
        "--models",
        "unet,deeplabv3,fastscnn",
        "--gpu",
        "0",
        "--lr",
        "1e-3",
        "--batch_size",
        "16",
        "--epochs",
        "20",
    )
    assert command[:3] == ["dvc", "exp", "run"] and command[3] == "-S"  # every model: no stage targets
    # fastscnn has its own lr in params.yaml, so train.lr alone would not reach it
    assert set_values(command) == [
        "train.accelerator=gpu",
        "train.devices=[0]",
        "train.lr=0.001",
        "models.fastscnn.lr=0.001",
        "train.epochs=20",
        "train.batch_size=16",
    ]
    settings = settings_after(params_path, command)
    assert settings == {m: (0.001, 20, 16) for m in ("unet", "deeplabv3", "fastscnn")}
    params = load_params(params_path)
    assert (params.train.accelerator, params.train.devices) == ("gpu", (0,))


def test_some_models_get_their_own_keys_and_the_others_keep_theirs(params_path: Path) -> None:
    before = settings_after(params_path, [])
    command = dry_run(
        params_path,
        "train",
        "--models",
        "unet,fastscnn",
        "--lr",
        "0.0005",
        "--epochs",
        "3",
        "--queue",
        "-n",
        "short",
    )
    # their evaluate stages and compare: the comparison is this experiment's, the others are not retrained
    assert command[3:6] == ["evaluate@unet", "evaluate@fastscnn", "compare"]
    assert command[-3:] == ["-n", "short", "--queue"]
    assert set_values(command) == [
        "+models.unet.lr=0.0005",
        "models.fastscnn.lr=0.0005",
        "+models.unet.epochs=3",
        "+models.fastscnn.epochs=3",
    ]
    after = settings_after(params_path, command)
    assert after["unet"] == (0.0005, 3, before["unet"][2])
    assert after["fastscnn"] == (0.0005, 3, before["fastscnn"][2])
    assert after["deeplabv3"] == before["deeplabv3"]  # left out: its params, so its results, unchanged


def test_gpu_flag_forms(params_path: Path) -> None:
    assert set_values(dry_run(params_path, "train", "--gpu", "0,1")) == [
        "train.accelerator=gpu",
        "train.devices=[0,1]",
    ]
    assert set_values(dry_run(params_path, "train", "--gpu", "-1")) == [
        "train.accelerator=cpu",
        "train.devices=1",
    ]


def test_prepare_maps_visualize_to_previews(params_path: Path) -> None:
    command = dry_run(params_path, "prepare", "--visualize", "5")
    assert command == ["dvc", "exp", "run", "masks", "-S", "masks.preview=5"]
    apply_overrides(str(params_path), set_values(command))
    assert load_params(params_path).masks.preview == 5


def test_compare_and_tensorboard_commands(params_path: Path) -> None:
    assert dry_run(params_path, "compare") == cli.EXP_SHOW
    page = ["--html-template", cli.PLOTS_TEMPLATE, "-o", "plots"]
    assert dry_run(params_path, "compare", "--plots") == ["dvc", "plots", "show", *page]
    assert dry_run(params_path, "compare", "--plots", "HEAD", "my-exp") == [
        "dvc",
        "plots",
        "diff",
        "HEAD",
        "my-exp",
        *page,
    ]
    assert dry_run(params_path, "tensorboard") == ["tensorboard", "--logdir", "runs", "--port", "6006"]


@pytest.mark.parametrize(
    ("words", "message"),
    [
        (["train", "--models", "unet,pspnet"], "--models: pspnet not in params.yaml's models section"),
        (["train", "--gpu", "first"], "--gpu 'first': expected GPU indices"),
        (["prepare", "--data_root", "/data/coco"], "--data_root /data/coco: no such folder"),
    ],
)
def test_bad_flags_give_one_line(params_path: Path, words: list[str], message: str) -> None:
    command = [sys.executable, "-m", "cocoseg", *words, "--params", str(params_path), "--dry-run"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert [line for line in result.stderr.splitlines() if line.startswith("ERROR")] == [
        line for line in result.stderr.splitlines() if message in line
    ]


def test_readme_seed_table_is_generated_from_the_code(params_path: Path) -> None:
    table = cli.mapping_table(load_params(params_path))
    assert table in (REPO / "README.md").read_text(), "README table out of date; it should read:\n" + table


def test_readme_shows_the_compare_command() -> None:
    readme = (REPO / "README.md").read_text()
    assert shlex.join(cli.EXP_SHOW) in readme and "cocoseg compare" in readme


# --- prepare --ann: the seed's prepare_dataset.py, without DVC --------------------------------------------


def test_prepare_ann_dry_run_prints_the_checked_masks_settings(tmp_path: Path) -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert (
            cli.main(
                [
                    "prepare",
                    "--ann",
                    "a.json",
                    "--img_dir",
                    ".",
                    "--out_dir",
                    str(tmp_path / "o"),
                    "--categories",
                    "dining table, cat",
                    "--visualize",
                    "3",
                    "-S",
                    "masks.overlap=void",
                    "-S",
                    "masks.priority=[cat]",
                    "--dry-run",
                ]
            )
            == 0
        )
    masks = yaml.safe_load(out.getvalue())["masks"]
    assert masks["categories"] == ["dining table", "cat"] and masks["preview"] == 3
    assert masks["overlap"] == "void" and masks["priority"] == ["cat"]


@pytest.mark.parametrize(
    ("words", "message"),
    [
        (
            ["--img_dir", "."],
            "--ann: give --img_dir (the folder its file names start from) and --out_dir too",
        ),
        (
            ["--img_dir", ".", "--out_dir", "o", "--queue"],
            "--queue: not with --ann, which builds the masks directly",
        ),
        (
            ["--img_dir", ".", "--out_dir", "o", "-S", "masks.overlapp=void"],
            "unknown key 'masks.overlapp'; allowed keys:",
        ),
        (
            ["--img_dir", ".", "--out_dir", "o", "-S", "train.lr=1"],
            "-S 'train.lr=1': expected masks.<key>=<value>",
        ),
        (
            ["--img_dir", ".", "--out_dir", "o", "-S", "masks.split=pooled"],
            "masks.split: has no effect with --ann",
        ),
        (["--img_dir", ".", "--out_dir", "o", "--crowd", "ignore"], "masks.crowd: 'ignore' is not allowed"),
        (["--img_dir", "nowhere", "--out_dir", "o"], "--img_dir nowhere: no such folder"),
        (["--img_dir", ".", "--out_dir", "."], "--out_dir .: holds the input"),
        (["--img_dir", ".", "--out_dir", "full"], "--out_dir full: exists and holds files that no earlier"),
    ],
)
def test_prepare_ann_refuses_with_one_line(tmp_path: Path, words: list[str], message: str) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "mine.txt").write_text("keep me")
    (tmp_path / "a.json").write_text("{}")
    result = subprocess.run(
        [sys.executable, "-m", "cocoseg", "prepare", "--ann", "a.json", *words],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert (tmp_path / "full" / "mine.txt").read_text() == "keep me"


def test_prepare_ann_outside_any_project_replaces_its_own_earlier_output(tmp_path: Path) -> None:
    from exports import cvat

    export = cvat(tmp_path / "export")
    files = export.splits["default"]
    args = [
        "prepare",
        "--ann",
        str(files.annotations),
        "--img_dir",
        str(files.images),
        "--out_dir",
        str(tmp_path / "out"),
        "--workers",
        "1",
        "--categories",
        "person",
    ]
    assert cli.main(args) == 0
    labels = json.loads((tmp_path / "out" / "labels.json").read_text())
    assert [c["name"] for c in labels["classes"]] == ["background", "person"]
    assert cli.main([*args[:-1], "bike,person", "--visualize", "2"]) == 0  # a rerun replaces it whole
    labels = json.loads((tmp_path / "out" / "labels.json").read_text())
    assert [c["name"] for c in labels["classes"]] == ["background", "bike", "person"]
    assert len(list((tmp_path / "out" / "preview" / "JPEGImages").iterdir())) == 2
    assert not (tmp_path / "params.yaml").exists() and not (tmp_path / "out" / "split.json").exists()

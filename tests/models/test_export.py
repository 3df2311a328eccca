"""cocoseg export: the exported file, run outside cocoseg (onnxruntime for ONNX, torch.jit for TorchScript) on a
real photo prepared from its JSON sidecar alone, gives PyTorch's logits within the stated tolerance."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import onnxruntime
import pytest
import torch
from helpers import REPO, assert_one_error, write_sample

from cocoseg import cli
from cocoseg.models import build_model, model_spec
from cocoseg.models.checkpoint import save_checkpoint
from cocoseg.models.export import TOLERANCE, run_exported
from cocoseg.models.inference import to_chw
from cocoseg.models.preprocessing import Preprocessing

CLASSES = ["background", "person", "dog", "car"]
SIZE = (64, 96)  # (height, width): not square, so height and width cannot be swapped unnoticed
# Small variants of the three models, so six exports take seconds: what export does is the same.
SPECS = {
    "unet": {"encoder_depth": 3, "decoder_channels": [16, 8, 4]},
    "deeplabv3": {"encoder_depth": 3, "decoder_channels": 16},
    "fastscnn": {},
}
REAL = REPO.parents[1] / "shared" / "data" / "coco2017-val-mini" / "val2017"


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real COCO photo where ../shared has them, else a JPEG of the offline sample."""
    if REAL.is_dir():
        return min(REAL.glob("*.jpg"))
    coco = write_sample(tmp_path_factory.mktemp("sample") / "coco", num_images=16)
    return min((coco / "val2017").glob("*.jpg"))


@pytest.fixture(scope="module", params=sorted(SPECS))
def checkpoint(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    arch = request.param
    torch.manual_seed(0)
    model = build_model(arch, len(CLASSES), **SPECS[arch]).eval()
    # Untrained logits can be tiny (Fast-SCNN's head starts at std 0.01): scale the head so they spread about
    # 1, as a trained model's do, and the tolerance below is a strict test rather than a trivial one.
    head = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    with torch.no_grad():
        head.weight.div_(model(torch.randn(2, 3, *SIZE)).std())
    path = tmp_path_factory.mktemp(arch) / "models" / arch / "model.pt"
    save_checkpoint(
        path,
        model.state_dict(),
        model_spec(arch, len(CLASSES), "resnet18", **SPECS[arch]),
        Preprocessing(SIZE).to_json(),
        CLASSES,
        {"val/miou": 0.5},
    )
    return path


def input_from_sidecar(photo: Path, sidecar: dict) -> np.ndarray:
    """(1, 3, H, W) float32 made by the sidecar's recipe, without cocoseg's code."""
    prep = sidecar["preprocessing"]
    assert prep["channels"] == "RGB" and prep["scale"] == "1/255"
    rgb = cv2.cvtColor(cv2.imread(str(photo)), cv2.COLOR_BGR2RGB)
    resized = cv2.resize(
        rgb, (prep["resize"]["width"], prep["resize"]["height"]), interpolation=cv2.INTER_LINEAR
    )
    x = (resized.astype(np.float32) / 255 - np.float32(prep["mean"])) / np.float32(prep["std"])
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def pytorch_logits(checkpoint: Path, photo: Path) -> np.ndarray:
    """The logits evaluate and predict compute for the photo: cocoseg's own preprocessing and model."""
    ckpt = torch.load(checkpoint, weights_only=True)
    model = build_model(**ckpt["model"])
    model.load_state_dict(ckpt["state_dict"])
    prep = Preprocessing.from_checkpoint(ckpt)
    rgb = cv2.cvtColor(cv2.imread(str(photo)), cv2.COLOR_BGR2RGB)
    with torch.no_grad():
        return model.eval()(prep.normalise(to_chw(prep.resize(rgb))[None])).numpy()


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_exported_file_gives_pytorchs_logits_on_a_real_photo(
    checkpoint: Path, photo: Path, fmt: str, tmp_path: Path
) -> None:
    out = tmp_path / f"model.{fmt}"
    assert cli.main(["export", "--model", str(checkpoint), "--format", fmt, "--out", str(out)]) == 0
    sidecar = json.loads(out.with_name(out.name + ".json").read_text())
    assert sidecar["format"] == fmt and sidecar["classes"] == CLASSES
    assert sidecar["input"]["shape"] == ["batch", 3, *SIZE] and sidecar["output"]["shape"] == [
        "batch",
        4,
        *SIZE,
    ]
    assert sidecar["check"]["max_abs_logit_difference"] <= sidecar["check"]["tolerance"]
    assert sidecar["check"]["tolerance"] >= TOLERANCE  # per unit of the largest logit, at least 1

    inputs = input_from_sidecar(photo, sidecar)
    if fmt == "onnx":  # onnxruntime alone, by the names the sidecar gives
        session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        exported = session.run([sidecar["output"]["name"]], {sidecar["input"]["name"]: inputs})[0]
        batch = session.run(None, {sidecar["input"]["name"]: np.concatenate([inputs, inputs])})[0]
        np.testing.assert_allclose(
            batch, np.concatenate([exported, exported]), atol=TOLERANCE
        )  # any batch size
    else:  # plain torch.jit, no cocoseg model code
        exported = run_exported(out, fmt, inputs)
    expected = pytorch_logits(checkpoint, photo)
    assert exported.shape == expected.shape == (1, len(CLASSES), *SIZE)
    # The sidecar's recipe (OpenCV, numpy) is the pipeline's, so the inputs agree to float rounding.
    np.testing.assert_allclose(exported, expected, atol=TOLERANCE, rtol=0)
    assert expected.std() > 0.1  # the logits are not all near 0: the check means something


def test_export_by_model_name_writes_into_exports(
    checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--model NAME`` reads models/NAME/model.pt and writes exports/NAME.onnx beside its sidecar."""
    monkeypatch.chdir(checkpoint.parents[2])
    name = checkpoint.parent.name
    assert cli.main(["export", "--model", name, "--format", "torchscript"]) == 0
    assert sorted(p.name for p in Path("exports").iterdir()) == [
        f"{name}.torchscript.pt",
        f"{name}.torchscript.pt.json",
    ]
    assert (
        json.loads(Path("exports", f"{name}.torchscript.pt.json").read_text())["source"]["checkpoint"]
        == f"models/{name}/model.pt"
    )


def test_export_errors_are_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cocoseg", "export", "--model", "nope", "--format", "onnx"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert_one_error(result, "models/nope/model.pt: model file not found")
    assert not (tmp_path / "exports").exists()

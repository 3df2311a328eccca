"""The model file: plain torch.load(weights_only=True) rebuilds the model; clear errors; stable bytes."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import REPO, assert_one_error

from cocoseg.core.errors import UserError
from cocoseg.models import build_model, model_spec
from cocoseg.models.checkpoint import FORMAT_VERSION, CheckpointError, load_checkpoint, save_checkpoint

CLASSES = ["background", "disk", "square"]
PREPROCESSING = {
    "image_size": [64, 64],
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
    "channels": "RGB",
}
METRICS = {"best_epoch": 3, "val/miou": 0.5, "val/loss": 0.25}


def trained_state(arch: str) -> torch.nn.Module:
    """A model whose weights and BatchNorm statistics differ from a fresh build with any seed."""
    torch.manual_seed(0)
    model = build_model(arch, len(CLASSES), "resnet18", None)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
        model.train()
        for _ in range(2):
            model(torch.randn(2, 3, 64, 64))  # moves the running statistics
    return model.eval()


def save(path: Path, model: torch.nn.Module, arch: str) -> None:
    save_checkpoint(
        path, model.state_dict(), model_spec(arch, len(CLASSES), "resnet18"), PREPROCESSING, CLASSES, METRICS
    )


@pytest.mark.parametrize("arch", ["fastscnn", "unet"])
def test_plain_torch_load_rebuilds_model(tmp_path: Path, arch: str) -> None:
    model = trained_state(arch)
    path = tmp_path / "models" / arch / "model.pt"
    save(path, model, arch)

    ckpt = torch.load(path, weights_only=True)  # no cocoseg classes pickled: plain types and tensors
    assert ckpt["format_version"] == FORMAT_VERSION
    assert ckpt["model"] == {"arch": arch, "num_classes": 3, "encoder": "resnet18"}
    assert (ckpt["preprocessing"], ckpt["classes"], ckpt["metrics"]) == (PREPROCESSING, CLASSES, METRICS)
    rebuilt = build_model(**ckpt["model"])
    rebuilt.load_state_dict(ckpt["state_dict"])  # strict: every key present, none extra
    rebuilt.eval()

    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
        assert torch.equal(rebuilt(x), expected)
        loaded, loaded_ckpt = load_checkpoint(path)
        assert not loaded.training  # ready for inference: BatchNorm uses the stored statistics
        assert torch.equal(loaded(x), expected)
    assert loaded_ckpt["classes"] == CLASSES


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "models" / "nope" / "model.pt"
    with pytest.raises(FileNotFoundError, match=f"{path}: model file not found"):
        load_checkpoint(path)


def write_bad(path: Path, kind: str) -> None:
    """A model file gone wrong in one of the ways users meet."""
    model = trained_state("fastscnn")
    if kind in ("truncated", "mismatched_spec", "unbuildable_spec", "incomplete"):
        spec = {
            "mismatched_spec": model_spec("fastscnn", 4, "resnet18"),
            "unbuildable_spec": model_spec("fastscnn", 3, "resnet18", wings=2),
        }.get(kind, model_spec("fastscnn", 3, "resnet18"))
        save_checkpoint(path, model.state_dict(), spec, PREPROCESSING, CLASSES, METRICS)
        if kind == "truncated":
            path.write_bytes(path.read_bytes()[:-5000])  # the zip's directory at the end is gone
        elif kind == "incomplete":
            ckpt = torch.load(path, weights_only=True)
            del ckpt["classes"]
            torch.save(ckpt, path)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "random":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, np.uint8).tobytes())
    elif kind == "text":
        path.write_text("not a model\n")
    elif kind == "state_dict":
        torch.save(model.state_dict(), path)
    elif kind == "pickled_module":
        torch.save(model, path)
    else:  # loads with weights_only=True, but is some other program's dict
        torch.save({"state_dict": model.state_dict(), "epoch": 3}, path)


BAD_FILES = {
    "empty": "empty file",
    "truncated": "truncated or damaged (",
    "random": "not a PyTorch file",
    "text": "not a PyTorch file",
    "state_dict": "a bare state_dict (weights without the model spec)",
    "pickled_module": "holds pickled Python objects (a whole model?)",
    "foreign_dict": "not a cocoseg model file of format 1",
    "incomplete": "incomplete cocoseg model file: no classes",
    "mismatched_spec": "the weights do not match the model spec {'arch': 'fastscnn', 'num_classes': 4, "
    "'encoder': 'resnet18'}: 0 missing, 0 unexpected, 2 of another shape (e.g. classifier.3.bias: "
    "(3,) in the file, (4,) in the model)",
    "unbuildable_spec": "cannot be built (",
}


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_bad_model_file_is_refused_in_one_line(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "model.pt"
    write_bad(path, kind)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    message = str(err.value)
    assert message.startswith(f"{path}: ") and BAD_FILES[kind] in message
    assert kind != "unbuildable_spec" or "unexpected keyword argument 'wings'" in message
    assert "\n" not in message and len(message) < 400
    assert isinstance(err.value, UserError) and isinstance(err.value, ValueError)  # the stage runner's kind


@pytest.mark.parametrize(("command", "kind"), [("evaluate", "mismatched_spec"), ("predict", "truncated")])
def test_stages_refuse_bad_model_file(tmp_path: Path, kind: str, command: str) -> None:
    """evaluate and cocoseg-predict: one line, exit 1, no traceback, nothing written (every kind of bad
    file raises the same CheckpointError, tested above)."""
    if command == "evaluate":
        path = tmp_path / "models" / "x" / "model.pt"
        path.parent.mkdir(parents=True)
        (tmp_path / "params.yaml").write_text("models:\n  x: {arch: fastscnn}\n")
        args = [str(REPO / "stages" / "evaluate.py"), "--model", "x"]
    else:
        path = tmp_path / "model.pt"
        (tmp_path / "photo.jpg").write_bytes(b"")
        args = ["-m", "cocoseg", "predict", "--model", str(path), "--out", "out", "photo.jpg"]
    write_bad(path, kind)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, *args], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert time.perf_counter() - start < 15  # torch's import, then the check: no model is built or run
    assert_one_error(
        result, f"{path.relative_to(tmp_path) if command == 'evaluate' else path}: {BAD_FILES[kind]}"
    )
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_same_state_same_bytes(tmp_path: Path) -> None:
    model = trained_state("fastscnn")
    # different folders and file names: neither may leak into the bytes (torch.save names its zip records
    # after the file it writes to, unless it writes to a buffer)
    first, second = tmp_path / "a" / "model.pt", tmp_path / "b" / "other.pt"
    save(first, model, "fastscnn")
    save(second, model, "fastscnn")
    assert first.read_bytes() == second.read_bytes()
    # and the bytes do depend on the weights
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    save(second, model, "fastscnn")
    assert first.read_bytes() != second.read_bytes()

"""The model file: plain torch.load(weights_only=True) rebuilds the model; clear errors; stable bytes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cocoseg.models.checkpoint import FORMAT_VERSION, load_checkpoint, save_checkpoint
from cocoseg.models import build_model, model_spec

CLASSES = ["background", "disk", "square"]
PREPROCESSING = {"image_size": [64, 64], "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                 "channels": "RGB"}
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
    save_checkpoint(path, model.state_dict(), model_spec(arch, len(CLASSES), "resnet18"), PREPROCESSING,
                    CLASSES, METRICS)


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


@pytest.mark.parametrize("kind", ["text", "foreign_torch_file"])
def test_not_a_cocoseg_file(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "model.pt"
    if kind == "text":
        path.write_text("not a model\n")
    else:  # loads with weights_only=True, but is some other program's state dict
        torch.save({"state_dict": trained_state("fastscnn").state_dict()}, path)
    with pytest.raises(ValueError, match=f"{path}: not a cocoseg model file"):
        load_checkpoint(path)


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

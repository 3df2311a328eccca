"""Model files that lie (issue 21, class 13): each claim of the file is checked before it decides what is
allocated, and the weights against the digest recorded at save; one line each, from load_checkpoint and from
the commands that load a model (predict here, evaluate through the same function)."""

from __future__ import annotations

import io
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from helpers import assert_one_error, jpeg_bytes
from proctree import assert_contained, watch

from cocoseg.models import build_model, model_spec
from cocoseg.models.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from cocoseg.models.checkpoint_checks import weights_digest

CLASSES = ["background", "disk", "square"]
PREP = {
    "image_size": [64, 64],
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
    "channels": "RGB",
}


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "model.pt"
    save_checkpoint(
        path,
        build_model("fastscnn", 3).state_dict(),
        model_spec("fastscnn", 3, "resnet18"),
        PREP,
        CLASSES,
        {},
    )
    return path


def edited(good: Path, path: Path, **changes: object) -> Path:
    """The good file with top-level fields (or preprocessing./model. fields) changed, saved with torch.save."""
    ckpt = torch.load(good, weights_only=True)
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            if value is None:
                del ckpt[section][field]
            else:
                ckpt[section][field] = value
        else:
            ckpt[section] = value
    torch.save(ckpt, path)
    return path


LIES = {
    "huge image size": (
        {"preprocessing__image_size": [40000, 40000]},
        "its preprocessing gives image_size [40000, 40000]; expected [height, width], each from 32",
    ),
    "image size 0": ({"preprocessing__image_size": [0, 0]}, "its preprocessing gives image_size [0, 0]"),
    "image size of floats": ({"preprocessing__image_size": [64.0, 64.0]}, "image_size [64.0, 64.0]"),
    "missing mean": (
        {"preprocessing__mean": None},
        "its preprocessing gives mean None; expected 3 finite numbers",
    ),
    "zero std": ({"preprocessing__std": [0, 1, 1]}, "std [0, 1, 1]; expected 3 finite numbers, each > 0"),
    "BGR": ({"preprocessing__channels": "BGR"}, "channels 'BGR'; expected RGB"),
    "1e7 classes": (
        {"model__num_classes": 10_000_000},
        "num_classes 10000000; expected an integer from 1 to 65535",
    ),
    "class count as text": ({"model__num_classes": "3"}, "num_classes '3'; expected an integer"),
    "short class list": (
        {"classes": ["background", "disk"]},
        "it names 2 classes for a network of 3 outputs",
    ),
    "class list as a string": ({"classes": "abc"}, "its class list 'abc' is not a list of names"),
    "unknown architecture": ({"model__arch": "os.system"}, "names no known architecture"),
    "weights to download": ({"model__encoder_weights": "imagenet"}, "its model spec sets 'encoder_weights'"),
    "logits replaced": ({"model__aux_params": {"classes": 3}}, "its model spec sets 'aux_params'"),
    "digest missing": ({"weights_sha256": None}, "its weights are not the ones it recorded"),
}


@pytest.mark.parametrize("lie", sorted(LIES))
def test_lying_model_file_is_refused_in_one_line(good: Path, tmp_path: Path, lie: str) -> None:
    changes, message = LIES[lie]
    path = edited(good, tmp_path / "model.pt", **changes)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value), str(err.value)
    assert "\n" not in str(err.value) and len(str(err.value)) < 400


def flip_weight_byte(good: Path, path: Path) -> None:
    """One bit flipped in the middle of the largest tensor's stored bytes (zip members are stored raw)."""
    data = bytearray(good.read_bytes())
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as zf:
        info = max((i for i in zf.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
        header = info.header_offset
        name_len, extra_len = (
            int.from_bytes(data[header + 26 : header + 28], "little"),
            int.from_bytes(data[header + 28 : header + 30], "little"),
        )
    start = header + 30 + name_len + extra_len
    data[start + info.file_size // 2] ^= 0x10
    path.write_bytes(bytes(data))


def test_flipped_byte_in_the_weights_is_refused(good: Path, tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    flip_weight_byte(good, path)
    ckpt = torch.load(path, weights_only=True)  # PyTorch itself notices nothing
    assert ckpt["weights_sha256"] != weights_digest(ckpt["state_dict"])
    with pytest.raises(CheckpointError, match="its weights are not the ones it recorded"):
        load_checkpoint(path)


def test_format_1_file_without_digest_still_loads(good: Path, tmp_path: Path) -> None:
    path = edited(good, tmp_path / "model.pt", format_version=1)
    ckpt = torch.load(path, weights_only=True)
    del ckpt["weights_sha256"]
    torch.save(ckpt, path)
    model, loaded = load_checkpoint(path)
    assert loaded["classes"] == CLASSES and not model.training


def test_digest_follows_the_weights_not_their_device_or_order() -> None:
    state = build_model("fastscnn", 3).state_dict()
    shuffled = dict(reversed(list(state.items())))
    assert weights_digest(state) == weights_digest(shuffled)
    bumped = {**state, "classifier.3.bias": state["classifier.3.bias"] + 1e-7}
    assert weights_digest(bumped) != weights_digest(state)


@pytest.mark.parametrize("lie", ["huge image size", "flipped byte"])  # every lie is refused by the same check
def test_predict_refuses_a_lying_model_before_writing(good: Path, tmp_path: Path, lie: str) -> None:
    """A huge image size or class count allocated gigabytes; a short class list raised after the outputs
    were written; a flipped byte was used silently."""
    path = tmp_path / "model.pt"
    if lie == "flipped byte":
        flip_weight_byte(good, path)
    else:
        edited(good, path, **LIES[lie][0])
    (tmp_path / "photo.jpg").write_bytes(jpeg_bytes(48, 64))
    result = watch(
        [
            sys.executable,
            "-m",
            "cocoseg",
            "predict",
            "--model",
            str(path),
            "--out",
            "out",
            "--device",
            "cpu",
            "photo.jpg",
        ],
        tmp_path,
    )
    assert_one_error(result, f"{path}: ")
    assert_contained(result)  # importing torch alone takes 0.6-0.9 GB here
    assert not (tmp_path / "out").exists()

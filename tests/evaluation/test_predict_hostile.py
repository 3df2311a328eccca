"""Predict's hostile inputs (issue 21, classes 12 and 1): a FIFO named like an image, headers claiming
gigapixels, a real 20000x20000 PNG, --out naming a file, a device that is not there. One line for what stops
the command, a warning for what is skipped, the others predicted; the process tree under 2 GB and nothing
left running."""

from __future__ import annotations

import os
import struct
import sys
import zlib
from pathlib import Path

import pytest
import torch
from helpers import assert_one_error, jpeg_bytes
from proctree import Watched, assert_contained, watch

from cocoseg.models import build_model, model_spec
from cocoseg.models.checkpoint import save_checkpoint

PREP = {
    "image_size": [64, 64],
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
    "channels": "RGB",
}


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "model.pt"
    save_checkpoint(
        path,
        build_model("fastscnn", 3).state_dict(),
        model_spec("fastscnn", 3, "resnet18"),
        PREP,
        ["background", "disk", "square"],
        {},
    )
    return path


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(width: int, height: int, bit_depth: int = 8, colour: int = 2, rows: bool = False) -> bytes:
    """A PNG header for width x height; with ``rows``, a whole, valid 1-bit grey image of that size
    (streamed: 20000x20000 is 3 MB of zlib and 50 MB of rows, never held as pixels)."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0)
    body = b""
    if rows:
        packer = zlib.compressobj(9)
        row = b"\x00" * (1 + (width * bit_depth + 7) // 8)
        body = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", body) + _chunk(b"IEND", b"")


def predict(model: Path, cwd: Path, *args: str) -> Watched:
    return watch([sys.executable, "-m", "cocoseg", "predict", "--model", str(model), *args], cwd, timeout=120)


def test_folder_of_hostile_images_skips_each_with_a_line(model: Path, tmp_path: Path) -> None:
    """A FIFO named x.jpg hung predict; a header claiming 40000x40000 gave a cv2 traceback; a real
    20000x20000 PNG took 5.5 GB. Now each is skipped with a line, and the good photo is predicted."""
    photos = tmp_path / "photos"
    photos.mkdir()
    os.mkfifo(photos / "x.jpg")
    (photos / "claims.png").write_bytes(png(40000, 40000))
    (photos / "huge.png").write_bytes(png(20000, 20000, bit_depth=1, colour=0, rows=True))
    (photos / "ok.jpg").write_bytes(jpeg_bytes(48, 64))
    result = predict(model, tmp_path, "--device", "cpu", "--out", "out", "photos")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    warnings = sorted(
        line.split(": ", 1)[1] for line in result.stderr.splitlines() if line.startswith("WARNING")
    )
    assert warnings == [
        (
            "skipped photos/claims.png: image too large (40000x40000 is 1600.0 megapixels, over the budget of 64.0 "
            "(--max-pixels))"
        ),
        (
            "skipped photos/huge.png: image too large (20000x20000 is 400.0 megapixels, over the budget of 64.0 "
            "(--max-pixels))"
        ),
        "skipped photos/x.jpg: not a regular file",
    ]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["ok_mask.png", "ok_overlay.png"]
    assert_contained(result)


def test_a_fifo_named_on_the_command_line_is_one_line(model: Path, tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "x.jpg")
    result = predict(model, tmp_path, "--device", "cpu", "--out", "out", "x.jpg")
    assert_one_error(result, "x.jpg: not a regular file or a folder (a FIFO, a device, a socket?)")
    assert_contained(result)
    assert not (tmp_path / "out").exists()


def test_out_naming_a_file_is_one_line_and_the_file_is_kept(model: Path, tmp_path: Path) -> None:
    (tmp_path / "ok.jpg").write_bytes(jpeg_bytes(48, 64))
    (tmp_path / "notes.txt").write_text("mine\n")
    result = predict(model, tmp_path, "--device", "cpu", "--out", "notes.txt", "ok.jpg")
    assert_one_error(result, "--out notes.txt: exists and is not a folder; name a folder for the predictions")
    assert (tmp_path / "notes.txt").read_text() == "mine\n"
    assert_contained(result)


@pytest.mark.parametrize(
    ("device", "message"),
    [
        ("cuda", "--device 'cuda': this machine has 0 CUDA devices; expected cpu"),
        ("gpu0", "--device 'gpu0': not a device name; expected cpu, cuda, cuda:N or mps"),
    ],
)
def test_missing_or_unknown_device_is_named_not_blamed_on_the_model(
    model: Path, tmp_path: Path, device: str, message: str
) -> None:
    """It used to be reported as a damaged model file."""
    if device.startswith("cuda") and torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device: asking for one is no error here")
    (tmp_path / "ok.jpg").write_bytes(jpeg_bytes(48, 64))
    result = predict(model, tmp_path, "--device", device, "--out", "out", "ok.jpg")
    assert_one_error(result, message)
    assert "model" not in result.stderr.split("ERROR", 1)[1]
    assert_contained(result)
    assert not (tmp_path / "out").exists()

"""Export a trained model to run without this project: ONNX (onnxruntime, TensorRT, OpenVINO, browsers) or
TorchScript (libtorch in C++, PyTorch without cocoseg installed).

    cocoseg export --model unet --format onnx    ->  exports/unet.onnx and exports/unet.onnx.json

The exported network takes what the model took in training: float32 (N, 3, H, W) at the checkpoint's
``image_size``, RGB scaled to [0, 1], minus ``mean``, over ``std``; it returns (N, K, H, W) logits. The
JSON sidecar beside the file records that preprocessing, the class names and how to read the logits, so
the file is usable alone. Before anything is written under its final name, the exported file is run (by
onnxruntime for ONNX) on a seeded input and its logits are compared with PyTorch's: more than
``TOLERANCE`` apart and the export fails.
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cocoseg.core.errors import UserError
from cocoseg.core.files import atomic_path, write_json
from cocoseg.models.checkpoint import load_checkpoint
from cocoseg.models.preprocessing import Preprocessing

log = logging.getLogger(__name__)

FORMATS = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}  # format -> file name suffix
# Largest difference allowed between an exported file's logits and PyTorch's, in float32, per unit of the
# largest logit (at least 1): the runtimes order their sums differently, so rounding grows with the logits.
TOLERANCE = 1e-4
INPUT, OUTPUT = "image", "logits"


class ExportError(UserError):
    """The exported file does not reproduce the model's logits within ``TOLERANCE``."""


def export_path(out_dir: Path, name: str, fmt: str) -> Path:
    """exports/<name>.onnx or exports/<name>.torchscript.pt."""
    return Path(out_dir) / f"{name}{FORMATS[fmt]}"


def sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def export_model(model_path: Path, fmt: str, out: Path) -> dict[str, Any]:
    """Write ``out`` (the exported network) and ``out``.json (how to use it); return the sidecar's content."""
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt!r}: expected one of {sorted(FORMATS)}")
    model, ckpt = load_checkpoint(model_path, "cpu")
    prep = Preprocessing.from_checkpoint(ckpt)
    example = example_input(prep)
    with torch.no_grad():
        expected = model(example).numpy()
    with atomic_path(out) as tmp:
        (_write_onnx if fmt == "onnx" else _write_torchscript)(model, example, tmp)
        difference = float(np.abs(run_exported(tmp, fmt, example.numpy()) - expected).max())
        allowed = TOLERANCE * max(1.0, float(np.abs(expected).max()))
        if not difference <= allowed:
            raise ExportError(
                f"{out}: the exported {fmt} logits differ from PyTorch's by {difference:.3g} "
                f"(allowed: {allowed:.3g}); nothing was written"
            )
    sidecar = describe(model_path, ckpt, prep, fmt, out, difference, allowed)
    write_json(sidecar_path(out), sidecar)
    log.info(
        "%s -> %s (%s; logits within %.2g of PyTorch's), usage in %s",
        model_path,
        out,
        fmt,
        difference,
        sidecar_path(out),
    )
    return sidecar


def example_input(prep: Preprocessing, seed: int = 0) -> torch.Tensor:
    """(1, 3, H, W) model input made from a seeded random uint8 image, as evaluate and predict make it."""
    h, w = prep.image_size
    image = torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (3, h, w), dtype=np.uint8))
    return prep.normalise(image[None])


def run_exported(path: Path, fmt: str, inputs: np.ndarray) -> np.ndarray:
    """(N, K, H, W) logits of an exported file for (N, 3, H, W) float32 inputs, outside cocoseg's model code."""
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run([OUTPUT], {INPUT: inputs})[0]
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation notice
        return torch.jit.load(str(path), map_location="cpu")(torch.from_numpy(inputs)).numpy()


def _write_onnx(model: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    """ONNX through torch.export (the TorchScript-based exporter cannot size Fast-SCNN's adaptive pooling);
    the batch size stays free, height and width are the training size; weights inside the one file."""
    batch = torch.export.Dim("batch", min=1, max=1024)
    for name in ("onnxscript", "onnx_ir"):  # a line per optimiser pass otherwise
        logging.getLogger(name).setLevel(logging.WARNING)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model,
            (example,),
            dynamo=True,
            input_names=[INPUT],
            output_names=[OUTPUT],
            dynamic_shapes=({0: batch},),
            external_data=False,
            verbose=False,
        )
        program.save(str(path), external_data=False)


def _write_torchscript(model: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    """TorchScript by tracing at the training size (the network's Python control flow is then fixed for it).

    PyTorch marks TorchScript deprecated in favour of torch.export; libtorch still runs it, so it stays
    here, quietly, for C++ users (ONNX is the format to prefer)."""
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # sizes read from shapes: expected here
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.trace(model, example), str(path))


def describe(
    model_path: Path,
    ckpt: dict[str, Any],
    prep: Preprocessing,
    fmt: str,
    out: Path,
    difference: float,
    allowed: float,
) -> dict[str, Any]:
    """The sidecar: everything needed to feed the exported file and read its output, and where it came from."""
    h, w = prep.image_size
    classes = list(ckpt["classes"])
    return {
        "format": fmt,
        "file": out.name,
        "model": ckpt["model"],
        "classes": classes,
        "input": {"name": INPUT, "shape": ["batch", 3, h, w], "dtype": "float32", "layout": "NCHW"},
        "preprocessing": {
            "channels": prep.channels,
            "resize": {"height": h, "width": w, "interpolation": "bilinear"},
            "scale": "1/255",
            "mean": list(prep.mean),
            "std": list(prep.std),
            "formula": "(pixel / 255 - mean[c]) / std[c], channel c in RGB order",
        },
        "output": {
            "name": OUTPUT,
            "shape": ["batch", len(classes), h, w],
            "dtype": "float32",
            "meaning": "class logits: argmax over axis 1 is the class id, an index into classes; for a "
            "map at the image's own size, resize the logits bilinearly (align_corners false) "
            "before the argmax, as cocoseg predict does",
        },
        "source": {
            "checkpoint": str(model_path),
            "sha256": _sha256(model_path),
            "metrics": ckpt.get("metrics", {}),
        },
        "check": {
            "max_abs_logit_difference": difference,
            "tolerance": allowed,
            "against": "PyTorch on the CPU, one seeded input of the shape above",
        },
    }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

"""What a model file claims, checked before anything is built or allocated from it.

A model.pt is data: its spec, class list and preprocessing decide what predict and evaluate allocate
(a class count of 1e7 is a 1e7-channel head; an input size of 40000 a 19 GB input), and its weights
may have been damaged on a disk or in a copy. So every field is checked for type and range, the weights
against the SHA-256 the train stage recorded, and the network the spec describes is built on PyTorch's
``meta`` device (no memory) and its weight shapes compared with the file's before a real one is built.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import torch

from cocoseg.core.errors import UserError
from cocoseg.core.limits import MAX_CLASSES, MAX_IMAGE_SIDE, MAX_LOGITS
from cocoseg.models import ARCHITECTURES, RESERVED_OPTIONS


class ModelFileLies(UserError, ValueError):
    """A field of a model file is out of type or range, or its weights are not the ones it recorded."""


def weights_digest(state_dict: dict[str, torch.Tensor]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes, in name order: the same weights give the
    same digest on any device, and one flipped bit changes it."""
    digest = hashlib.sha256()
    for key in sorted(state_dict):
        tensor = state_dict[key].detach().cpu().contiguous()
        digest.update(f"{key}\t{tensor.dtype}\t{tuple(tensor.shape)}\n".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def check_spec(spec: Any) -> None:
    """The model spec: a known architecture, a class count a mask holds, no option that cocoseg sets."""
    if (
        not isinstance(spec, dict)
        or not isinstance(spec.get("arch"), str)
        or spec["arch"] not in ARCHITECTURES
    ):
        raise ModelFileLies(
            f"its model spec {_short(spec)} names no known architecture ({sorted(ARCHITECTURES)})"
        )
    classes = spec.get("num_classes")
    if type(classes) is not int or not 1 <= classes <= MAX_CLASSES:
        raise ModelFileLies(
            f"its model spec gives num_classes {_short(classes)}; expected an integer from 1 to {MAX_CLASSES}"
        )
    if not isinstance(spec.get("encoder", ""), str):
        raise ModelFileLies(f"its model spec gives encoder {_short(spec['encoder'])}; expected a string")
    reserved = sorted((set(spec) - {"arch", "num_classes", "encoder"}) & set(RESERVED_OPTIONS))
    if reserved:
        raise ModelFileLies(
            f"its model spec sets {reserved[0]!r}, which cocoseg sets itself "
            f"({RESERVED_OPTIONS[reserved[0]]})"
        )


def check_classes(classes: Any, spec: dict[str, Any]) -> None:
    if not isinstance(classes, list) or not all(isinstance(name, str) for name in classes):
        raise ModelFileLies(f"its class list {_short(classes)} is not a list of names")
    if len(classes) != spec["num_classes"]:
        raise ModelFileLies(f"it names {len(classes)} classes for a network of {spec['num_classes']} outputs")


def check_preprocessing(prep: Any) -> None:
    """Input size within MAX_IMAGE_SIDE, three finite means, three positive finite deviations, RGB."""
    if not isinstance(prep, dict):
        raise ModelFileLies(f"its preprocessing {_short(prep)} is not a mapping")
    size = prep.get("image_size")
    if not (
        isinstance(size, list)
        and len(size) == 2
        and all(type(v) is int and 32 <= v <= MAX_IMAGE_SIDE for v in size)
    ):
        raise ModelFileLies(
            f"its preprocessing gives image_size {_short(size)}; expected [height, width], "
            f"each from 32 to {MAX_IMAGE_SIDE}"
        )
    for key, low in (("mean", -math.inf), ("std", 0.0)):
        values = prep.get(key)
        if not (
            isinstance(values, list)
            and len(values) == 3
            and all(type(v) in (int, float) and low < v < math.inf for v in values)
        ):
            raise ModelFileLies(
                f"its preprocessing gives {key} {_short(values)}; expected 3 finite numbers"
                f"{', each > 0' if key == 'std' else ''}"
            )
    if prep.get("channels", "RGB") != "RGB":
        raise ModelFileLies(f"its preprocessing gives channels {_short(prep.get('channels'))}; expected RGB")


def check_logits(spec: dict[str, Any], prep: dict[str, Any]) -> None:
    """Classes times input pixels: one image's logits, allocated by every forward pass."""
    height, width = prep["image_size"]
    if spec["num_classes"] * height * width > MAX_LOGITS:
        raise ModelFileLies(
            f"its {spec['num_classes']} classes at an input of {height}x{width} make logits of "
            f"{spec['num_classes'] * height * width * 4 / 2**30:.1f} GiB an image; at most "
            f"{MAX_LOGITS * 4 / 2**30:.0f} GiB"
        )


def check_digest(ckpt: dict[str, Any]) -> None:
    """The weights against the digest recorded at save (format 2); format 1 files have none to check."""
    recorded = ckpt.get("weights_sha256")
    if ckpt.get("format_version") == 1 and recorded is None:
        return
    if not isinstance(recorded, str) or recorded != weights_digest(ckpt["state_dict"]):
        raise ModelFileLies(
            "its weights are not the ones it recorded (the SHA-256 differs): the file was "
            "damaged or edited; train it again or restore it (dvc checkout)"
        )


def check_weight_shapes(spec: dict[str, Any], found: dict[str, Any], build: Any) -> None:
    """Build the spec's network on the meta device (no memory, whatever it claims) and compare every
    weight's name and shape with the file's; ModelFileLies names the first difference."""
    if not isinstance(found, dict) or not all(isinstance(v, torch.Tensor) for v in found.values()):
        raise ModelFileLies("its state_dict is not a mapping of names to tensors")
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in build(**spec).state_dict().items()}
    shapes = {k: tuple(v.shape) for k, v in found.items()}
    missing, unexpected = sorted(set(expected) - set(shapes)), sorted(set(shapes) - set(expected))
    reshaped = [k for k in sorted(set(expected) & set(shapes)) if expected[k] != shapes[k]]
    if missing or unexpected or reshaped:
        example = (
            f"{reshaped[0]}: {shapes[reshaped[0]]} in the file, {expected[reshaped[0]]} in the model"
            if reshaped
            else (missing or unexpected)[0]
        )
        raise ModelFileLies(
            f"the weights do not match the model spec {_short(spec)}: {len(missing)} missing, "
            f"{len(unexpected)} unexpected, {len(reshaped)} of another shape (e.g. {example})"
        )


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."

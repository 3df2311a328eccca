"""The model file: weights plus the spec needed to rebuild the model, loadable by plain PyTorch.

    from cocoseg.models import build_model
    ckpt = torch.load("models/unet/model.pt", weights_only=True)
    model = build_model(**ckpt["model"]); model.load_state_dict(ckpt["state_dict"])

It holds tensors and plain Python types only (no pickled classes, no paths, no timestamps), so
``weights_only=True`` loads it and the same training gives the same bytes. Format 2 adds the SHA-256 of
the weights (``weights_sha256``, see checkpoint_checks.py), checked on load; format 1 files, without it,
still load.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cocoseg.core.errors import UserError
from cocoseg.core.files import write_bytes
from cocoseg.models import build_model
from cocoseg.models import checkpoint_checks as checks
from cocoseg.models.checkpoint_checks import ModelFileLies, weights_digest

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)  # format 1: the same file without weights_sha256


def save_checkpoint(
    path: Path,
    state_dict: dict[str, torch.Tensor],
    model_spec: dict[str, Any],
    preprocessing: dict[str, Any],
    classes: list[str],
    metrics: dict[str, float],
) -> None:
    weights = {k: v.detach().cpu().clone() for k, v in state_dict.items()}
    payload = {
        "format_version": FORMAT_VERSION,
        "model": model_spec,  # arch, num_classes, encoder: build_model(**ckpt["model"])
        "preprocessing": preprocessing,  # image_size, mean, std, channel order
        "classes": classes,
        "metrics": metrics,
        "state_dict": weights,
        "weights_sha256": weights_digest(weights),  # checked on load: a damaged byte is refused
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    write_bytes(path, buf.getvalue())


class CheckpointError(UserError, ValueError):
    """A model file that is not a complete cocoseg model file; the message says what is wrong with it."""


REQUIRED = ("model", "preprocessing", "classes", "state_dict")


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """(model in eval mode, the checkpoint dict); FileNotFoundError or one-line CheckpointError otherwise."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: model file not found (did the train stage run?)")
    ckpt = _read(path, map_location)
    if not isinstance(ckpt, dict) or ckpt.get("format_version") not in READABLE_VERSIONS:
        if isinstance(ckpt, dict) and ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
            raise CheckpointError(
                f"{path}: a bare state_dict (weights without the model spec); expected a "
                "model.pt written by the train stage"
            )
        raise CheckpointError(
            f"{path}: not a cocoseg model file of format {' or '.join(map(str, READABLE_VERSIONS))}; "
            "expected a model.pt written by the train stage"
        )
    missing = [key for key in REQUIRED if key not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: incomplete cocoseg model file: no {', '.join(missing)}")
    try:  # every claim checked before the file decides what is allocated
        checks.check_spec(ckpt["model"])
        checks.check_preprocessing(ckpt["preprocessing"])
        checks.check_logits(ckpt["model"], ckpt["preprocessing"])
        checks.check_digest(ckpt)
        checks.check_weight_shapes(ckpt["model"], ckpt["state_dict"], build_model)
        checks.check_classes(ckpt["classes"], ckpt["model"])
    except ModelFileLies as err:
        raise CheckpointError(f"{path}: {err}") from None
    except (TypeError, ValueError, KeyError, UserError) as err:  # the meta build of an unbuildable spec
        raise CheckpointError(
            f"{path}: its model spec {ckpt['model']} cannot be built ({_first_line(err)})"
        ) from None
    # load_state_dict copies into the new model's CPU weights: move the model where its inputs will be
    return _build(path, ckpt).to(map_location).eval(), ckpt


def _read(path: Path, map_location: str | torch.device) -> Any:
    """torch.load with weights_only=True, each way it can fail told apart in one line."""
    with open(path, "rb") as f:
        head = f.read(4)
    if not head:
        raise CheckpointError(f"{path}: empty file; expected a model.pt written by the train stage")
    is_zip, is_pickle = head == b"PK\x03\x04", head[:1] == b"\x80"  # torch.save's formats: new, legacy
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:  # weights_only refuses classes, and bytes that are no pickle
        if "Weights only load failed" in str(err) and (is_zip or is_pickle):
            raise CheckpointError(
                f"{path}: holds pickled Python objects (a whole model?), which are not loaded "
                "for safety; expected a model.pt written by the train stage"
            ) from None
        raise CheckpointError(
            f"{path}: not a PyTorch file; expected a model.pt written by the train stage"
        ) from None
    except Exception as err:  # torch raises RuntimeError, EOFError, ... for a cut-off or damaged zip
        what = "truncated or damaged" if is_zip else "not a PyTorch file"
        raise CheckpointError(f"{path}: {what} ({_first_line(err)})") from None


def _build(path: Path, ckpt: dict[str, Any]) -> nn.Module:
    spec = ckpt["model"]
    try:
        model = build_model(**spec)
    except (TypeError, ValueError, KeyError, UserError) as err:
        raise CheckpointError(f"{path}: its model spec {spec} cannot be built ({_first_line(err)})") from None
    expected, found = model.state_dict(), ckpt["state_dict"]
    missing, unexpected = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
    reshaped = [k for k in sorted(set(expected) & set(found)) if expected[k].shape != found[k].shape]
    if missing or unexpected or reshaped:
        example = (
            f"{reshaped[0]}: {tuple(found[reshaped[0]].shape)} in the file, "
            f"{tuple(expected[reshaped[0]].shape)} in the model"
            if reshaped
            else (missing or unexpected)[0]
        )
        raise CheckpointError(
            f"{path}: the weights do not match the model spec {spec}: {len(missing)} missing, "
            f"{len(unexpected)} unexpected, {len(reshaped)} of another shape (e.g. {example})"
        )
    model.load_state_dict(found)
    return model


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0].split(". ")[0] if lines else type(err).__name__  # torch's advice after the first sentence

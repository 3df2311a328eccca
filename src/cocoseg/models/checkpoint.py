"""The model file: weights plus the spec needed to rebuild the model, loadable by plain PyTorch.

    from cocoseg.models import build_model
    ckpt = torch.load("models/unet/model.pt", weights_only=True)
    model = build_model(**ckpt["model"]); model.load_state_dict(ckpt["state_dict"])

It holds tensors and plain Python types only (no pickled classes, no paths, no timestamps), so
``weights_only=True`` loads it and the same training gives the same bytes.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cocoseg.core.files import write_bytes
from cocoseg.models import build_model

FORMAT_VERSION = 1


def save_checkpoint(path: Path, state_dict: dict[str, torch.Tensor], model_spec: dict[str, Any],
                    preprocessing: dict[str, Any], classes: list[str], metrics: dict[str, float]) -> None:
    payload = {
        "format_version": FORMAT_VERSION,
        "model": model_spec,  # arch, num_classes, encoder: build_model(**ckpt["model"])
        "preprocessing": preprocessing,  # image_size, mean, std, channel order
        "classes": classes,
        "metrics": metrics,
        "state_dict": {k: v.detach().cpu().clone() for k, v in state_dict.items()},
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    write_bytes(path, buf.getvalue())


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """(model in eval mode, the checkpoint dict). Raises FileNotFoundError / ValueError clearly."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: model file not found (did the train stage run?)")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises many types for a corrupt or foreign file
        raise ValueError(f"{path}: not a cocoseg model file ({err})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: not a cocoseg model file of format {FORMAT_VERSION}")
    model = build_model(**ckpt["model"])
    model.load_state_dict(ckpt["state_dict"])  # copies into the new model's CPU weights ...
    return model.to(map_location).eval(), ckpt  # ... so move the model where its inputs will be

"""Model registry: every architecture is built by its short name from one mapping."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from cocoseg.models.fastscnn import FastSCNN


def _build_unet(num_classes: int, encoder: str, encoder_weights: str | None) -> nn.Module:
    import segmentation_models_pytorch as smp

    return smp.Unet(encoder_name=encoder, encoder_weights=encoder_weights, classes=num_classes)


def _build_deeplabv3(num_classes: int, encoder: str, encoder_weights: str | None) -> nn.Module:
    import segmentation_models_pytorch as smp

    return smp.DeepLabV3(encoder_name=encoder, encoder_weights=encoder_weights, classes=num_classes)


def _build_fastscnn(num_classes: int, encoder: str, encoder_weights: str | None) -> nn.Module:
    # Fast-SCNN has no separate encoder and no published weights: trained from scratch by design.
    return FastSCNN(num_classes=num_classes)


ARCHITECTURES: dict[str, Callable[[int, str, str | None], nn.Module]] = {
    "unet": _build_unet,
    "deeplabv3": _build_deeplabv3,
    "fastscnn": _build_fastscnn,
}


def build_model(arch: str, num_classes: int, encoder: str = "resnet18",
                encoder_weights: str | None = None) -> nn.Module:
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; valid names: {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[arch](num_classes, encoder, encoder_weights)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def model_spec(arch: str, num_classes: int, encoder: str, **extra: Any) -> dict[str, Any]:
    """What a checkpoint stores to rebuild its model alone (plain types only: weights_only-safe)."""
    return {"arch": arch, "num_classes": num_classes, "encoder": encoder, **extra}

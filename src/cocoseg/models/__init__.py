"""The model registry: every architecture is built by its short name from one mapping.

Importing this package is cheap (torch and segmentation-models-pytorch load when a model is built), so
a stage can check ``models.<name>.arch`` against the registry before any heavy import.

Adding a model: every segmentation-models-pytorch architecture is already here by its smp name (a
params.yaml entry with ``arch: fpn`` is all it takes); another network needs one entry in
``ARCHITECTURES`` with a builder that takes ``(num_classes, encoder, encoder_weights, **options)``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cocoseg.core.params import ConfigError, Params

if TYPE_CHECKING:
    from torch import nn

# smp's own names (segmentation_models_pytorch.MODEL_ARCHITECTURES_MAPPING; a test keeps them in step)
SMP_ARCHITECTURES = ("unet", "unetplusplus", "manet", "linknet", "fpn", "pspnet", "deeplabv3",
                     "deeplabv3plus", "pan", "upernet", "segformer", "dpt")


@dataclass(frozen=True)
class Architecture:
    build: Callable[..., nn.Module]  # (num_classes, encoder, encoder_weights, **options) -> logits model
    uses_encoder: bool  # whether ``encoder`` and ``encoder_weights`` mean anything to it


def _smp_builder(arch: str) -> Callable[..., nn.Module]:
    def build(num_classes: int, encoder: str, encoder_weights: str | None, **options: Any) -> nn.Module:
        import segmentation_models_pytorch as smp

        # smp's constructors take **kwargs and ignore what they do not know: refuse a misspelt option
        known = inspect.signature(smp.MODEL_ARCHITECTURES_MAPPING[arch]).parameters
        unknown = sorted(set(options) - {n for n, p in known.items() if p.kind is not p.VAR_KEYWORD})
        if unknown:
            raise TypeError(f"unknown option {unknown[0]!r}; {arch} takes {sorted(set(known) - {'kwargs'})}")
        return smp.create_model(arch, encoder_name=encoder, encoder_weights=encoder_weights,
                                classes=num_classes, **options)

    return build


def _build_fastscnn(num_classes: int, encoder: str, encoder_weights: str | None, **options: Any) -> nn.Module:
    # Fast-SCNN has no separate encoder and no published weights: trained from scratch by design.
    from cocoseg.models.fastscnn import FastSCNN

    return FastSCNN(num_classes=num_classes, **options)


ARCHITECTURES: dict[str, Architecture] = {
    **{arch: Architecture(_smp_builder(arch), uses_encoder=True) for arch in SMP_ARCHITECTURES},
    "fastscnn": Architecture(_build_fastscnn, uses_encoder=False),
}


def check_arch(arch: str, key: str = "arch") -> Architecture:
    """The registry entry for ``arch``; a ConfigError naming ``key`` and every valid name otherwise."""
    if arch not in ARCHITECTURES:
        raise ConfigError(f"{key}: unknown architecture {arch!r}; valid names: {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[arch]


def check_model(params: Params, name: str) -> None:
    """A train or evaluate stage's checks of ``models.<name>`` beyond its types."""
    check_arch(params.model(name).arch, f"models.{name}.arch")


def build_model(arch: str, num_classes: int, encoder: str = "resnet18", encoder_weights: str | None = None,
                **options: Any) -> nn.Module:
    builder = check_arch(arch).build
    try:
        return builder(num_classes, encoder, encoder_weights, **options)
    except (TypeError, ValueError, KeyError) as err:  # an unknown option or encoder, a bad option value
        raise ConfigError(f"{arch} (encoder {encoder!r}, options {options}) cannot be built: {err}") from None


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def model_spec(arch: str, num_classes: int, encoder: str, **options: Any) -> dict[str, Any]:
    """What a checkpoint stores to rebuild its model alone (plain types only: weights_only-safe).

    ``build_model(**spec)`` rebuilds it; options beyond the three keys go to the architecture's builder.
    """
    return {"arch": arch, "num_classes": num_classes, "encoder": encoder, **options}

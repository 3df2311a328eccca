"""The model registry: every architecture is built by its short name from one mapping.

Importing this package is cheap (torch and segmentation-models-pytorch load when a model is built), so
a stage can check ``models.<name>.arch`` against the registry before any heavy import.

Adding a model: every segmentation-models-pytorch architecture is already here by its smp name (a
params.yaml entry with ``arch: fpn`` is all it takes); another network needs one entry in
``ARCHITECTURES`` with a builder that takes ``(num_classes, encoder, encoder_weights, **options)``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cocoseg.core.params import ConfigError, Params

if TYPE_CHECKING:
    from torch import nn

# smp's own names (segmentation_models_pytorch.MODEL_ARCHITECTURES_MAPPING; a test keeps them in step)
SMP_ARCHITECTURES = (
    "unet",
    "unetplusplus",
    "manet",
    "linknet",
    "fpn",
    "pspnet",
    "deeplabv3",
    "deeplabv3plus",
    "pan",
    "upernet",
    "segformer",
    "dpt",
)


# Arguments cocoseg gives every network itself: an option that sets one would break the contract the loss,
# the metrics and the model file rely on (3-channel RGB in, one map of logits per class out).
RESERVED_OPTIONS = {
    "in_channels": "the network reads 3-channel RGB images",
    "classes": "the class count comes from the masks stage's labels.json",
    "num_classes": "the class count comes from the masks stage's labels.json",
    "encoder_name": "set it as models.<name>.encoder",
    "encoder_weights": "set it as models.<name>.encoder_weights",
    "activation": "the network must give logits: the loss and the argmax take them",
    "aux_params": "the network must give one tensor of logits, not a (mask, label) pair",
}


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
        return smp.create_model(
            arch, encoder_name=encoder, encoder_weights=encoder_weights, classes=num_classes, **options
        )

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
    """A train or evaluate stage's checks of ``--model <name>`` and ``models.<name>`` beyond their types.

    Runs in milliseconds (no torch, no smp), before anything is imported, read or deleted.
    """
    check_model_name(name)
    if not params.models:
        raise ConfigError("models: no model is defined; expected at least one entry, e.g. unet: {arch: unet}")
    model = params.model(name)
    if check_arch(model.arch, f"models.{name}.arch").uses_encoder:
        check_encoder(model.encoder, model.encoder_weights, f"models.{name}")
    check_options(model.options, f"models.{name}.options")


def check_options(options: Mapping[str, Any], key: str) -> None:
    """Refuse an option that cocoseg sets itself (``RESERVED_OPTIONS``), before anything is built."""
    for option in options:
        if option in RESERVED_OPTIONS:
            raise ConfigError(f"{key}.{option}: not allowed; {RESERVED_OPTIONS[option]}")


def check_forward(model: nn.Module, num_classes: int, image_size: tuple[int, ...], key: str) -> None:
    """One forward pass of a blank RGB image in eval mode (no gradient, no statistics or RNG touched): the
    network must give (1, num_classes, H, W) logits. An option that breaks this (a decoder that stops
    short of the input size, an encoder depth its decoder does not take) fails here with a line, not at
    the first training step with a traceback."""
    import torch

    height, width = image_size
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(1, 3, height, width))
    except (RuntimeError, ValueError, TypeError, IndexError) as err:
        raise ConfigError(
            f"{key}: the network fails on a {height}x{width} RGB image "
            f"({str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__})"
        ) from None
    finally:
        model.train(was_training)
    shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
    if shape != (1, num_classes, height, width):
        raise ConfigError(
            f"{key}: the network gives {shape} for a {height}x{width} RGB image; expected "
            f"logits of shape {(1, num_classes, height, width)}"
        )


def check_model_name(name: str) -> None:
    """A model name becomes paths (models/<name>, results/train/<name>): '../../data' must never get that far."""
    if not name.isidentifier():
        raise ConfigError(
            f"--model {name!r}: not allowed; expected a plain model name (letters, digits, _), "
            "a key of the models section"
        )


def check_encoder(encoder: str, weights: str | None, key: str) -> None:
    """``encoder`` and ``encoder_weights`` against segmentation-models-pytorch's encoders (``tu-*``: timm's)."""
    from cocoseg.models.smp_encoders import SMP_ENCODERS

    if encoder.startswith("tu-"):  # any timm model; timm itself checks the name when the model is built
        allowed: tuple[str, ...] = ("imagenet",)
    elif encoder not in SMP_ENCODERS:
        raise ConfigError(
            f"{key}.encoder: {encoder!r} is not allowed; expected a segmentation-models-pytorch "
            f"encoder ({_closest(encoder, SMP_ENCODERS)}all: {sorted(SMP_ENCODERS)}) or tu-<timm name>"
        )
    else:
        allowed = SMP_ENCODERS[encoder]
    if weights is not None and weights not in allowed:
        raise ConfigError(
            f"{key}.encoder_weights: {weights!r} is not allowed for encoder {encoder!r}; "
            f"expected null (from scratch) or one of {list(allowed)}"
        )


def _closest(name: str, names: Iterable[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, list(names), n=3)
    return f"did you mean {' or '.join(close)}? " if close else ""


def build_model(
    arch: str, num_classes: int, encoder: str = "resnet18", encoder_weights: str | None = None, **options: Any
) -> nn.Module:
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

"""params.yaml -> typed, frozen dataclasses.

One dataclass per params.yaml section. Loading is strict: an unknown key, or a value of
the wrong type or range raises ``ConfigError`` with the dotted key and what is allowed, so a typo in
``dvc exp run -S`` fails before any work is done instead of being silently ignored.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from cocoseg.core import limits
from cocoseg.core.errors import UserError
from cocoseg.core.layout import COCO_MD5, SPLITS, split_name_problem
from cocoseg.core.splits import PARTS
from cocoseg.core.yaml_file import YamlRefused, load_yaml


class ConfigError(UserError, ValueError):
    """A params.yaml value is unknown, missing or invalid; the message names the key."""


def _check(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {value!r} is not allowed; expected {allowed}")


# --- sections -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BaseConfig:
    seed: int = 42  # one seed for sampling, splitting, previews and training

    def __post_init__(self) -> None:  # numpy and Lightning take unsigned 32-bit seeds
        _check(0 <= self.seed < 2**32, "base.seed", self.seed, "an integer from 0 to 2**32 - 1")


@dataclass(frozen=True)
class SampleConfig:
    num_images: int = 64  # small enough for a 10-minute CPU run, large enough to learn from
    min_size: int = 112  # image sides are drawn from [min_size, max_size] so resizing is exercised
    max_size: int = 160

    def __post_init__(self) -> None:
        _check(
            16 <= self.num_images <= limits.MAX_SAMPLE_IMAGES,
            "data.sample.num_images",
            self.num_images,
            f"an integer from 16 to {limits.MAX_SAMPLE_IMAGES} (more: data.source coco2017)",
        )
        # random shapes have radius >= 12 and fit in a quarter of the shorter side: 48 px at least
        _check(
            48 <= self.min_size <= self.max_size,
            "data.sample.min_size",
            self.min_size,
            "48 <= min_size <= max_size",
        )
        _check(
            self.max_size <= limits.MAX_SAMPLE_SIDE,
            "data.sample.max_size",
            self.max_size,
            f"an integer up to {limits.MAX_SAMPLE_SIDE} (pixels a side)",
        )


@dataclass(frozen=True)
class CocoConfig:
    base_url: str = "http://images.cocodataset.org"  # any mirror with the official layout works
    max_images: int | None = None  # None: whole archives; N: subset mode, N images fetched one by one
    subset_categories_only: bool = True  # subset mode picks only images holding a selected category
    workers: int = 16  # parallel connections in subset mode
    verify_checksums: bool = True  # turning the MD5 check off must be explicit
    stall_seconds: float = 60.0  # a download without progress for this long (retries included) is given up
    md5: Mapping[str, str] = field(default_factory=lambda: dict(COCO_MD5))

    def __post_init__(self) -> None:
        _check(
            self.base_url.startswith(("http://", "https://", "file://")),
            "data.coco.base_url",
            self.base_url,
            "an http(s):// or file:// URL",
        )
        _check(
            self.max_images is None or self.max_images > 0,
            "data.coco.max_images",
            self.max_images,
            "null (whole archives) or a positive integer",
        )
        _check(
            1 <= self.workers <= limits.MAX_DOWNLOAD_WORKERS,
            "data.coco.workers",
            self.workers,
            f"an integer from 1 to {limits.MAX_DOWNLOAD_WORKERS}",
        )
        _check(
            1 <= self.stall_seconds <= 3600,
            "data.coco.stall_seconds",
            self.stall_seconds,
            "a number of seconds from 1 to 3600",
        )


@dataclass(frozen=True)
class LocalSplitConfig:
    """One split of the user's own export: its COCO JSON and the folder its file names are relative to.

    Both are required: dvc.yaml's import stage depends on ``${item.images}``, and DVC's interpolation has
    no defaults (for a Roboflow-style export, ``images`` is the JSON's own folder: write it)."""

    annotations: str | None = None  # path relative to the repository, or absolute
    images: str | None = None


@dataclass(frozen=True)
class LocalConfig:
    splits: Mapping[str, LocalSplitConfig] = field(default_factory=dict)  # split name -> its files


@dataclass(frozen=True)
class ArchiveConfig:
    url: str | None = None  # http(s)://, file:// or a local path of a zip or tar(.gz) export
    sha256: str | None = (
        None  # the archive's SHA-256 (sha256sum FILE); required unless verify_checksum is false
    )
    verify_checksum: bool = True  # turning the check off must be explicit

    def __post_init__(self) -> None:
        _check(
            self.url is None
            or (
                bool(self.url)
                and ("://" not in self.url or self.url.startswith(("http://", "https://", "file://")))
            ),
            "data.archive.url",
            self.url,
            "null, an http(s):// or file:// URL, or a local path",
        )
        _check(
            self.sha256 is None or re.fullmatch(r"[0-9a-fA-F]{64}", self.sha256) is not None,
            "data.archive.sha256",
            self.sha256,
            "null or 64 hexadecimal digits (sha256sum FILE)",
        )


SOURCES = ("sample", "coco2017", "local", "archive")


@dataclass(frozen=True)
class DataConfig:
    source: Literal["sample", "coco2017", "local", "archive"] = "sample"
    splits: tuple[str, ...] = ("val2017",)  # the splits turned into masks, by the source's own names
    sample: SampleConfig = SampleConfig()
    coco: CocoConfig = CocoConfig()
    local: LocalConfig = LocalConfig()
    archive: ArchiveConfig = ArchiveConfig()

    def __post_init__(self) -> None:
        _check(len(self.splits) > 0, "data.splits", self.splits, "a non-empty list")
        _check(
            len(set(self.splits)) == len(self.splits),
            "data.splits",
            list(self.splits),
            "a list without repeats",
        )
        for split in self.splits:
            problem = split_name_problem(split)
            _check(problem is None, "data.splits", split, f"a split name (this one {problem})")
        self._check_local_splits()
        if self.source == "sample":
            _check(
                self.splits == ("val2017",),
                "data.splits",
                list(self.splits),
                "['val2017'] with data.source: sample (the sample has one split)",
            )
        elif self.source == "coco2017":
            for split in self.splits:
                _check(
                    split in SPLITS,
                    "data.splits",
                    split,
                    f"a list drawn from {list(SPLITS)} with data.source: coco2017",
                )
        elif self.source == "local":
            self._check_local_source()
        elif self.source == "archive":
            self._check_archive_source()

    def _check_local_splits(self) -> None:
        """Every entry of data.local.splits, whatever the source: dvc.yaml makes an import stage of each."""
        for name, split in self.local.splits.items():
            key = f"data.local.splits.{name}"
            problem = split_name_problem(name)
            _check(problem is None, key, name, f"a split name (this one {problem})")
            for part in ("annotations", "images"):
                value = getattr(split, part)
                _check(
                    bool(value),
                    f"{key}.{part}",
                    value,
                    "a path, relative to the repository or absolute"
                    + (
                        " (required: dvc.yaml's import stage depends on it, and DVC has no default; for a "
                        "JSON beside its images write the JSON's own folder)"
                        if part == "images"
                        else ""
                    ),
                )

    def _check_local_source(self) -> None:
        have = sorted(self.local.splits)
        _check(
            bool(have),
            "data.local.splits",
            {},
            "one entry per split with data.source: local, "
            "such as train: {annotations: path/to/train.json, images: path/to/train}",
        )
        for split in self.splits:
            _check(split in self.local.splits, "data.splits", split, f"a split of data.local.splits: {have}")

    def _check_archive_source(self) -> None:
        _check(
            self.archive.url is not None,
            "data.archive.url",
            None,
            "the URL or path of the export's zip or tar.gz with data.source: archive",
        )
        _check(
            self.archive.sha256 is not None or not self.archive.verify_checksum,
            "data.archive.sha256",
            None,
            "the archive's SHA-256 (64 hex digits: sha256sum FILE), or data.archive.verify_checksum: false "
            "explicitly",
        )


@dataclass(frozen=True)
class MasksConfig:
    # "all" (every category some kept annotation uses), "voc", or a list of category names and
    # "supercategory:<name>" entries
    categories: str | tuple[str, ...] = "all"
    overlap: str = "priority_area"  # a name of cocoseg.masks.paint.OVERLAP_POLICIES (checked there)
    priority: tuple[str, ...] = ()  # highest first; unlisted classes share the lowest priority
    crowd: Literal["void", "background"] = "void"  # crowd pixels: ignored (255) or background (0)
    keep_empty_images: bool = False  # images without kept annotations: skip, or keep all-background
    # auto: by the splits' names (train/valid/test, train2017/val2017, ...), else pooled; or a mapping
    # such as {train: [train], val: [valid], test: [test]}
    split: Literal["auto", "coco", "pooled"] | Mapping[str, tuple[str, ...] | str] = "auto"
    val_fraction: float = 0.2  # the pooled split's seeded val share
    preview: int = 4  # how many seeded random images get a preview panel
    workers: int = 0  # processes for the masks stage; 0 = one per CPU core
    # Pixel budget per image, checked from the header before decoding: 64 MP covers every COCO image
    # (at most 640x640) and 8K photos, and keeps a worker's masks under ~200 MB.
    max_pixels: int = 64_000_000

    def __post_init__(self) -> None:
        if isinstance(self.categories, str):
            _check(
                self.categories in ("all", "voc"),
                "masks.categories",
                self.categories,
                "'all', 'voc' or a list of COCO category names",
            )
        else:
            _check(
                len(self.categories) > 0,
                "masks.categories",
                list(self.categories),
                "'all', 'voc' or a non-empty list of COCO category names",
            )
        _check(
            0.0 < self.val_fraction < 1.0,
            "masks.val_fraction",
            self.val_fraction,
            "a number strictly between 0 and 1",
        )
        _check(self.preview >= 0, "masks.preview", self.preview, "an integer >= 0")
        _check(self.workers >= 0, "masks.workers", self.workers, "an integer >= 0 (0 = all cores)")
        _check(self.max_pixels >= 1, "masks.max_pixels", self.max_pixels, "a positive integer")
        if isinstance(self.split, Mapping):  # a single name stands for a list of one
            split = {
                part: (names,) if isinstance(names, str) else tuple(names)
                for part, names in self.split.items()
            }
            object.__setattr__(self, "split", split)
            _check_split_mapping(split)


def _check_split_mapping(split: Mapping[str, tuple[str, ...]]) -> None:
    """``masks.split`` as a mapping: train and val (test optional), each a non-empty list, no split twice."""
    for part, names in split.items():
        _check(part in PARTS, "masks.split", part, f"a mapping with keys from {list(PARTS)}")
        _check(len(names) > 0, f"masks.split.{part}", list(names), "a non-empty list of split names")
    for part in ("train", "val"):
        _check(
            part in split,
            "masks.split",
            {k: list(v) for k, v in split.items()},
            f"a mapping with a {part!r} key",
        )
    seen: dict[str, str] = {}
    for part, names in split.items():
        for name in names:
            _check(
                seen.setdefault(name, part) == part,
                f"masks.split.{part}",
                name,
                f"a split of no other part (it is in {seen[name]!r} too)",
            )


@dataclass(frozen=True)
class TrainConfig:
    """Settings shared by every model; a model's own section may override lr, epochs, batch_size."""

    epochs: int = 12
    batch_size: int = 8
    lr: float = 0.002
    weight_decay: float = 0.0001
    image_size: tuple[int, ...] = (128, 128)  # (height, width) the images are resized to
    dice_weight: float = 0.5  # loss = cross-entropy + dice_weight * Dice; 0 turns Dice off
    hflip: bool = True  # train-split augmentation: random horizontal flip ...
    scale: tuple[float, ...] = (0.75, 1.25)  # ... and a random rescale then crop back to image_size
    accelerator: str = "auto"  # auto | cpu | gpu | cuda | mps | tpu (Lightning's names, checked by train)
    devices: int | str | tuple[int, ...] = "auto"  # e.g. 1, 4, [0] (the seed's --gpu 0), "auto"
    strategy: str = "auto"  # auto | ddp | fsdp | ... (Lightning's strategies)
    num_nodes: int = 1
    precision: str = "auto"  # auto = bf16-mixed on CUDA, 32-true elsewhere; or any Lightning value
    workers: int | Literal["auto"] = "auto"  # DataLoader worker processes; auto = one per usable core
    deterministic: bool = True  # CPU: the same bytes on any x86-64 CPU with AVX2; CUDA: warn-only (README)
    threads: int = 2  # CPU threads of the training process when deterministic (they change the bits)
    compile: bool = False  # torch.compile the network (minutes of compiling before the first step)

    def __post_init__(self) -> None:
        for key in ("epochs", "batch_size", "num_nodes"):
            _check(getattr(self, key) >= 1, f"train.{key}", getattr(self, key), "an integer >= 1")
        _check(0 < self.lr < math.inf, "train.lr", self.lr, "a positive number")
        _check(0 <= self.weight_decay < math.inf, "train.weight_decay", self.weight_decay, "a number >= 0")
        _check(
            len(self.image_size) == 2
            and 32 <= min(self.image_size) <= max(self.image_size) <= limits.MAX_IMAGE_SIDE,
            "train.image_size",
            list(self.image_size),
            f"[height, width], each from 32 to {limits.MAX_IMAGE_SIDE}",
        )
        _check(
            len(self.scale) == 2 and 0 < self.scale[0] <= self.scale[1],
            "train.scale",
            list(self.scale),
            "[min, max] with 0 < min <= max",
        )
        _check(self.dice_weight >= 0, "train.dice_weight", self.dice_weight, "a number >= 0")
        _check(self.threads >= 1, "train.threads", self.threads, "an integer >= 1")
        _check(
            self.workers == "auto" or self.workers >= 0,
            "train.workers",
            self.workers,
            '"auto" or an integer >= 0',
        )


@dataclass(frozen=True)
class ModelConfig:
    arch: str = "unet"  # a name of the model registry, cocoseg.models.ARCHITECTURES (checked by train)
    encoder: str = "resnet18"  # segmentation-models-pytorch encoder; unused by fastscnn
    encoder_weights: str | None = None  # None trains from scratch, offline; "imagenet" needs a network
    lr: float | None = None  # None: use train.lr
    epochs: int | None = None  # None: use train.epochs
    batch_size: int | None = None  # None: use train.batch_size
    compile: bool | None = None  # None: use train.compile (on a GPU it helps unet, not fastscnn: README)
    options: Mapping[str, Any] = field(default_factory=dict)  # extra arguments of the architecture


@dataclass(frozen=True)
class EvaluateConfig:
    overlays: int = 4  # prediction overlays written for the first N val images
    speed_batches: int = 10  # forward passes timed for images per second (after a warm-up pass)
    batch_size: int = 8  # val images per forward pass
    workers: int = 2  # DataLoader worker processes reading the val images
    # nearest: argmax at the model's size, class ids upsampled (12-15 ms an image at 81 classes on one
    # core); exact: argmax of the bilinearly upsampled logits, the protocol of published results (40-70 ms)
    upsample: str = "nearest"
    deterministic: bool = True  # the same metrics on any x86-64 CPU with AVX2 (core/arithmetic.py)
    threads: int = 2  # CPU threads of the scoring process when deterministic

    def __post_init__(self) -> None:
        _check(self.upsample in ("exact", "nearest"), "evaluate.upsample", self.upsample, "exact or nearest")
        _check(self.overlays >= 0, "evaluate.overlays", self.overlays, "an integer >= 0")
        _check(
            1 <= self.speed_batches <= limits.MAX_SPEED_BATCHES,
            "evaluate.speed_batches",
            self.speed_batches,
            f"an integer from 1 to {limits.MAX_SPEED_BATCHES}",
        )
        _check(self.batch_size >= 1, "evaluate.batch_size", self.batch_size, "an integer >= 1")
        _check(self.workers >= 0, "evaluate.workers", self.workers, "an integer >= 0")
        _check(self.threads >= 1, "evaluate.threads", self.threads, "an integer >= 1")


# --- loading --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Params:
    base: BaseConfig = BaseConfig()
    data: DataConfig = DataConfig()
    masks: MasksConfig = MasksConfig()
    train: TrainConfig = TrainConfig()
    models: Mapping[str, ModelConfig] = field(default_factory=dict)  # name -> model; one DVC stage each
    evaluate: EvaluateConfig = EvaluateConfig()

    def __post_init__(self) -> None:
        _check(
            self.masks.split != "coco" or set(self.data.splits) == {"train2017", "val2017"},
            "masks.split",
            self.masks.split,
            "auto or pooled unless data.splits holds train2017 and val2017",
        )
        if isinstance(self.masks.split, Mapping):  # it names exactly the splits data.splits builds
            named = [name for names in self.masks.split.values() for name in names]
            for name in named:
                _check(
                    name in self.data.splits,
                    "masks.split",
                    name,
                    f"a split of data.splits {list(self.data.splits)}",
                )
            for name in self.data.splits:
                _check(
                    name in named,
                    "masks.split",
                    {k: list(v) for k, v in self.masks.split.items()},
                    f"a mapping that names every split of data.splits; {name!r} is in no part",
                )
        for name, model in self.models.items():
            _check(name.isidentifier(), f"models.{name}", name, "a model name made of letters, digits and _")
            for key in ("lr", "epochs", "batch_size"):
                value = getattr(model, key)
                _check(
                    value is None or 0 < value < math.inf,
                    f"models.{name}.{key}",
                    value,
                    f"null (inherit train.{key}) or a positive number",
                )

    def model(self, name: str) -> ModelConfig:
        if name not in self.models:
            raise ConfigError(f"models.{name}: no such model; defined models: {sorted(self.models)}")
        return self.models[name]

    def model_settings(self, name: str) -> tuple[float, int, int]:
        """(lr, epochs, batch_size) of one model: its own value where set, else the train section's."""
        model = self.model(name)

        def pick(own: Any, shared: Any) -> Any:
            return shared if own is None else own

        return (
            pick(model.lr, self.train.lr),
            pick(model.epochs, self.train.epochs),
            pick(model.batch_size, self.train.batch_size),
        )

    def model_compile(self, name: str) -> bool:
        """Whether one model's network runs through torch.compile: its own setting, else train.compile."""
        own = self.model(name).compile
        return self.train.compile if own is None else own


_SECTIONS = {
    "base": BaseConfig,
    "data": DataConfig,
    "masks": MasksConfig,
    "train": TrainConfig,
    "models": Mapping[str, ModelConfig],
    "evaluate": EvaluateConfig,
}


def load_params(path: str | Path = "params.yaml", *checks: Callable[[Params], object]) -> Params:
    """Read and validate params.yaml; ``checks`` are the stage's own (names against its registries).

    Every error message starts with the file's path.
    """
    path = Path(path)
    try:
        raw = load_yaml(path)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(err).split())}") from None
    except (YamlRefused, OSError) as err:  # too big, an alias bomb, not UTF-8, unreadable
        raise ConfigError(f"{path}: {err}") from None
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    try:
        params = parse_params(raw)
        for check in checks:
            check(params)
        return params
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def parse_params(raw: Mapping[str, Any]) -> Params:
    unknown = sorted(set(raw) - set(_SECTIONS))
    if unknown:
        raise ConfigError(f"unknown section {unknown[0]!r}; allowed sections: {sorted(_SECTIONS)}")
    # An absent or empty section (``train:``) takes the defaults; anything else must be a mapping:
    # ``train: []`` or ``train: 0`` is an error, never all defaults in disguise.
    return Params(
        **{
            name: convert(tp, {} if raw.get(name) is None else raw[name], name)
            for name, tp in _SECTIONS.items()
        }
    )


def convert(tp: Any, value: Any, key: str) -> Any:
    """Convert a YAML value to type ``tp``, naming ``key`` in any error."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _convert_dataclass(typing.cast(type, tp), value, key)
    if tp is Any:
        return value
    if origin is Literal:
        allowed = typing.get_args(tp)
        _check(value in allowed, key, value, f"one of {list(allowed)}")
        return value
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(tp):
            if option is type(None):
                if value is None:
                    return None
                continue
            try:
                return convert(option, value, key)
            except ConfigError:
                continue  # try the next option; the message below names them all
        raise ConfigError(f"{key}: {value!r} is not allowed; expected {_describe(tp)}")
    if origin is tuple:
        _check(isinstance(value, (list, tuple)), key, value, f"a list ({_describe(tp)})")
        item_type = typing.get_args(tp)[0]
        return tuple(convert(item_type, v, f"{key}[{i}]") for i, v in enumerate(value))
    if origin in (Mapping, dict):
        _check(isinstance(value, dict), key, value, "a mapping")
        _key_type, value_type = typing.get_args(tp)
        return {str(k): convert(value_type, v, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        _check(isinstance(value, bool), key, value, "true or false")
        return value
    if tp is int:
        _check(isinstance(value, int) and not isinstance(value, bool), key, value, "an integer")
        return value
    if tp is float:
        _check(isinstance(value, (int, float)) and not isinstance(value, bool), key, value, "a number")
        return float(value)
    if tp is str:
        _check(isinstance(value, str), key, value, "a string")
        return value
    raise TypeError(f"config type {tp!r} of {key} is not supported")  # a bug in this module, not user input


def _convert_dataclass(cls: type, value: Any, key: str) -> Any:
    if dataclasses.is_dataclass(value) and isinstance(value, cls):
        return value
    _check(isinstance(value, dict), key, value, "a mapping")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(value) - set(fields))
    if unknown:
        raise ConfigError(f"unknown key {_join(key, unknown[0])!r}; allowed keys: {sorted(fields)}")
    kwargs = {name: convert(hints[name], value[name], _join(key, name)) for name in fields if name in value}
    return cls(**kwargs)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return f"one of {list(typing.get_args(tp))}"
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if t is type(None) else _describe(t) for t in typing.get_args(tp))
    if origin is tuple:
        return f"list of {_describe(typing.get_args(tp)[0])}"
    if origin in (Mapping, dict):
        return "a mapping"
    return {bool: "true/false", int: "integer", float: "number", str: "string"}.get(tp, str(tp))

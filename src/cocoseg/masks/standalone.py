"""``cocoseg prepare --ann FILE --img_dir DIR --out_dir DIR``: masks of any COCO-format file, without DVC.

The seed's prepare_dataset.py, on the masks stage's own code (``build_from_file``): the same decoding,
painting, checks and report, written flat into the output folder (semantic/, instance/, instances.jsonl,
labels.json, report.json, preview/). The masks options come as ``masks.<key>=<value>`` settings, checked
exactly as params.yaml's masks section is.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import yaml

from cocoseg.core.errors import UserError
from cocoseg.core.layout import LABELS_FILE, REPORT_FILE
from cocoseg.core.params import ConfigError, MasksConfig, convert
from cocoseg.masks.build import build_from_file
from cocoseg.masks.paint import check_overlap
from cocoseg.masks.report import summary

log = logging.getLogger(__name__)

PIPELINE_ONLY = ("split", "val_fraction")  # they shape split.json, which only the pipeline writes


class PrepareError(UserError):
    """A --img_dir or --out_dir that cannot be used (missing, or holding what replacing it would lose)."""


def parse_settings(settings: list[str], values: dict[str, Any] | None = None) -> MasksConfig:
    """``values`` (key -> value, from flags) updated by ``settings`` (``["masks.overlap=void",
    "masks.categories=[cat,dog]", ...]``, YAML values as in params.yaml and DVC's ``-S``) -> a checked
    MasksConfig; unknown keys and bad values fail with the key named."""
    values = dict(values or {})
    for setting in settings:
        key, eq, text = setting.partition("=")
        if not eq or not key.startswith("masks.") or "." in key[len("masks.") :]:
            raise ConfigError(
                f"-S {setting!r}: expected masks.<key>=<value> (the masks options of params.yaml)"
            )
        try:
            values[key[len("masks.") :]] = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ConfigError(f"-S {setting!r}: the value is not valid YAML ({err})") from None
    for key in PIPELINE_ONLY:
        if key in values:
            raise ConfigError(f"masks.{key}: has no effect with --ann, which writes no split.json")
    cfg = convert(MasksConfig, values, "masks")
    check_overlap(cfg.overlap)
    return cfg


def check_out_dir(out_dir: Path, inputs: list[Path]) -> None:
    """The output folder is replaced whole when the masks are done: refuse one that holds anything but a
    previous run's outputs, or that holds the inputs."""
    out = out_dir.resolve()
    for path in inputs:
        if path.resolve() == out or out in path.resolve().parents:
            raise PrepareError(
                f"--out_dir {out_dir}: holds the input {path}; it is replaced whole, so "
                f"choose a folder of its own"
            )
    if (
        out_dir.is_dir()
        and any(out_dir.iterdir())
        and not (out_dir / REPORT_FILE).is_file()
        and not (out_dir / LABELS_FILE).is_file()
    ):
        raise PrepareError(
            f"--out_dir {out_dir}: exists and holds files that no earlier `cocoseg prepare "
            f"--ann` wrote; it would be replaced whole, so choose a new or empty folder"
        )
    if out_dir.exists() and not out_dir.is_dir():
        raise PrepareError(f"--out_dir {out_dir}: is a file, not a folder")


def prepare_from_file(
    annotations: Path, image_dir: Path, out_dir: Path, cfg: MasksConfig, seed: int
) -> dict[str, Any]:
    """Masks of ``annotations`` (images under ``image_dir``) into ``out_dir``; returns the report."""
    if not image_dir.is_dir():
        raise PrepareError(f"--img_dir {image_dir}: no such folder")
    check_out_dir(out_dir, [annotations, image_dir])
    report = build_from_file(annotations, image_dir, out_dir, cfg, seed)
    log.info("%s; see %s", summary(report), out_dir / REPORT_FILE)
    return report

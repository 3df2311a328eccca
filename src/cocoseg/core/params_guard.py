"""A stage fails rather than publish outputs made with parameters that params.yaml no longer holds.

DVC records a stage's parameters in dvc.lock as params.yaml holds them when the stage ends, not as the
stage read them. A ``dvc exp run -S train.epochs=2`` started while ``dvc repro`` trains is refused by
DVC's lock, but only after it has rewritten params.yaml: the running stage would then finish, and
dvc.lock would record ``epochs: 2`` for a model trained for 12, which ``dvc status`` calls up to date.
So each stage script registers the parameters it read (the keys dvc.yaml gives it, ``STAGE_PARAMS``) and
before any output is renamed into place (``core.files.before_publish``), params.yaml is read again: if one
of those values changed, the stage stops with one line, its outputs unpublished and the previous ones
in place, and DVC, seeing it fail, writes no lock for it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cocoseg.core.errors import UserError
from cocoseg.core.files import before_publish
from cocoseg.core.yaml_file import load_yaml

# Each stage's params in dvc.yaml ({model}: the model of a train@ or evaluate@ stage); a test keeps them equal.
STAGE_PARAMS = {
    "check": ("base", "data", "masks", "train", "models", "evaluate"),
    "download": (
        "base",
        "data.source",
        "data.splits",
        "data.sample",
        "data.coco",
        "data.archive",
        "masks.categories",
    ),
    "import": (),  # no params: its deps are the split's own paths (data.local.splits.<split>)
    "extract": ("data.splits",),
    "masks": ("base", "data.source", "data.splits", "masks"),
    "train": ("base", "train", "models.{model}"),
    "evaluate": ("evaluate",),
    "compare": ("models",),
}
_ABSENT = "<absent>"


class ParamsChanged(UserError, RuntimeError):
    """params.yaml changed, under a key the stage reads, while the stage ran."""


def guard_params(path: str | Path, stage: str, model: str | None = None) -> None:
    """Remember the values of ``stage``'s parameters in ``path`` now; fail any later publish if they change."""
    path = Path(path)
    keys = [key.format(model=model) for key in STAGE_PARAMS[stage]]
    read = {"text": path.read_bytes()}
    values = _values(load_yaml(path), keys)

    def check() -> None:
        try:
            text = path.read_bytes()
            if text == read["text"]:
                return
            now = _values(load_yaml(path), keys)
        except Exception as err:  # noqa: BLE001 - removed, unreadable, broken: not what the stage read
            raise ParamsChanged(
                f"{path} can no longer be read as the stage read it ({type(err).__name__}); "
                "nothing was published; run the stage again"
            ) from None
        for key in keys:
            if now[key] != values[key]:
                where, before, after = _difference(key, values[key], now[key])
                raise ParamsChanged(
                    f"{path}: {where} changed while this stage ran ({_show(before)} when it "
                    f"started, {_show(after)} now); nothing was published, so DVC cannot record "
                    "parameters these outputs were not made with; run the stage again"
                )
        read["text"] = text  # an unrelated edit: compare against it from now on

    before_publish(check)


def _values(raw: Any, keys: list[str]) -> dict[str, Any]:
    out = {}
    for key in keys:
        value = raw
        for part in key.split("."):
            value = value.get(part, _ABSENT) if isinstance(value, dict) else _ABSENT
        out[key] = value
    return out


def _difference(key: str, old: Any, new: Any) -> tuple[str, Any, Any]:
    """The first dotted key under ``key`` whose value differs, with both values."""
    if isinstance(old, dict) and isinstance(new, dict):
        for part in sorted(set(old) | set(new), key=str):
            if old.get(part, _ABSENT) != new.get(part, _ABSENT):
                return _difference(f"{key}.{part}", old.get(part, _ABSENT), new.get(part, _ABSENT))
    return key, old, new


def _show(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."

"""Atomic file writes: every file a stage produces appears complete under its final name or not at all.

Each writer goes to a hidden temporary file in the destination folder (same filesystem, so the
final ``os.replace`` is atomic) and renames it into place; a killed run leaves at most a stray
``.*.tmp`` file, never a truncated file under the real name.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# Checks run before anything is published under its final name (see core/params_guard.py): a check that
# raises leaves the previous file or folder in place and the new one unpublished.
_PUBLISH_CHECKS: list[Callable[[], None]] = []


def before_publish(check: Callable[[], None]) -> None:
    """Run ``check`` before every rename onto a final name that this process makes from now on."""
    _PUBLISH_CHECKS.append(check)


def _check_publish() -> None:
    for check in _PUBLISH_CHECKS:
        check()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o644)  # mkstemp makes 0600 files; outputs should be readable like any other
        _check_publish()
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write JSON with sorted keys and a trailing newline, so equal content gives equal bytes."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success it replaces ``path`` whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    old = path.with_name(f".{path.name}.old")
    _clean_after_killed_run(path, old)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o755)
        replace_dir(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def replace_dir(src: str | os.PathLike[str], path: str | os.PathLike[str]) -> None:
    """Move the folder ``src`` onto ``path`` (same filesystem), replacing any folder there whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _check_publish()
    if path.exists():
        old = path.with_name(f".{path.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
        os.replace(src, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, path)


def _clean_after_killed_run(path: Path, old: Path) -> None:
    """Undo what a run killed inside ``atomic_dir`` left: its temporary folders, and, if it died between
    its two renames, the previous folder still under its ``.old`` name (put back in place).

    Only one run at a time may write ``path`` (DVC locks the project), so no other run owns them.
    """
    if old.is_dir() and not path.exists():
        os.replace(old, path)
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)

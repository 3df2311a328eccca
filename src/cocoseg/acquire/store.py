"""The download store: where downloads live and resume, outside the download stage's DVC output.

The stage output ``data/raw`` is cached by DVC like any other, so ``dvc pull``, a shared cache, the
run-cache and every queued experiment restore it instead of downloading again. DVC deletes a cached
output before it reruns the stage, so the state that makes a rerun cheap (``.part`` files, verified
archives and their ``.verified`` sidecars, subset images) lives in a store folder beside it, which
DVC never tracks nor deletes. The output is then filled with hard links to the store's files: no
second copy on disk, and with ``cache.type`` hardlink the DVC cache shares the same inodes too.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
from pathlib import Path

from cocoseg.acquire.unpack import ExtractError
from cocoseg.core.files import atomic_dir
from cocoseg.core.layout import MANIFEST

log = logging.getLogger(__name__)

# os.link fails with these where a hard link cannot be made; a copy is then the only way
_NO_LINK = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP}


def link_or_copy(src: Path, dest: Path) -> bool:
    """Hard-link ``src`` to ``dest`` (the same bytes, no new space); copy across file systems.

    Returns True for a link. ``dest`` must not exist.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dest)
        return True
    except OSError as err:
        if err.errno not in _NO_LINK:
            raise
    shutil.copy2(src, dest)
    return False


def publish_downloads(store: Path, out: Path) -> int:
    """Fill ``out`` (replaced whole, atomically) with what ``store``'s manifest lists; return file count.

    Only the listed archives and folders and the manifest go out: the store may still hold files of
    other parameter sets (another split, an earlier subset), kept so that switching back is free.
    """
    manifest_path = store / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text())
        names = [*manifest["archives"], MANIFEST]
        folders = list(manifest["folders"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ExtractError(f"{manifest_path}: unreadable download manifest ({err})") from None
    files = [store / name for name in names]
    for folder in folders:
        files += sorted(p for p in (store / folder).rglob("*") if p.is_file() and not _is_state(p))
    links = 0
    with atomic_dir(out) as tmp:
        for path in files:
            links += link_or_copy(path, tmp / path.relative_to(store))
    log.info(
        "download store %s -> %s: %d files (%d hard links, %d copies)",
        store,
        out,
        len(files),
        links,
        len(files) - links,
    )
    return len(files)


def _is_state(path: Path) -> bool:
    """The store's own bookkeeping, never part of the output."""
    return path.name.endswith((".part", ".verified")) or path.name.startswith(".")

"""The import stage: one split of the user's own files (``data.local.splits``) into data/raw/local/<split>.

The user's folder is never written, and the mode of its files never changes. That rules out hard links
to most of them: DVC makes every file it caches read-only (mode 0444), and a hard link is the same file
as the user's, mode included, so a `dvc repro` would turn the user's originals read-only. A file that
is already read-only and the user's own (an export tracked with ``dvc add``, whose files are links into
the cache) is linked, which changes nothing and costs no space; every other file is copied.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
from pathlib import Path

from cocoseg.acquire.export import place_split
from cocoseg.acquire.store import link_or_copy
from cocoseg.core.files import atomic_dir

log = logging.getLogger(__name__)

CACHE_MODE = 0o444  # what DVC sets on the files it caches


def bring_file(src: Path, dest: Path) -> bool:
    """Copy the user's ``src`` to ``dest``, or hard-link it where DVC's chmod would change nothing (see the
    module's docstring); True for a link."""
    info = src.stat()
    if stat.S_IMODE(info.st_mode) == CACHE_MODE and info.st_uid == getattr(os, "getuid", lambda: -1)():
        return link_or_copy(src, dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    return False


def import_split(split: str, annotations: Path, images: Path, out: Path) -> int:
    """Write ``out`` (replaced whole, atomically) as ``place_split`` lays it out; return the images brought."""
    links = []
    with atomic_dir(out) as tmp:
        placed = place_split(split, annotations, images, tmp, lambda s, d: links.append(bring_file(s, d)))
    count = len(placed.files) - 1  # the JSON
    log.info(
        "import %s: %s and %d images from %s -> %s (%d hard links, %d copies)%s",
        split,
        annotations,
        count,
        images,
        out,
        sum(links),
        len(links) - sum(links),
        f"; {placed.unusable} image records without a usable file name" if placed.unusable else "",
    )
    return count

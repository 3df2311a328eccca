"""Large photos decoded once per training set-up, not once per epoch.

A JPEG's entropy-coded data must be read whole whatever the scale it is decoded at, so a large photo
costs several times a COCO photo even decoded reduced. So the pair of a photo that is decoded reduced
(see ``cocoseg.core.images.reduction``; never a photo of up to a megapixel, so never COCO or the
sample) is kept after its first read, image and mask (resized nearest to the image) as raw arrays, and
read back cheaply in every later epoch.

An entry is named by the digests of the image and its mask that data/masks/manifest.tsv lists (an edited
image or mask has other digests, so a stale entry is never read) and the size the pairs are read for.
Entries are written atomically, so workers and processes that write one at the same time are safe.
The folder, ``data/.decoded`` beside data/masks, is no DVC output and ignored by git; delete it at will.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from cocoseg.core.layout import MASKS_MANIFEST, MASKS_MANIFEST_HEADER

CACHE_FOLDER = ".decoded"  # beside the masks folder

Pair = tuple[np.ndarray, np.ndarray]


class DecodedPairs:
    """Reduced (image, mask) pairs by item, for one ``at_least`` size."""

    def __init__(self, root: Path, digests: dict[str, str], at_least: tuple[int, int]) -> None:
        self.root, self.digests, self.size = Path(root), digests, f"{at_least[0]}x{at_least[1]}"

    @classmethod
    def beside(cls, masks_root: Path, at_least: tuple[int, int]) -> DecodedPairs | None:
        """The cache of ``masks_root``'s pairs, keyed by its manifest; None without a manifest."""
        digests = read_pair_digests(Path(masks_root) / MASKS_MANIFEST)
        return cls(Path(masks_root).parent / CACHE_FOLDER, digests, at_least) if digests else None

    def path(self, item: str) -> Path | None:
        digest = self.digests.get(item)
        return None if digest is None else self.root / f"{digest}-{self.size}.npy"

    def load(self, item: str) -> Pair | None:
        path = self.path(item)
        if path is None:
            return None
        try:
            with open(path, "rb") as f:
                return np.load(f), np.load(f)
        except (OSError, ValueError, EOFError):  # not there yet (or cut short by a kill): decode again
            return None

    def store(self, item: str, pair: Pair) -> None:
        path = self.path(item)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                np.save(f, pair[0])
                np.save(f, pair[1])
            os.replace(tmp, path)
        except OSError:  # a full disk costs speed, not the run
            Path(tmp).unlink(missing_ok=True)


def read_pair_digests(manifest: Path) -> dict[str, str]:
    """item -> ``<image digest><mask digest>`` from manifest.tsv; empty without one."""
    try:
        text = manifest.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return {}
    if not text.startswith(MASKS_MANIFEST_HEADER):
        return {}
    digests = {}
    for line in text[len(MASKS_MANIFEST_HEADER) :].splitlines():
        parts = line.split("\t")
        if len(parts) == 3:
            digests[parts[0]] = parts[1] + parts[2]
    return digests

"""data/coco/contents.tsv: every file extract wrote, with a digest of its bytes.

Extract hashes each file while it unzips or copies it, and writes this list last. The masks stage
depends on the list instead of the folder (DVC then checks data/coco once, as extract's output),
and takes each image's digest for its own manifest from it, instead of reading and hashing the
image a second time. One digest is used throughout: the first 128 bits of SHA-256, in hex.

A file whose modification time is later than the list's was changed after extract listed it (by
hand, outside DVC): its listed digest is not trusted, and the masks stage hashes the file itself.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import IO, NamedTuple

from cocoseg.core.layout import COCO_CONTENTS, COCO_CONTENTS_HEADER

DIGEST_CHARS = 32  # 128 bits in hex


def digest_bytes(data: bytes) -> str:
    """The digest of ``data``: the first 128 bits of its SHA-256, in hex (``sha256sum | cut -c1-32``)."""
    return hashlib.sha256(data).hexdigest()[:DIGEST_CHARS]


def copy_with_digest(src: IO[bytes], out: IO[bytes], block: int = 1 << 20) -> str:
    """Copy ``src`` to ``out`` in blocks; return the digest of the bytes copied (as ``digest_bytes``)."""
    digest = hashlib.sha256()
    while data := src.read(block):
        digest.update(data)
        out.write(data)
    return digest.hexdigest()[:DIGEST_CHARS]


def digest_file(path: str | os.PathLike[str], block: int = 1 << 20) -> str:
    """The digest of a file's bytes (as ``digest_bytes``), read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while data := f.read(block):
            digest.update(data)
    return digest.hexdigest()[:DIGEST_CHARS]


def format_contents(digests: dict[str, str]) -> str:
    """contents.tsv's text: a header, then ``path<TAB>digest`` per file, sorted by path."""
    return COCO_CONTENTS_HEADER + "".join(f"{path}\t{digests[path]}\n" for path in sorted(digests))


class Contents(NamedTuple):
    digests: dict[str, str]  # path relative to the folder ("val2017/x.jpg") -> digest
    listed_ns: int  # the list's modification time: files changed later are not covered by it


def read_contents(folder: Path) -> Contents | None:
    """``folder``'s contents.tsv, or None when it has none or it is not one this project wrote (the
    caller then hashes every file itself). Lines that are not ``path<TAB>digest`` are left out."""
    path = folder / COCO_CONTENTS
    try:
        listed_ns = os.stat(path).st_mtime_ns
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    if not text.startswith(COCO_CONTENTS_HEADER):
        return None
    digests = {}
    for line in text[len(COCO_CONTENTS_HEADER) :].splitlines():
        name, tab, digest = line.rpartition("\t")
        if tab and len(digest) == DIGEST_CHARS:
            digests[name] = digest
    return Contents(digests, listed_ns)

"""The download stage for ``data.source: archive``: the user's export as one zip or tar(.gz), by URL or path.

The archive goes into the download store like COCO's (resumable, verified against ``data.archive.sha256``,
kept between runs), under a name made of its checksum and the URL's last part, so that two exports
never share a file. The extract stage finds the export's layout and splits inside it.
"""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from cocoseg.acquire.extract import write_manifest
from cocoseg.acquire.http import download_file
from cocoseg.core.params import ArchiveConfig

log = logging.getLogger(__name__)

SOURCE = "archive"  # the manifest's source


def archive_url(url: str) -> str:
    """``url`` as urllib fetches it: a local path (relative to the working folder) becomes a file:// URL."""
    if url.startswith(("http://", "https://", "file://")):
        return url
    return Path(url).expanduser().resolve().as_uri()


def store_name(cfg: ArchiveConfig) -> str:
    """``<key>-<last part of the URL>``: key = the start of the expected SHA-256, or of the URL's own hash
    when no checksum is given. A Roboflow URL's last part is an id without a suffix: the extract stage
    tells zip from tar by content."""
    assert cfg.url is not None
    stem = unquote(PurePosixPath(urlsplit(cfg.url).path).name)
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", stem).lstrip(".-") or "export"
    key = (cfg.sha256 or hashlib.sha256(cfg.url.encode()).hexdigest()).lower()[:16]
    return f"{key}-{stem}"[:200]


def fetch_archive(cfg: ArchiveConfig, store: Path) -> str:
    """Download (or find, verified) the archive in ``store``, write the store's manifest; return its name."""
    assert cfg.url is not None
    name = store_name(cfg)
    sha256 = cfg.sha256 if cfg.verify_checksum else None
    if sha256 is None:
        log.warning(
            "data.archive.verify_checksum is false: %s is NOT checked against a SHA-256, and a copy "
            "downloaded earlier is used as it is (delete %s to fetch it again)",
            cfg.url,
            store / name,
        )
    download_file(archive_url(cfg.url), store / name, expected_sha256=sha256)
    write_manifest(store, SOURCE, [name], [])
    return name

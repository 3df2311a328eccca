"""Fetch one file over HTTP: resume, retry, verify, and only then rename it into place.

Bytes stream into ``<dest>.part`` beside the destination. Only a part that passed the size and MD5 (or
SHA-256) checks is renamed onto ``dest`` (``os.replace`` in the same folder, so atomic): the final name never
holds a partial or unverified file, whenever the process dies. A later run resumes the part with a
``Range`` request. A small ``<dest>.verified`` sidecar records a verified file's size, mtime and
checksums, so a rerun skips a multi-GB archive without hashing it again.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import http.client
import json
import logging
import os
import re
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from tqdm import tqdm

from cocoseg.core.errors import UserError
from cocoseg.core.files import write_json

log = logging.getLogger(__name__)

CHUNK = 1 << 20
# A transfer slower than MIN_RATE bytes/s over STALL_WINDOW seconds is given up and retried: the
# socket timeout is per read, so a server trickling a byte a second would otherwise hold a stage for ever.
STALL_WINDOW = 30.0
MIN_RATE = 1024
# A download that has made no progress (MIN_RATE bytes/s) for this long, over any number of retries, is
# given up: a server that never answers, goes silent or trickles ends the stage within about this time.
STALL_SECONDS = 60.0


class DownloadError(UserError, RuntimeError):
    """A download that cannot complete; the message names the URL and the HTTP status or network error."""


class ChecksumError(DownloadError):
    """A downloaded file whose size or MD5 is not the expected one; the bad bytes have been deleted."""


class InsufficientSpaceError(DownloadError):
    """Too little free disk space for the bytes still to download."""


class _TransientError(Exception):
    """A failure worth retrying: network error, cut body, HTTP 5xx or 429."""


class _StalledError(_TransientError):
    """Bytes still come, too slowly to finish: retried, and every stall uses up a retry."""


DIGEST_NAMES = {"md5": "MD5", "sha256": "SHA-256"}  # the checksums download_file verifies


def file_digest(path: str | os.PathLike[str], algorithm: str, chunk: int = 1 << 20) -> str:
    """The hex digest of a file's bytes by ``algorithm`` (a hashlib name: md5, sha256)."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def md5_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    return file_digest(path, "md5", chunk)


def check_free_space(folder: str | os.PathLike[str], needed_bytes: int) -> None:
    free = shutil.disk_usage(folder).free
    if needed_bytes > free:
        raise InsufficientSpaceError(
            f"not enough disk space in {folder}: need {needed_bytes / 1e9:.2f} GB ({needed_bytes} bytes), "
            f"only {free / 1e9:.2f} GB ({free} bytes) available"
        )


def download_file(
    url: str,
    dest: str | os.PathLike[str],
    *,
    expected_size: int | None = None,
    expected_md5: str | None = None,
    expected_sha256: str | None = None,
    retries: int = 5,
    backoff: float = 0.5,
    timeout: float = 60,
    progress: bool = True,
    sidecar: bool = True,
    stall_seconds: float = STALL_SECONDS,
) -> Path:
    """Download ``url`` to ``dest`` unless a verified copy is already there; return ``dest``.

    ``retries`` counts retries after the first attempt. An attempt that still extended the part does
    not use one up, so a long download over a flaky link goes on while it makes progress; ``stall_seconds``
    without progress end it, whatever retries are left. ``sidecar`` false writes no ``.verified`` file (for
    folders of images that other tools glob). A full disk ends it at once, the part deleted."""
    dest = Path(dest)
    expected = {
        name: value.lower()
        for name, value in zip(DIGEST_NAMES, (expected_md5, expected_sha256), strict=False)
        if value is not None
    }
    algorithms = list(expected) or (["md5"] if sidecar else [])  # a sidecar records an MD5 at least
    if _accept_existing(dest, expected_size, expected, algorithms, sidecar):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = _part_path(dest)
    resumed = _size(part) > 0
    log.debug("downloading %s -> %s%s", url, dest, f" (resuming at byte {_size(part)})" if resumed else "")

    def fetch() -> None:
        with _removed_when_disk_full(part, f"{url} to {dest}"):
            _fetch_with_retries(
                url, part, expected_size, retries, backoff, (timeout, stall_seconds), progress
            )

    if expected_size is not None:
        check_free_space(dest.parent, expected_size - _size(part))
    digests = _fetch_verified(
        fetch, resumed, lambda: _verify(part, dest, expected_size, expected, algorithms)
    )
    os.replace(part, dest)
    if sidecar:
        _write_sidecar(dest, digests)
    log.debug("downloaded %s -> %s (%d bytes)", url, dest, dest.stat().st_size)
    return dest


def _fetch_verified(
    fetch: Callable[[], None], resumed: bool, verify: Callable[[], dict[str, str]]
) -> dict[str, str]:
    """Fetch, then verify; a part left by an earlier run that fails verification may hold stale bytes
    (the file changed on the server): it gets one clean restart."""
    fetch()
    try:
        return verify()
    except ChecksumError:
        if not resumed:
            raise
        log.warning("part left by an earlier run failed verification; downloading from the start")
        fetch()
        return verify()


@contextlib.contextmanager
def _removed_when_disk_full(part: Path, what: str) -> Iterator[None]:
    """A full disk is no lost connection to retry: the part is deleted (freeing its space) and the
    download ends with InsufficientSpaceError."""
    try:
        yield
    except OSError as err:
        if err.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        part.unlink(missing_ok=True)
        raise InsufficientSpaceError(
            f"disk full while downloading {what} ({err.strerror}); the partial download was removed"
        ) from None


def _write_sidecar(dest: Path, digests: dict[str, str]) -> None:
    stat = dest.stat()
    write_json(_sidecar_path(dest), {**digests, "mtime_ns": stat.st_mtime_ns, "size": stat.st_size})


def _part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def _sidecar_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".verified")


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _accept_existing(
    dest: Path, expected_size: int | None, expected: dict[str, str], algorithms: list[str], sidecar: bool
) -> bool:
    """True when ``dest`` is already verified; a known-bad ``dest`` is deleted. ``expected``: checksums by
    algorithm; ``algorithms``: those to compute (and, with ``sidecar``, record)."""
    if not dest.exists():
        return False
    stat = dest.stat()
    try:
        record = json.loads(_sidecar_path(dest).read_text())
    except (OSError, ValueError):
        record = None
    if (
        isinstance(record, dict)
        and record.get("size") == stat.st_size
        and record.get("mtime_ns") == stat.st_mtime_ns
        and (expected_size is None or expected_size == stat.st_size)
        and all(record.get(name) == value for name, value in expected.items())
    ):
        log.info("%s is already downloaded and verified; skipping", dest)
        return True
    _sidecar_path(dest).unlink(missing_ok=True)
    if expected_size is None and not expected:
        return False  # nothing tells a whole file from a stray one: download again, replace it at the end
    # A file without a current sidecar (say, copied in by hand): verify it the slow way, once.
    digests = {name: file_digest(dest, name) for name in algorithms}
    if (expected_size is None or stat.st_size == expected_size) and all(
        digests[name] == value for name, value in expected.items()
    ):
        if sidecar:
            _write_sidecar(dest, digests)
        log.info("%s exists and matches its expected size/MD5; skipping", dest)
        return True
    log.warning("%s exists but fails verification; deleting it and downloading again", dest)
    dest.unlink()
    return False


def _verify(
    part: Path, dest: Path, expected_size: int | None, expected: dict[str, str], algorithms: list[str]
) -> dict[str, str]:
    """Check the finished part; delete it and raise ChecksumError when wrong. Returns the digests of
    ``algorithms``."""
    size = _size(part)
    if expected_size is not None and size != expected_size:
        part.unlink(missing_ok=True)
        raise ChecksumError(f"size mismatch for {dest}: expected {expected_size} bytes, got {size}")
    digests = {name: file_digest(part, name) for name in algorithms}
    for name, value in expected.items():
        if digests[name] != value:
            part.unlink(missing_ok=True)
            raise ChecksumError(
                f"{DIGEST_NAMES[name]} mismatch for {dest}: expected {value}, got {digests[name]}"
            )
    return digests


def _fetch_with_retries(
    url: str,
    part: Path,
    expected_size: int | None,
    retries: int,
    backoff: float,
    limits: tuple[float, float],
    progress: bool,
) -> None:
    """Attempts until the part is whole; ``limits``: (the socket timeout asked for, the stall budget)."""
    timeout, stall = limits
    failures, progressed = 0, time.monotonic()  # when the download last made progress
    while True:
        before, started = _size(part), time.monotonic()
        try:
            _fetch_once(
                url, part, expected_size, min(timeout, stall / 2), progress, min(STALL_WINDOW, stall / 2)
            )
            return
        except _TransientError as err:
            # progress: the part grew at MIN_RATE at least (a server that sends a little, then hangs, every
            # time it is asked, makes none)
            grew = _size(part) - before
            if (
                grew > 0
                and grew >= MIN_RATE * (time.monotonic() - started)
                and not isinstance(err, _StalledError)
            ):
                progressed = time.monotonic()
                log.warning("%s: %s; resuming at byte %d", url, err, _size(part))
                continue
            failures += 1
            if time.monotonic() - progressed >= stall:
                raise DownloadError(
                    f"failed to download {url}: no progress for {stall:.0f} s over {failures} "
                    f"attempts ({err})"
                ) from None
            if failures > retries:
                raise DownloadError(f"failed to download {url} after {failures} attempts: {err}") from None
            delay = backoff * 2 ** (failures - 1)
            log.warning("%s: %s; retry %d of %d in %.1f s", url, err, failures, retries, delay)
            time.sleep(delay)


def _fetch_once(
    url: str, part: Path, expected_size: int | None, timeout: float, progress: bool, window: float
) -> None:
    """One request: append to the part (206) or rewrite it (200) until the body ends."""
    offset = _size(part)
    response = _open(url, offset, timeout)
    if isinstance(response, int):  # 416: the server's total size; the part may already hold it all
        if offset == (response if response >= 0 else expected_size):
            return  # the caller verifies it
        part.unlink()
        raise _TransientError(f"HTTP 416 for a {offset}-byte part; starting over")
    with response:
        length = response.headers.get("Content-Length")
        length = int(length) if length is not None else None
        content_range = response.headers.get("Content-Range")
        if response.status == 206 and _parse_content_range(content_range)[0] != offset:
            part.unlink()
            raise _TransientError(f"HTTP 206 for the wrong range ({content_range})")
        if response.status != 206 and offset:
            log.info("%s ignored the Range request; starting over from byte 0", url)
            offset = 0
        total = offset + length if length is not None else expected_size
        with open(part, "ab" if offset else "wb") as f:  # "wb" truncates first, so its space counts as free
            if expected_size is None and length is not None:  # else download_file checked it already
                check_free_space(part.parent, length)
            _stream(response, f, (length, offset, total), progress, part.name.removesuffix(".part"), window)
            os.fsync(f.fileno())


def _open(url: str, offset: int, timeout: float) -> http.client.HTTPResponse | int:
    """Open ``url`` from byte ``offset``; on 416 return the server's total size (-1 when not given)."""
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as err:
        err.close()
        if err.code == 416 and offset:
            return _parse_content_range(err.headers.get("Content-Range"))[1]
        if err.code == 429 or err.code >= 500:
            raise _TransientError(f"HTTP {err.code} {err.reason}") from None
        raise DownloadError(f"failed to download {url}: HTTP {err.code} {err.reason}") from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
        raise _TransientError(f"network error: {getattr(err, 'reason', err)}") from None


def _read(response: http.client.HTTPResponse, received: int) -> bytes:
    try:
        return response.read1(CHUNK)
    except (OSError, http.client.HTTPException) as err:
        raise _TransientError(f"connection lost after {received} bytes: {err}") from None


def _parse_content_range(value: str | None) -> tuple[int, int]:
    """``bytes 100-199/200`` -> (100, 200); ``bytes */200`` -> (-1, 200); -1 for what is missing."""
    match = re.fullmatch(r"bytes (?:(\d+)-\d+|\*)/(\d+|\*)", (value or "").strip())
    if match is None:
        return -1, -1
    start, total = match.groups()
    return int(start) if start else -1, int(total) if total and total != "*" else -1


def _stream(
    response: http.client.HTTPResponse,
    f: BinaryIO,
    sizes: tuple[int | None, int, int | None],
    progress: bool,
    label: str,
    window: float,
) -> None:
    """Append the body to ``f``; ``sizes``: (Content-Length, the part's size before, the whole file's size).
    A read that fails is a lost connection (retried); a write that fails (disk full) is raised as it is."""
    length, offset, total = sizes
    received = 0
    with tqdm(
        total=total,
        initial=offset,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=label,
        disable=not progress,
    ) as bar:
        # read1 returns what has arrived, so a stalled server still leaves its bytes in the part
        window_start, window_bytes = time.monotonic(), 0
        while chunk := _read(response, offset + received):
            f.write(chunk)
            f.flush()  # a killed process must leave every received byte in the part, ready to resume
            received += len(chunk)
            bar.update(len(chunk))
            window_bytes += len(chunk)
            elapsed = time.monotonic() - window_start
            if elapsed >= window:
                if window_bytes < MIN_RATE * elapsed:
                    raise _StalledError(
                        f"transfer stalled: {window_bytes} bytes in {elapsed:.0f} s, under "
                        f"the minimum of {MIN_RATE} bytes/s"
                    )
                window_start, window_bytes = time.monotonic(), 0
    if length is not None and received < length:
        raise _TransientError(f"connection closed after {received} of {length} bytes")

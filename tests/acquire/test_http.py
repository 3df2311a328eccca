import hashlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from http_server import FaultyFileServer

from cocoseg.acquire.http import (
    ChecksumError,
    DownloadError,
    InsufficientSpaceError,
    check_free_space,
    download_file,
    md5_file,
)

SRC = Path(__file__).resolve().parents[2] / "src"
DATA = np.random.default_rng(0).bytes(300_000)
MD5 = hashlib.md5(DATA).hexdigest()


@pytest.fixture
def server(tmp_path):
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "f.bin").write_bytes(DATA)
    with FaultyFileServer(tmp_path / "www") as srv:
        yield srv


def fetch(server, dest, **kwargs):
    return download_file(f"{server.url}/f.bin", dest, progress=False, backoff=0, **kwargs)


def test_md5_file_matches_hashlib(tmp_path):
    (tmp_path / "x").write_bytes(DATA)
    assert md5_file(tmp_path / "x", chunk=4096) == MD5


def test_cut_connection_resumes_with_range(server, tmp_path):
    server.cut_after, server.cut_first = 100_000, 1
    dest = fetch(server, tmp_path / "out" / "f.bin", expected_md5=MD5)
    assert dest.read_bytes() == DATA
    assert server.ranges == [("/f.bin", None), ("/f.bin", "bytes=100000-")]
    assert not (tmp_path / "out" / "f.bin.part").exists()


def test_server_without_range_support_restarts_cleanly(server, tmp_path):
    server.honour_range = False
    server.cut_after, server.cut_first = 100_000, 1
    dest = fetch(server, tmp_path / "f.bin", expected_md5=MD5)
    assert dest.read_bytes() == DATA  # no duplicated prefix from the cut attempt
    assert server.ranges == [("/f.bin", None), ("/f.bin", "bytes=100000-")]


def test_404_fails_at_once_naming_url_and_status(server, tmp_path):
    url = f"{server.url}/missing.bin"
    with pytest.raises(DownloadError) as info:
        download_file(url, tmp_path / "m.bin", progress=False, backoff=0, retries=5)
    assert str(info.value) == f"failed to download {url}: HTTP 404 Not Found"
    assert server.counts["/missing.bin"] == 1
    assert list(tmp_path.iterdir()) == [tmp_path / "www"]


@pytest.mark.parametrize("status", [500, 429])
def test_transient_status_is_retried_then_fails(server, tmp_path, status):
    server.status_for["/f.bin"] = status
    with pytest.raises(DownloadError) as info:
        fetch(server, tmp_path / "f.bin", retries=3)
    prefix = f"failed to download {server.url}/f.bin after 4 attempts: HTTP {status} "
    assert str(info.value).startswith(prefix)
    assert server.counts["/f.bin"] == 4


def test_md5_mismatch_deletes_file_and_names_both_sums(server, tmp_path):
    with pytest.raises(ChecksumError) as info:
        fetch(server, tmp_path / "f.bin", expected_md5="0" * 32)
    assert str(info.value) == f"MD5 mismatch for {tmp_path / 'f.bin'}: expected {'0' * 32}, got {MD5}"
    assert not (tmp_path / "f.bin").exists() and not (tmp_path / "f.bin.part").exists()


def test_size_mismatch_deletes_file(server, tmp_path):
    with pytest.raises(ChecksumError, match="expected 300001 bytes, got 300000"):
        fetch(server, tmp_path / "f.bin", expected_size=len(DATA) + 1)
    assert not (tmp_path / "f.bin").exists() and not (tmp_path / "f.bin.part").exists()


def test_killed_run_leaves_only_a_part_that_a_rerun_resumes(server, tmp_path):
    half = len(DATA) // 2
    server.stall_after = half
    dest, part = tmp_path / "f.bin", tmp_path / "f.bin.part"
    script = (
        "import sys; from cocoseg.acquire.http import download_file; download_file(sys.argv[1], sys.argv[2])"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.Popen(
        [sys.executable, "-c", script, f"{server.url}/f.bin", str(dest)], env=env, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 20
    while (not part.exists() or part.stat().st_size < half) and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.kill()  # SIGKILL: no cleanup code runs
    assert proc.wait() == -9
    assert not dest.exists()
    assert part.read_bytes() == DATA[:half]

    server.stall_after = None
    fetch(server, dest, expected_md5=MD5)
    assert dest.read_bytes() == DATA
    assert server.ranges == [("/f.bin", None), ("/f.bin", f"bytes={half}-")]


def test_verified_file_is_not_downloaded_again(server, tmp_path):
    fetch(server, tmp_path / "f.bin", expected_md5=MD5, expected_size=len(DATA))
    fetch(server, tmp_path / "f.bin", expected_md5=MD5, expected_size=len(DATA))
    assert server.counts["/f.bin"] == 1


def test_changed_file_is_rehashed_and_replaced(server, tmp_path):
    dest = fetch(server, tmp_path / "f.bin", expected_md5=MD5)
    dest.write_bytes(b"x" * len(DATA))  # same size, new mtime: the sidecar no longer vouches for it
    fetch(server, dest, expected_md5=MD5)
    assert dest.read_bytes() == DATA
    assert server.counts["/f.bin"] == 2


def test_complete_part_answered_416_is_verified_without_body(server, tmp_path):
    (tmp_path / "f.bin.part").write_bytes(DATA)
    fetch(server, tmp_path / "f.bin", expected_md5=MD5)
    assert (tmp_path / "f.bin").read_bytes() == DATA
    assert server.ranges == [("/f.bin", f"bytes={len(DATA)}-")]


def test_bad_complete_part_answered_416_restarts(server, tmp_path):
    (tmp_path / "f.bin.part").write_bytes(b"y" * len(DATA))
    fetch(server, tmp_path / "f.bin", expected_md5=MD5)
    assert (tmp_path / "f.bin").read_bytes() == DATA
    assert server.ranges == [("/f.bin", f"bytes={len(DATA)}-"), ("/f.bin", None)]


def test_check_free_space_names_need_and_folder(tmp_path):
    check_free_space(tmp_path, 1)
    message = f"not enough disk space in {tmp_path}: need 1000000000.00 GB (10{'0' * 17} bytes), only "
    with pytest.raises(InsufficientSpaceError, match=re.escape(message)):
        check_free_space(tmp_path, 10**18)


def test_download_refuses_when_expected_size_does_not_fit(server, tmp_path):
    with pytest.raises(InsufficientSpaceError):
        fetch(server, tmp_path / "f.bin", expected_size=10**18)
    assert not (tmp_path / "f.bin").exists()


def test_trickling_server_is_given_up_after_retries(server, tmp_path, monkeypatch):
    """A server sending a byte every few ms kept the stage waiting for ever (the timeout is per read)."""
    import cocoseg.acquire.http as http

    monkeypatch.setattr(http, "STALL_WINDOW", 0.3)
    monkeypatch.setattr(http, "MIN_RATE", 1000)
    server.trickle = 0.01
    start = time.monotonic()
    with pytest.raises(
        DownloadError,
        match=r"failed to download .*/f\.bin after 3 attempts: transfer stalled: "
        r"\d+ bytes in 0 s, under the minimum of 1000 bytes/s",
    ):
        fetch(server, tmp_path / "f.bin", retries=2)
    assert time.monotonic() - start < 5
    assert server.counts["/f.bin"] == 3  # each stall used up a retry, though bytes kept coming
    assert not (tmp_path / "f.bin").exists()

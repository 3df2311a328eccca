"""A full disk (issue 21, class 7), on a small file system each test mounts (tmpfs; skipped with the reason
where it cannot): the masks and train stages ended in OSError 28 tracebacks with a partial checkpoint left,
download retried "no space left" six times as a lost connection, extract called it a corrupt member. Now each
is one line that says the disk is full, with every partial file removed and the previous outputs in place."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from helpers import REPO, assert_one_error, shapes_pair, write_dataset, write_sample
from http_server import FaultyFileServer
from proctree import GB, assert_contained, watch

from cocoseg.acquire.http import InsufficientSpaceError, download_file
from cocoseg.acquire.sample import write_sample_archives
from cocoseg.core.params import SampleConfig


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator:
    """``mount(size, inodes)`` -> a fresh tmpfs of that size under tmp_path, unmounted afterwards."""
    mounted: list[Path] = []

    def mount(size: str, inodes: int = 10_000) -> Path:
        path = tmp_path / f"disk{len(mounted)}"
        path.mkdir()
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},nr_inodes={inodes}", "tmpfs", str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            pytest.skip(
                f"cannot mount a small tmpfs to fill ({result.stderr.strip() or 'mount failed'}): needs "
                "root (or CAP_SYS_ADMIN) on Linux"
            )
        mounted.append(path)
        return path

    yield mount
    for path in mounted:
        subprocess.run(["umount", "-l", str(path)], check=False)


def stage(name: str, cwd: Path, *args: str, timeout: float = 300):
    return watch([sys.executable, str(REPO / "stages" / f"{name}.py"), *args], cwd, timeout=timeout)


def contents(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def fill(disk: Path, leave: int) -> None:
    """Take all but ``leave`` bytes of the disk's free space with a file of its own."""
    import shutil

    free = shutil.disk_usage(disk).free
    (disk / "filler").write_bytes(bytes(max(0, free - leave)))


def test_masks_stage_on_a_full_disk(tmp_path: Path, small_disk) -> None:
    disk = small_disk("4m")
    write_sample(tmp_path / "coco", num_images=16)
    (tmp_path / "params.yaml").write_text("masks: {workers: 2, preview: 2}\n")
    assert stage("masks", tmp_path, "--coco", "coco", "--out", str(disk / "masks")).returncode == 0
    before = contents(disk)
    write_sample(tmp_path / "coco", seed=7, num_images=64)  # other masks, more of them: more bytes to write
    fill(disk, leave=20_000)
    filled = contents(disk)
    result = stage("masks", tmp_path, "--coco", "coco", "--out", str(disk / "masks"))
    assert_one_error(result, "disk full")
    assert_contained(result)
    assert contents(disk) == filled and {k: v for k, v in filled.items() if k != "filler"} == before
    assert sorted(p.name for p in disk.iterdir()) == ["filler", "masks"]  # no .masks.*.tmp left


def test_download_on_a_full_disk_is_not_retried(tmp_path: Path, small_disk) -> None:
    disk = small_disk("256k")
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "f.bin").write_bytes(bytes(1 << 20))
    with FaultyFileServer(tmp_path / "www") as server:
        server.send_length = False  # no size to check the free space against: the disk fills mid-transfer
        with pytest.raises(
            InsufficientSpaceError,
            match=r"disk full while downloading .*/f\.bin to .*; the partial "
            r"download was removed",
        ):
            download_file(f"{server.url}/f.bin", disk / "f.bin", progress=False, backoff=0)
        assert server.counts["/f.bin"] == 1  # no retry: a full disk is no lost connection
    assert list(disk.iterdir()) == []  # the part is gone, its space free again


def test_extract_on_a_full_disk_says_so(tmp_path: Path, small_disk) -> None:
    disk = small_disk("64m", inodes=12)  # bytes enough (the free-space check passes); files run out
    write_sample_archives(tmp_path / "raw" / "download", SampleConfig(num_images=16), 0)
    (tmp_path / "params.yaml").write_text("{}\n")
    result = stage("extract", tmp_path, "--raw", "raw", "--out", str(disk / "coco"))
    line = assert_one_error(
        result,
        "raw/download/val2017.zip: cannot write member 'val2017/",
        "': disk full (No space left on device)",
    )
    assert "corrupt" not in line
    assert list(disk.iterdir()) == []
    assert_contained(result, limit=GB)


def test_train_on_a_full_disk_leaves_no_partial_checkpoint(tmp_path: Path, small_disk) -> None:
    disk = small_disk("1m")
    pairs = [shapes_pair(64, 64, seed) for seed in range(6)]
    write_dataset(tmp_path, [p[0] for p in pairs], [p[1] for p in pairs], num_val=2)
    params = {
        "train": {"epochs": 2, "batch_size": 2, "image_size": [64, 64], "workers": 0, "accelerator": "cpu"},
        "models": {"x": {"arch": "fastscnn", "lr": 0.01}},
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result = stage("train", tmp_path, "--model", "x", "--runs", "runs", "--resume-dir", str(disk / "x"))
    assert_one_error(result, f"disk full: {disk / 'x' / 'pending.ckpt'} (No space left on device)")
    assert_contained(result)
    assert not (tmp_path / "models").exists() and not (tmp_path / "results").exists()  # nothing published
    left = sorted(str(p.relative_to(disk)) for p in disk.rglob("*"))
    assert not [p for p in left if p.endswith((".ckpt", ".tmp")) or "last" in p], left

"""benchmarks/gpu_check.sh --cpu-dry-run: every part of the GPU check at toy scale on the CPU, offline."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO, write_sample

SCRIPT = REPO / "benchmarks" / "gpu_check.sh"


def git_state() -> str:
    """The repository's working-tree state as git sees it (the check must leave it as it was)."""
    return subprocess.run(
        ["git", "status", "--porcelain", "--ignored"], check=False, cwd=REPO, capture_output=True, text=True
    ).stdout


@pytest.mark.slow
def test_cpu_dry_run_runs_every_part_and_writes_only_out_and_a_fresh_folder(tmp_path: Path) -> None:
    coco = write_sample(tmp_path / "coco", num_images=16)  # a COCO folder, as --coco gets the real photos
    out, tmp = tmp_path / "out", tmp_path / "tmp"
    tmp.mkdir()
    before = git_state()
    env = {
        **os.environ,
        "OUT": str(out),
        "TMPDIR": str(tmp),
        "GPU_CHECK_PYTHON": sys.executable,
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
    }
    result = subprocess.run(
        ["bash", str(SCRIPT), "--cpu-dry-run", "--coco", str(coco)],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    log = (out / "gpu_check.log").read_text()
    assert result.returncode == 0, log[-5000:]
    assert log == result.stdout  # everything it printed, in $OUT
    for part in range(5):
        assert re.search(rf"== part {part}: ok in \d+ s", log), f"part {part}\n{log[-5000:]}"
    assert "parts all ok" in log

    # part 1: dvc repro ran every stage, and the summary read the scores it wrote
    assert "dvc repro: exit 0" in log and "Running stage 'compare'" in (out / "repro.log").read_text()
    assert re.search(r"fastscnn +0\.\d{4} +0\.\d{4} +\d+\.\d +cpu", log)
    assert "warn-only kernels (times printed): none" in log  # the CPU has no warn-only kernels
    # part 2: the masks stage on the --coco folder, then resident / fed / alone figures for the model
    assert re.search(r"masks stage: 1\d of 16 images, 4 classes", log)  # the sample skips a few by design
    assert re.search(r"fastscnn +\d+ +\d+\.\d +\d+\.\d \(\d+%\) +\d+\.\d\d +\d+\.\d", log)
    assert re.search(r"target fastscnn: resident \d+\.\d img/s < +700 SHORT", log)  # a GPU target, on the CPU
    # part 3: both resize variants per case, float32 gradients close to the float64 reference
    errors = [
        float(e)
        for e in re.findall(r"(?:pytorch|matrix) +float32 .* (\d\.\d\de[-+]\d\d) +\d\.\d\de[-+]\d\d", log)
    ]
    assert len(errors) == 12 and max(errors) < 1e-5  # 6 resizes in Fast-SCNN, 2 variants each
    assert re.search(r"matrix / pytorch \d+\.\d{3}", log)
    # part 4: 200 categories give 201 classes in uint8 masks; the large photos come through the loader
    assert "4 of 4 images, 201 classes" in log and "320x240, 4 images" in log
    assert len(re.findall(r"fastscnn +\d+ +\d+\.\d +\d+\.\d \(\d+%\)", log)) == 3

    assert sorted(p.name for p in out.iterdir()) == ["gpu_check.log", "repro.log"]
    assert list(tmp.iterdir()) == []  # its work folder is removed at the end
    assert git_state() == before

"""scripts/check_lock.py: which pins each platform needs, and the reason it prints for one that does not resolve
(pip's own words for the pin without a file, and the known cause). The network part is pip's, run by hand."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

from helpers import REPO

spec = importlib.util.spec_from_file_location("check_lock", REPO / "scripts" / "check_lock.py")
check_lock = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_lock)

# What pip 25 prints for a pin with no file for the platform (--quiet keeps only the errors).
NO_FILE = """ERROR: Could not find a version that satisfies the requirement torch==2.14.1 (from versions: 1.13.1, 2.2.2)
ERROR: No matching distribution found for torch==2.14.1
"""


def test_each_platform_gets_the_pins_its_markers_select() -> None:
    lock = REPO / "requirements.lock"
    _, env, _, leave_out, _, _ = next(t for t in check_lock.TARGETS if "Intel" in t[0])
    mac = check_lock.pins_for(lock, env, leave_out)
    linux = check_lock.pins_for(lock, check_lock.LINUX, ())
    cpu = check_lock.pins_for(lock, check_lock.LINUX, check_lock.CPU_ONLY)
    assert any(p.startswith("torch==") for p in mac) and any(p.startswith("torch==") for p in cpu)
    cuda = ("nvidia-cu", "cuda-", "triton")  # CUDA's libraries: Linux only, and not for CPU-only torch
    assert any(p.startswith(cuda) for p in linux) and not any(p.startswith(cuda) for p in mac + cpu)


def test_a_platform_that_does_not_resolve_says_which_pin_and_why() -> None:
    line = check_lock.reason("macOS x86_64 (Intel)", NO_FILE, 1)
    assert line.startswith("Could not find a version that satisfies the requirement torch==2.14.1")
    assert "No matching distribution found for torch==2.14.1" in line
    assert line.endswith("(why: PyTorch publishes no macOS x86_64 wheel after torch 2.2.2)")
    assert (
        check_lock.reason("Linux x86_64, CPU-only torch", "", 2)
        == "pip exited with code 2 and printed nothing"
    )


def test_help_says_what_it_takes() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "check_lock.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0 and "What it takes" in result.stdout and "--only" in result.stdout

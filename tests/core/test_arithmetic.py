"""Pinning the CPU arithmetic: the environment set before torch loads, and what torch then runs with."""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys

import pytest

from cocoseg.core import arithmetic
from cocoseg.core.arithmetic import (
    ISA,
    add_arithmetic_flags,
    pin_arithmetic,
    pinned_environment,
    settle_arithmetic,
)

PROBE = """
import json, sys
from cocoseg.core.arithmetic import pin_arithmetic
pinned = pin_arithmetic(sys.argv[1] == "true", int(sys.argv[2]))
import torch
print(json.dumps({"pinned": pinned, "threads": torch.get_num_threads(),
                  "kernels": torch.backends.cpu.get_cpu_capability()}))
"""


def probe(deterministic: bool, threads: int, **env: str) -> dict:
    """What torch runs with in a fresh process that pinned (or not) before importing it."""
    clean = {k: v for k, v in os.environ.items() if k not in pinned_environment(1)}
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(deterministic).lower(), str(threads)],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_the_pins_name_the_instruction_set_and_the_threads() -> None:
    pins = pinned_environment(3)
    assert pins["ONEDNN_MAX_CPU_ISA"] == "AVX2" and pins["ATEN_CPU_CAPABILITY"] == "avx2"
    assert pins["MKL_CBWR"] == "COMPATIBLE"  # the one MKL path documented alike on Intel and AMD
    assert pins["OMP_NUM_THREADS"] == pins["MKL_NUM_THREADS"] == "3"
    assert pins["OMP_DYNAMIC"] == pins["MKL_DYNAMIC"] == "FALSE" and pins["OMP_WAIT_POLICY"] == "PASSIVE"


def test_pinned_before_torch_torch_runs_avx2_kernels_on_the_pinned_threads() -> None:
    native = probe(False, 3, OMP_NUM_THREADS="1")  # not deterministic: nothing pinned, the shell decides
    assert native["pinned"] == {} and native["threads"] == 1
    pinned = probe(True, 3, OMP_NUM_THREADS="7")  # deterministic: the parameter wins over the shell
    assert pinned["pinned"] == pinned_environment(3)
    assert pinned["threads"] == 3
    # AVX-512 machines come down to AVX2; one without AVX2 cannot go up to it (and is warned about)
    unpinned_kernels = probe(False, 1)["kernels"]
    assert pinned["kernels"] == (ISA if unpinned_kernels in (ISA, "AVX512") else unpinned_kernels)


def test_settling_after_torch_sets_the_threads_and_says_the_pins_came_too_late(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    monkeypatch.setattr(arithmetic, "_pinned_before_torch", False)
    before = torch.get_num_threads()
    try:
        with caplog.at_level(logging.INFO, logger="cocoseg.core.arithmetic"):
            record = settle_arithmetic(True, 1)
        assert torch.get_num_threads() == 1 and record["threads"] == 1
        assert record["pinned"] == pinned_environment(1) and record["torch"] == torch.__version__
        if record["machine"].lower() in ("x86_64", "amd64"):
            assert "torch was imported before" in caplog.text
        settled = settle_arithmetic(False, 1)
        assert settled["pinned"] == {} and settled["deterministic"] is False
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize(
    ("words", "deterministic", "threads"),
    [([], True, 2), (["--threads", "4"], True, 4), (["--no-deterministic"], False, 2)],
)
def test_flags_default_to_evaluates_settings(words: list[str], deterministic: bool, threads: int) -> None:
    parser = argparse.ArgumentParser()
    add_arithmetic_flags(parser)
    args = parser.parse_args(words)
    assert (args.deterministic, args.threads) == (deterministic, threads)


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_threads_flag_refuses_what_is_not_a_count(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    add_arithmetic_flags(parser)
    with pytest.raises(SystemExit):
        parser.parse_args(["--threads", value])
    assert "is not a number of threads" in capsys.readouterr().err


def test_pinning_twice_is_idempotent_and_nothing_pins_when_not_deterministic(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(arithmetic, "_pinned_before_torch", False)
    for key in pinned_environment(1):
        monkeypatch.delenv(key, raising=False)
    assert pin_arithmetic(False, 2) == {}
    assert not set(pinned_environment(2)) & set(os.environ)
    assert pin_arithmetic(True, 2) == pin_arithmetic(True, 2) == pinned_environment(2)
    assert {k: os.environ[k] for k in pinned_environment(2)} == pinned_environment(2)

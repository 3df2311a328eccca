"""Resolve requirements.lock for other platforms without installing anything (the README's install notes).

    python scripts/check_lock.py                 # every platform below, side by side
    python scripts/check_lock.py --only macOS    # the platforms whose label contains "macOS"

What it takes: pip reads each pinned file's metadata for each platform, which needs PyPI and, for the
CPU-only case, download.pytorch.org. Where an index serves metadata files (PyPI does), that is a few KB per
pin; where it does not (download.pytorch.org), pip downloads the whole wheel to read it: about 200 MB for
torch's CPU wheel. So expect a few minutes on a fast connection, longer on a slow one; the platforms run in
parallel, and a line with the time taken is printed as each one finishes. A second run reuses pip's cache.

pip evaluates a requirements file's markers against the running interpreter, not ``--platform``, so
each lock line's marker is evaluated here for the target first; pip then checks (``--dry-run --no-deps``;
the lock pins every dependency) that each remaining pin has a file for that platform. A platform that
does not resolve is reported with pip's reason (the pin without a file) and, where it is known, why.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from packaging.requirements import Requirement

PYTHON = {
    "python_version": "3.11",
    "python_full_version": "3.11.9",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "os_name": "posix",
}
MAC = {"sys_platform": "darwin", "platform_system": "Darwin"}
LINUX = {"sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64"}
CPU_ONLY = ("nvidia-", "cuda-", "triton")  # what PyTorch's CPU wheels do without
ARM64, X86_64 = {**MAC, "platform_machine": "arm64"}, {**MAC, "platform_machine": "x86_64"}
TARGETS = [  # label, marker environment, pip --platform, leave out, extra pip args, promised by the README
    ("macOS 14+ arm64 (Apple Silicon)", ARM64, ["macosx_14_0_arm64"], (), [], True),
    ("macOS 13 arm64", ARM64, ["macosx_13_0_arm64"], (), [], False),
    ("macOS x86_64 (Intel)", X86_64, ["macosx_14_0_x86_64"], (), [], False),
    (
        "Linux x86_64, CPU-only torch",
        LINUX,
        [f"manylinux_2_{v}_x86_64" for v in (28, 17, 5)] + ["manylinux2014_x86_64"],
        CPU_ONLY,
        ["--extra-index-url", "https://download.pytorch.org/whl/cpu"],
        True,
    ),
]
# Why a platform is known not to resolve, by the pin pip names (the README's install notes say the same).
KNOWN = {
    ("macOS 13 arm64", "torch"): "torch publishes its macOS arm64 wheels for macOS 14 and later only",
    ("macOS x86_64 (Intel)", "torch"): "PyTorch publishes no macOS x86_64 wheel after torch 2.2.2",
}


def pins_for(lock: Path, env: dict[str, str], leave_out: tuple[str, ...]) -> list[str]:
    pins = []
    for line in lock.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        req = Requirement(line)
        if req.name.startswith(leave_out) or (req.marker and not req.marker.evaluate({**PYTHON, **env})):
            continue
        pins.append(f"{req.name}{req.specifier}")
    return pins


def reason(label: str, stderr: str, returncode: int) -> str:
    """Why pip could not resolve: its ERROR lines (the pin without a file first), and the known cause."""
    errors = [
        line.removeprefix("ERROR: ")
        for line in stderr.splitlines()
        if line.startswith("ERROR: ") and "ResolutionImpossible" not in line
    ]
    last = next(
        (line for line in reversed(stderr.splitlines()) if line.strip()),
        f"pip exited with code {returncode} and printed nothing",
    )
    errors = list(dict.fromkeys(errors)) or [last]
    failing = {
        Requirement(word.strip(",:()")).name
        for line in errors
        for word in line.split()
        if "==" in word and _is_requirement(word.strip(",:()"))
    }
    known = [KNOWN[(label, name)] for name in sorted(failing) if (label, name) in KNOWN]
    return "; ".join(errors) + (f" (why: {'; '.join(known)})" if known else "")


def _is_requirement(text: str) -> bool:
    try:
        Requirement(text)
    except ValueError:
        return False
    return True


def check(
    label: str, env: dict[str, str], platforms: list[str], leave_out: tuple[str, ...], extra: list[str]
) -> tuple[bool, str]:
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        reqs = Path(tmp) / "reqs.txt"
        pins = pins_for(Path("requirements.lock"), env, leave_out)
        reqs.write_text("\n".join(pins) + "\n")
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--dry-run",
                "--ignore-installed",
                "--no-deps",
                "--disable-pip-version-check",
                "--quiet",
                "--target",
                tmp,
                "--python-version",
                "3.11",
                "--implementation",
                "cp",
                *(f"--platform={p}" for p in platforms),
                "-r",
                str(reqs),
                *extra,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
    took = f"{len(pins)} pins, {time.monotonic() - started:.0f} s"
    if result.returncode == 0:
        return True, f"{label}: resolves ({took})"
    return False, f"{label}: does not resolve ({took}): {reason(label, result.stderr, result.returncode)}"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", help="check only the platforms whose label contains this text")
    args = parser.parse_args()
    targets = [t for t in TARGETS if args.only is None or args.only.lower() in t[0].lower()]
    if not targets:
        parser.error(f"--only {args.only!r} matches none of: {', '.join(t[0] for t in TARGETS)}")
    print(
        f"checking {len(targets)} platforms in parallel (pip reads each pin's metadata; see --help)",
        flush=True,
    )
    promised_ok = True
    with ThreadPoolExecutor(len(targets)) as pool:
        futures = {pool.submit(check, *target[:5]): target for target in targets}
        for future in as_completed(futures):
            target = futures[future]
            ok, line = future.result()
            print(line, flush=True)
            promised_ok &= ok or not target[5]
    return 0 if promised_ok else 1  # the paths the README promises must resolve


if __name__ == "__main__":
    sys.exit(main())

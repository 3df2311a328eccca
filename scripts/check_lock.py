"""Resolve requirements.lock for other platforms without installing anything (the README's install notes).

    python scripts/check_lock.py     # about a minute; needs PyPI (and download.pytorch.org for the CPU case)

pip evaluates a requirements file's markers against the running interpreter, not ``--platform``, so
each lock line's marker is evaluated here for the target first; pip then checks (``--dry-run --no-deps``;
the lock pins every dependency) that each remaining pin has a file for that platform.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from packaging.requirements import Requirement

PYTHON = {"python_version": "3.11", "python_full_version": "3.11.9", "implementation_name": "cpython",
          "platform_python_implementation": "CPython", "os_name": "posix"}
MAC = {"sys_platform": "darwin", "platform_system": "Darwin"}
LINUX = {"sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64"}
CPU_ONLY = ("nvidia-", "cuda-", "triton")  # what PyTorch's CPU wheels do without
TARGETS = [  # label, marker environment, pip --platform, leave out, extra pip arguments
    ("macOS 14+ arm64 (Apple Silicon)", {**MAC, "platform_machine": "arm64"}, ["macosx_14_0_arm64"], (), []),
    ("macOS 13 arm64", {**MAC, "platform_machine": "arm64"}, ["macosx_13_0_arm64"], (), []),
    ("macOS x86_64 (Intel)", {**MAC, "platform_machine": "x86_64"}, ["macosx_14_0_x86_64"], (), []),
    ("Linux x86_64, CPU-only torch", LINUX,
     [f"manylinux_2_{v}_x86_64" for v in (28, 17, 5)] + ["manylinux2014_x86_64"], CPU_ONLY,
     ["--extra-index-url", "https://download.pytorch.org/whl/cpu"]),
]


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


def check(label: str, env: dict[str, str], platforms: list[str], leave_out: tuple[str, ...],
          extra: list[str]) -> bool:
    with tempfile.TemporaryDirectory() as tmp:
        reqs = Path(tmp) / "reqs.txt"
        reqs.write_text("\n".join(pins_for(Path("requirements.lock"), env, leave_out)) + "\n")
        result = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed",
                                 "--no-deps", "--disable-pip-version-check", "--quiet", "--target", tmp,
                                 "--python-version", "3.11", "--implementation", "cp",
                                 *(f"--platform={p}" for p in platforms), "-r", str(reqs), *extra],
                                capture_output=True, text=True)
    errors = [line for line in result.stderr.splitlines()
              if line.startswith(("ERROR: Could not find", "ERROR: Cannot install"))]
    print(f"{label}: {'resolves' if result.returncode == 0 else 'does not resolve: ' + ' '.join(errors)}")
    return result.returncode == 0


if __name__ == "__main__":
    results = [check(*target) for target in TARGETS]
    sys.exit(0 if results[0] and results[3] else 1)  # the two paths the README promises

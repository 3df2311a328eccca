"""Run a command in its own session and watch the whole process tree through /proc (Linux): the peak of its
memory (RSS summed over every process in the session, sampled every few ms, and each process's own
high-water mark) and the processes it leaves running. Orphans stay in the session when their parent dies,
so a worker left behind by a killed stage is still found."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

GB = 1 << 30


def session_pids(sid: int) -> list[int]:
    """Every live process of session ``sid`` (zombies left out: they hold no memory and run nothing)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": state, ppid, pgrp, session, ...
        if int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(entry.name))
    return pids


def memory(pid: int) -> tuple[int, int]:
    """(RSS, high-water mark of RSS) of one process, in bytes; zeros once it is gone."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return 0, 0
    values = {
        line.split(":")[0]: int(line.split()[1]) * 1024
        for line in lines
        if line.startswith(("VmRSS", "VmHWM"))
    }
    return values.get("VmRSS", 0), values.get("VmHWM", 0)


@dataclass
class Watched:
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    peak_rss: int = 0  # bytes: the tree's sampled sum, or one process's high-water mark if that is more
    peak_processes: int = 0  # the most processes seen in the tree at once
    left: list[int] = field(default_factory=list)  # processes of the session still running after it ended


class TreeSampler:
    """Samples the memory of session ``sid`` in a thread until stopped."""

    def __init__(self, sid: int, interval: float = 0.005) -> None:
        self.sid, self.interval, self.peak, self.processes = sid, interval, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            samples = [memory(pid) for pid in session_pids(self.sid)]
            self.processes = max(self.processes, len(samples))
            self.peak = max([self.peak, sum(rss for rss, _ in samples), *(hwm for _, hwm in samples)])
            self._stop.wait(self.interval)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def watch(
    args: list[str],
    cwd: Path,
    env: dict[str, str] | None = None,
    timeout: float = 120,
    preexec_fn: Any = None,
) -> Watched:
    """Run ``args`` to its end; every process it leaves behind is listed in ``left``, then killed."""
    start = time.monotonic()
    proc = subprocess.Popen(
        args,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=preexec_fn,
    )  # noqa: PLW1509 - before threads
    sampler = TreeSampler(proc.pid)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        peak = sampler.stop()
    watched = Watched(proc.returncode, stdout, stderr, time.monotonic() - start, peak, sampler.processes)
    watched.left = left_behind(proc.pid)
    if os.environ.get("PROCTREE_LOG"):  # the figures behind docs/hostile-input.md: test, peak MB, seconds
        with open(os.environ["PROCTREE_LOG"], "a") as log:
            log.write(
                f"{os.environ.get('PYTEST_CURRENT_TEST', '?').split(' ')[0]}\t{peak / 2**20:.0f}\t"
                f"{watched.seconds:.1f}\t{watched.returncode}\n"
            )
    return watched


def left_behind(sid: int, grace: float = 2.0) -> list[int]:
    """The processes of session ``sid`` still running ``grace`` seconds from now (killed then, so a failed
    test leaves nothing either)."""
    deadline = time.monotonic() + grace
    while (pids := session_pids(sid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return pids


def assert_contained(watched: Watched, limit: int = 2 * GB) -> None:
    """The bar of every hostile-input test: the tree stayed under ``limit`` and left nothing running."""
    assert watched.peak_rss < limit, f"peak RSS {watched.peak_rss / GB:.2f} GB\n{watched.stderr[-3000:]}"
    assert watched.left == [], f"left running: {watched.left}"

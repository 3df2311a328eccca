"""A small process pool that notices a dead worker and says which image it was working on.

``multiprocessing.Pool`` waits for ever for a result from a worker that was killed (a segfault in a
C extension, the kernel's out-of-memory killer, a SIGKILL): it starts a new worker, but the chunk
the dead one held is never finished. Here each worker has its own pipe and the parent waits on the
pipes and the workers' process sentinels together, so a death is seen at once. Each worker writes the
index of the task it is on into a shared array before it starts it, so the error can name the image.

Tasks go out in chunks, two per worker in flight, so a worker finds its next chunk waiting when it
finishes one instead of idling for a round trip through a busy parent; results come back in task
order. A thread does the sending: a chunk bigger than the pipe's buffer can then wait for the worker
to read it while the parent goes on reading results (one thread doing both could deadlock with a
worker that is itself waiting to send).
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import queue
import signal
import sys
import threading
import traceback
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.connection import Connection, wait
from typing import Any

from cocoseg.core.errors import UserError
from cocoseg.core.stage import machine_refusal


class WorkerDied(UserError, RuntimeError):
    """A worker process ended without finishing its task; the message names the task."""


class WorkerRefused(UserError, RuntimeError):
    """The machine refused a worker's file operation (disk full, permission denied); the message names
    the task and says which."""


class _Failure:
    """A bug in the task function, carried back with its traceback."""

    def __init__(self, text: str) -> None:
        self.text = text


class _Refusal:
    """A file operation the machine refused (``machine_refusal``'s line), carried back as one line."""

    def __init__(self, line: str, index: int) -> None:
        self.line, self.index = line, index


PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent dies


def end_with_parent(parent: int) -> None:
    """Have the kernel SIGKILL this process when its parent dies (Linux), so that a SIGKILL of the stage
    leaves no worker behind; elsewhere, or if the parent is already gone, nothing is set or we exit."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def _serve(conn: Connection, slot: int, current: Any, function: Callable[[Any], Any], parent: int) -> None:
    end_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    while (message := conn.recv()) is not None:
        start, tasks = message
        results = []
        try:
            for k, task in enumerate(tasks):
                current[slot] = start + k
                results.append(function(task))
        except Exception as err:  # a bug, not bad input: the parent re-raises it with the traceback
            line = machine_refusal(err)
            conn.send(_Failure(traceback.format_exc()) if line is None else _Refusal(line, current[slot]))
            continue
        conn.send(results)


class WorkerPool:
    """``workers`` processes applying ``function`` to tasks; start it before loading big data."""

    def __init__(self, workers: int, function: Callable[[Any], Any]) -> None:
        ctx = multiprocessing.get_context()
        self.current = ctx.Array("q", workers, lock=False)  # the task each worker is on
        self.conns: list[Connection] = []
        self.procs = []
        self.outbox: queue.SimpleQueue[tuple[Connection, Any] | None] = queue.SimpleQueue()
        self.sender = threading.Thread(target=self._send_all, daemon=True)
        for slot in range(workers):
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=_serve, args=(child, slot, self.current, function, os.getpid()), daemon=True
            )
            proc.start()
            child.close()
            self.conns.append(parent)
            self.procs.append(proc)
        self.sender.start()

    def _send_all(self) -> None:
        while (item := self.outbox.get()) is not None:
            conn, message = item
            try:
                conn.send(message)
            except OSError:  # the worker died; the parent sees its sentinel and reports it
                pass

    def kill(self) -> None:
        """Stop at once (on an error or Ctrl-C): what the workers were doing is thrown away."""
        for proc in self.procs:
            proc.kill()
            proc.join()
        self.outbox.put(None)  # the sender's pending sends now fail at once

    def close(self) -> None:
        for conn, proc in zip(self.conns, self.procs, strict=False):
            if proc.is_alive():
                self.outbox.put((conn, None))
        self.outbox.put(None)
        self.sender.join(timeout=5)
        for proc in self.procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join()

    def run(
        self, tasks: Sequence[Any], chunksize: int, describe: Callable[[int], str], in_flight: int = 2
    ) -> Iterator[Any]:
        """Results of ``tasks`` in order; WorkerDied names ``describe(index)`` of the task being run."""
        chunks = [
            (start, list(tasks[start : start + chunksize])) for start in range(0, len(tasks), chunksize)
        ]
        pending = iter(range(len(chunks)))
        busy: dict[int, deque[int]] = {w: deque() for w in range(len(self.conns))}  # worker -> its chunks
        done: dict[int, list[Any]] = {}
        emitted = 0
        for _ in range(in_flight):
            for worker in busy:
                self._give(worker, pending, chunks, busy)
        while emitted < len(chunks):
            self._collect(busy, done, pending, chunks, describe)
            while emitted in done:
                yield from done.pop(emitted)
                emitted += 1

    def _give(self, worker: int, pending: Iterator[int], chunks: list, busy: dict[int, deque[int]]) -> None:
        chunk = next(pending, None)
        if chunk is not None:
            busy[worker].append(chunk)
            self.outbox.put((self.conns[worker], chunks[chunk]))

    def _collect(
        self,
        busy: dict[int, deque[int]],
        done: dict[int, list[Any]],
        pending: Iterator[int],
        chunks: list,
        describe: Callable[[int], str],
    ) -> None:
        working = [w for w, held in busy.items() if held]
        by_handle = {self.conns[w]: w for w in working} | {self.procs[w].sentinel: w for w in working}
        for handle in wait(list(by_handle)):
            worker = by_handle[handle]
            if not busy[worker]:
                continue  # its pipe and its sentinel were both ready
            conn = self.conns[worker]
            try:
                result = conn.recv() if conn.poll() else None
            except (EOFError, OSError):
                result = None
            if result is None:
                self._died(worker, describe)
            if isinstance(result, _Failure):
                self.kill()  # before the caller removes the output folder the others are writing into
                raise RuntimeError(f"a masks worker failed:\n{result.text}")
            if isinstance(result, _Refusal):
                self.kill()
                raise WorkerRefused(f"while making the masks of {describe(result.index)}: {result.line}")
            done[busy[worker].popleft()] = result  # a worker answers its chunks in the order it got them
            self._give(worker, pending, chunks, busy)

    def _died(self, worker: int, describe: Callable[[int], str]) -> None:
        proc = self.procs[worker]
        proc.join(timeout=5)
        code = proc.exitcode
        try:
            how = f"was killed by {signal.Signals(-code).name}" if code is not None and code < 0 else None
        except ValueError:
            how = None
        how = how or f"exited with code {code}"
        self.kill()  # the others stop writing before the caller removes the temporary output folder
        if code == -signal.SIGKILL:
            how += " (the out-of-memory killer sends this signal too)"
        raise WorkerDied(
            f"a worker process {how} while making the masks of {describe(self.current[worker])}; "
            f"nothing was written to the output folder"
        )

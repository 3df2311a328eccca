"""A small process pool that notices a dead worker and says which image it was working on.

``multiprocessing.Pool`` waits for ever for a result from a worker that was killed (a segfault in a
C extension, the kernel's out-of-memory killer, a SIGKILL): it starts a new worker, but the chunk
the dead one held is never finished. Here each worker has its own pipe and the parent waits on the
pipes and the workers' process sentinels together, so a death is seen at once. Each worker writes the
index of the task it is on into a shared array before it starts it, so the error can name the image.

Tasks go out in chunks, one chunk per worker at a time (a worker's next chunk is sent the moment
its result arrives, before the parent handles that result), and results come back in task order.
"""

from __future__ import annotations

import multiprocessing
import signal
import traceback
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.connection import Connection, wait
from typing import Any

from cocoseg.core.errors import UserError


class WorkerDied(UserError, RuntimeError):
    """A worker process ended without finishing its task; the message names the task."""


class _Failure:
    """A bug in the task function, carried back with its traceback."""

    def __init__(self, text: str) -> None:
        self.text = text


def _serve(conn: Connection, slot: int, current: Any, function: Callable[[Any], Any]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    while (message := conn.recv()) is not None:
        start, tasks = message
        results = []
        try:
            for k, task in enumerate(tasks):
                current[slot] = start + k
                results.append(function(task))
        except Exception:  # a bug, not bad input: the parent re-raises it with the traceback
            conn.send(_Failure(traceback.format_exc()))
            continue
        conn.send(results)


class WorkerPool:
    """``workers`` processes applying ``function`` to tasks; start it before loading big data."""

    def __init__(self, workers: int, function: Callable[[Any], Any]) -> None:
        ctx = multiprocessing.get_context()
        self.current = ctx.Array("q", workers, lock=False)  # the task each worker is on
        self.conns: list[Connection] = []
        self.procs = []
        for slot in range(workers):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_serve, args=(child, slot, self.current, function), daemon=True)
            proc.start()
            child.close()
            self.conns.append(parent)
            self.procs.append(proc)

    def kill(self) -> None:
        """Stop at once (on an error or Ctrl-C): what the workers were doing is thrown away."""
        for proc in self.procs:
            proc.kill()
            proc.join()

    def close(self) -> None:
        for conn, proc in zip(self.conns, self.procs):
            if proc.is_alive():
                try:
                    conn.send(None)
                except OSError:
                    pass
        for proc in self.procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join()

    def run(self, tasks: Sequence[Any], chunksize: int, describe: Callable[[int], str]) -> Iterator[Any]:
        """Results of ``tasks`` in order; WorkerDied names ``describe(index)`` of the task being run."""
        chunks = [(start, list(tasks[start:start + chunksize])) for start in range(0, len(tasks), chunksize)]
        pending = iter(range(len(chunks)))
        busy: dict[int, int] = {}  # worker -> chunk it holds
        done: dict[int, list[Any]] = {}
        emitted = 0
        for worker in range(len(self.conns)):
            self._give(worker, pending, chunks, busy)
        while emitted < len(chunks):
            self._collect(busy, done, pending, chunks, describe)
            while emitted in done:
                yield from done.pop(emitted)
                emitted += 1

    def _give(self, worker: int, pending: Iterator[int], chunks: list, busy: dict[int, int]) -> None:
        chunk = next(pending, None)
        if chunk is not None:
            busy[worker] = chunk
            try:
                self.conns[worker].send(chunks[chunk])
            except OSError:  # it died while idle; the wait in _collect reports it
                pass

    def _collect(self, busy: dict[int, int], done: dict[int, list[Any]], pending: Iterator[int], chunks: list,
                 describe: Callable[[int], str]) -> None:
        by_handle = {self.conns[w]: w for w in busy} | {self.procs[w].sentinel: w for w in busy}
        for handle in wait(list(by_handle)):
            worker = by_handle[handle]
            if worker not in busy:
                continue  # its pipe and its sentinel were both ready
            conn = self.conns[worker]
            try:
                result = conn.recv() if conn.poll() else None
            except (EOFError, OSError):
                result = None
            if result is None:
                self._died(worker, describe)
            if isinstance(result, _Failure):
                raise RuntimeError(f"a masks worker failed:\n{result.text}")
            done[busy.pop(worker)] = result
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
        if code == -signal.SIGKILL:
            how += " (the out-of-memory killer sends this signal too)"
        raise WorkerDied(f"a worker process {how} while making the masks of {describe(self.current[worker])}; "
                         f"nothing was written to the output folder")

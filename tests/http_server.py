"""A local HTTP file server with fault injection, for the download tests (not a fixture: conftest is shared).

Serves files under ``root`` on 127.0.0.1 at a free port. Set the public attributes between requests to
inject faults; every request is counted per path, its Range header kept, and the peak number of
requests in flight tracked.
"""

from __future__ import annotations

import collections
import re
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class FaultyFileServer:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.honour_range = True  # False: ignore Range and always answer 200 with the whole file
        self.cut_after: int | None = None  # send this many body bytes, then close (Content-Length full)...
        self.cut_first = 0  # ...for this many requests
        self.stall_after: int | None = None  # send this many body bytes, then hang until the server stops
        self.trickle: float | None = None  # send the body one byte at a time, this many seconds apart
        self.status_for: dict[str, int] = {}  # path -> error status to answer with
        self.latency = 0.0  # seconds of sleep before each answer
        self.send_length = True  # False: no Content-Length; the body ends when the connection closes
        self.counts: collections.Counter[str] = collections.Counter()
        self.ranges: list[tuple[str, str | None]] = []  # (path, Range header) in arrival order
        self.max_in_flight = 0
        self._in_flight = 0
        self._cuts_done = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd = _Server(("127.0.0.1", 0), _make_handler(self))
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        # a short poll interval keeps shutdown (and so each test) fast
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.01,), daemon=True)

    def __enter__(self) -> FaultyFileServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()  # releases stalled handlers
        self._httpd.shutdown()
        self._httpd.server_close()

    def _take_cut(self) -> bool:
        with self._lock:
            if self.cut_after is None or self._cuts_done >= self.cut_first:
                return False
            self._cuts_done += 1
            return True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default 5 drops connections when 16 clients arrive at once


def _make_handler(server: FaultyFileServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
            pass

        def do_GET(self) -> None:
            path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
            with server._lock:
                server.counts[path] += 1
                server.ranges.append((path, self.headers.get("Range")))
                server._in_flight += 1
                server.max_in_flight = max(server.max_in_flight, server._in_flight)
            try:
                time.sleep(server.latency)
                self._answer(path)
            finally:
                with server._lock:
                    server._in_flight -= 1

        def _answer(self, path: str) -> None:
            file = server.root / path.lstrip("/")
            if path in server.status_for:
                self.send_error(server.status_for[path])
                return
            if not file.is_file():
                self.send_error(404)
                return
            data = file.read_bytes()
            match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
            start = int(match.group(1)) if match and server.honour_range else 0
            if start >= len(data) and match and server.honour_range:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206 if start else 200)
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            body = data[start:]
            if server.send_length:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if server._take_cut():
                self.wfile.write(body[: server.cut_after])
            elif server.trickle is not None:
                for k in range(len(body)):
                    self.wfile.write(body[k : k + 1])
                    self.wfile.flush()
                    if server._stopping.wait(server.trickle):
                        break
            elif server.stall_after is not None:
                self.wfile.write(body[: server.stall_after])
                self.wfile.flush()
                server._stopping.wait()
            else:
                self.wfile.write(body)
            self.close_connection = True

    return Handler

"""Time download_subset with a pool of connections against one connection at a time, same code path.

Serves a local COCO-layout mirror on 127.0.0.1 with a fixed latency per request (standing in for the
round trip to images.cocodataset.org), built from the real images in /work/shared/data/coco2017-val-mini
when they are there, from synthetic JPEGs otherwise.

    .venv/bin/python benchmarks/bench_subset_download.py [--images N] [--latency-ms 50] [--workers 16]
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import shutil
import tempfile
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np

from cocoseg.acquire.coco_http import download_subset

REAL = Path("/work/shared/data/coco2017-val-mini")
SPLIT = "val2017"


def build_mirror(www: Path, n_images: int) -> tuple[dict, str]:
    """Fill ``www/val2017`` and return (instances JSON, a line saying where the images came from)."""
    (www / SPLIT).mkdir(parents=True)
    real_images = sorted((REAL / SPLIT).glob("*.jpg")) if REAL.exists() else []
    if len(real_images) >= n_images:
        for path in real_images:
            shutil.copy(path, www / SPLIT / path.name)
        annotations = json.loads((REAL / "annotations" / f"instances_{SPLIT}.json").read_text())
        source = f"real COCO images from {REAL}"
    else:
        rng = np.random.default_rng(0)
        ramp = np.linspace(0, 255, 640, dtype=np.float32)[None, :, None]
        images = []
        for i in range(1, n_images + 1):
            # smooth ramp plus mild noise: JPEGs of roughly real-photo size (~100 KB at 640x480)
            pixels = np.clip(ramp + rng.normal(0, 12, (480, 640, 3)), 0, 255).astype(np.uint8)
            name = f"{i:012d}.jpg"
            (www / SPLIT / name).write_bytes(cv2.imencode(".jpg", pixels)[1].tobytes())
            coco_url = f"http://images.cocodataset.org/{SPLIT}/{name}"
            images.append({"id": i, "file_name": name, "coco_url": coco_url})
        annotations = {"images": images, "annotations": [], "categories": [], "info": {}, "licenses": []}
        source = "synthetic 640x480 JPEGs"
    return annotations, source


def serve(www: Path, latency_s: float) -> ThreadingHTTPServer:
    class Handler(SimpleHTTPRequestHandler):
        def do_GET(self) -> None:
            time.sleep(latency_s)
            super().do_GET()

        def log_message(self, format: str, *args: object) -> None:
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 256  # the default 5 drops connections when many workers connect at once

    server = Server(("127.0.0.1", 0), functools.partial(Handler, directory=str(www)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def time_subset(url: str, raw: Path, annotations: dict, n_images: int, workers: int) -> float:
    start = time.perf_counter()
    result = download_subset(url, SPLIT, raw, annotations, n_images, 0, None, workers, progress=False)
    elapsed = time.perf_counter() - start
    if result.fetched != n_images:
        raise SystemExit(f"expected {n_images} fetched images, got {result}")
    return elapsed


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--latency-ms", type=float, default=50)
    parser.add_argument("--workers", type=int, default=16)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    with tempfile.TemporaryDirectory() as tmp:
        www = Path(tmp) / "www"
        annotations, source = build_mirror(www, args.images)
        server = serve(www, args.latency_ms / 1000)
        url = f"http://127.0.0.1:{server.server_address[1]}"
        try:
            parallel = time_subset(url, Path(tmp) / "parallel", annotations, args.images, args.workers)
            sequential = time_subset(url, Path(tmp) / "sequential", annotations, args.images, 1)
        finally:
            server.shutdown()
            server.server_close()
        size_mb = sum(p.stat().st_size for p in (Path(tmp) / "parallel" / SPLIT).iterdir()) / 1e6

    print(f"{args.images} images ({size_mb:.1f} MB, {source}), {args.latency_ms:g} ms latency per request")
    print(f"parallel   (workers={args.workers}): {parallel:6.2f} s  {args.images / parallel:7.1f} images/s")
    print(f"sequential (workers=1): {sequential:6.2f} s  {args.images / sequential:7.1f} images/s")
    print(f"speed-up: {sequential / parallel:.1f}x")


if __name__ == "__main__":
    main()

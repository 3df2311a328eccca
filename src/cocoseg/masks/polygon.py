"""Rasterise a polygon exactly as pycocotools does, at a cost set by the image, not by the coordinates.

pycocotools' ``rleFrPoly`` walks every edge at 5x resolution, storing one point per step, so its time
and memory grow with the perimeter: 47 s and 11 GB for a coordinate of 1e8, and past 2**31 / 5 its
``int`` arithmetic overflows and it segfaults. Yet the mask depends only on the steps where an edge
crosses one of the ``width`` sample columns (upsampled x = 5n + 2): at each such crossing it records
the lower of the two points' y, scaled back and clamped to [0, height], and every pixel whose
column-major index has an odd number of recorded points at or before it is inside.

``polygon_counts`` computes exactly those crossings in closed form, edge by edge, with the same
double arithmetic as the C code, and builds the same run lengths. Tests check it against pycocotools
on random and degenerate polygons wherever pycocotools can run; beyond that, it gives the result
pycocotools would give with 64-bit integers.
"""

from __future__ import annotations

import numpy as np

_SCALE = 5  # pycocotools' upsampling factor


def polygon_counts(poly: list[float], height: int, width: int) -> list[int]:
    """Uncompressed RLE counts (column-major) of one polygon ``[x0, y0, x1, y1, ...]``."""
    xy = np.asarray(poly, np.float64).reshape(-1, 2)
    # (int)(scale * v + .5): C truncates toward zero
    pts = np.trunc(_SCALE * xy + 0.5).astype(np.int64)
    pts = np.concatenate([pts, pts[:1]])
    columns: list[np.ndarray] = []
    rows: list[np.ndarray] = []
    for j in range(len(pts) - 1):
        n, v = _edge_crossings(int(pts[j, 0]), int(pts[j + 1, 0]), int(pts[j, 1]), int(pts[j + 1, 1]), width)
        columns.append(n)
        rows.append(v)
    n = np.concatenate(columns) if columns else np.zeros(0, np.int64)
    v = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    yd = np.ceil(np.clip((v + 0.5) / _SCALE - 0.5, 0, height)).astype(np.int64)
    return _counts_from_points(n * height + yd, height * width)


def _edge_crossings(xs: int, xe: int, ys: int, ye: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """For one upsampled edge: the sample columns n it crosses and the lower y of each crossing step."""
    dx, dy = abs(xe - xs), abs(ye - ys)
    if dx == 0 and dy == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if (dx >= dy and xs > xe) or (dx < dy and ys > ye):  # pycocotools walks from the lower end
        xs, xe, ys, ye = xe, xs, ye, ys
    lo_u, hi_u = min(xs, xe), max(xs, xe)
    # columns n whose step 5n + 2 -> 5n + 3 lies on the edge: both u values within [lo_u, hi_u]
    first = max(0, -((2 - lo_u) // _SCALE))  # ceil((lo_u - 2) / 5)
    last = min(width - 1, (hi_u - 3) // _SCALE)
    if last < first:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    n = np.arange(first, last + 1, dtype=np.int64)
    c = _SCALE * n + 2
    if dx >= dy:  # u = xs + t for t = 0..dx; v = (int)(ys + s * t + .5)
        s = (ye - ys) / dx
        t = (c - xs).astype(np.float64)
        v0 = np.trunc(ys + s * t + 0.5)
        v1 = np.trunc(ys + s * (t + 1) + 0.5)
        return n, np.minimum(v0, v1).astype(np.int64)
    # steep edge: v = ys + t for t = 0..dy; u = (int)(xs + s * t + .5) moves by at most 1 per step
    s = (xe - xs) / dy
    return n, ys + _first_step_past(xs, s, dy, c) - 1


def _first_step_past(xs: int, s: float, dy: int, c: np.ndarray) -> np.ndarray:
    """For each c, the first t in [1, dy] where u(t) has left c for c + 1 (u rising) or c (u falling)."""
    rising = s > 0
    guess = np.floor((c + 0.5 - xs) / s).astype(np.int64)  # where xs + s t + .5 reaches c + 1
    window = guess[:, None] + np.arange(-3, 5)[None, :]  # the rounding error of the guess is below 1
    window = np.clip(window, 1, dy)
    u = np.trunc(xs + s * window.astype(np.float64) + 0.5)
    past = u >= c[:, None] + 1 if rising else u <= c[:, None]
    return window[np.arange(len(c)), np.argmax(past, axis=1)]


def _counts_from_points(positions: np.ndarray, pixels: int) -> list[int]:
    """Run lengths from toggle positions: a position listed an even number of times cancels out."""
    positions = positions[positions < pixels]
    unique, repeats = np.unique(positions, return_counts=True)
    toggles = unique[repeats % 2 == 1]
    edges = np.concatenate([[0], toggles, [pixels]])
    return np.diff(edges).tolist()

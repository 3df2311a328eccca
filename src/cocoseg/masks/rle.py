"""Decode COCO compressed RLE strings over their tight boxes, bit-exact with ``pycocotools.mask.decode``.

pycocotools decodes into a full H x W array one pixel at a time, so a 40x40 object in a 640x480
image costs as much as a full-frame one. Here the compressed strings (pycocotools' ``rleFrString``
format) are parsed with numpy and only the columns of each object's box are expanded: the cost
follows the object's size. All the strings of one image are parsed together, in one pass of array
operations, because per-call overhead, not arithmetic, dominates for COCO-sized strings. Tests check
equality with pycocotools on random masks and on every real COCO annotation at hand.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

Box = tuple[int, int, int, int]  # y0, y1, x0, x1, half-open
_DIGITS = bytes(range(48, 48 + 64))  # each character carries 6 bits: value = byte - 48
_MAX_CHARS = 12  # 60 bits: more than any image has pixels; longer values are corrupt, not just big


def decode_boxes(counts: Sequence[bytes], height: int, width: int) -> list[tuple[np.ndarray, Box, int] | str]:
    """Decode compressed RLE strings of one ``height`` x ``width`` image.

    Each result is ``(pixels, box, area)``: the (y1 - y0, x1 - x0) uint8 mask inside the tight box
    ``(y0, y1, x0, x1)`` and the pixel count (an empty mask: a (0, 0) array and box (0, 0, 0, 0)),
    or, for a string that is not a valid RLE of this image, the reason as a string.
    """
    results: list = [_string_problem(s) for s in counts]
    good = [i for i, r in enumerate(results) if r is None]
    if good:
        runs = _parse([counts[i] for i in good])
        problems = _run_problems(runs, height * width)
        if any(problems):  # rare: decode again without the strings that do not add up
            keep = [i for i, p in zip(good, problems, strict=False) if p is None]
            for i, p in zip(good, problems, strict=False):
                results[i] = p
            for i, r in zip(
                keep, decode_boxes([counts[i] for i in keep], height, width) if keep else [], strict=False
            ):
                results[i] = r
            return results
        for i, r in zip(good, _expand(runs, height), strict=False):
            results[i] = r
    return results


def _string_problem(s: bytes) -> str | None:
    if not s:
        return "empty counts string"
    if s.translate(None, _DIGITS):
        return "counts string has characters outside the RLE alphabet"
    if (s[-1] - 48) & 0x20:
        return "counts string ends in the middle of a value"
    return None


@dataclass(frozen=True)
class _Runs:
    """The runs of several strings, concatenated; string j owns the runs start[j]:stop[j]."""

    lengths: np.ndarray  # run lengths, alternately 0s and 1s, in column-major pixel order
    start: np.ndarray
    stop: np.ndarray
    owner: np.ndarray  # the string of each run
    index: np.ndarray  # the position of each run in its string: odd positions are runs of 1s
    end: np.ndarray  # the pixel after each run
    too_long: np.ndarray  # per string: a value of more than _MAX_CHARS characters


def _parse(strings: list[bytes]) -> _Runs:
    """The runs of strings that passed ``_string_problem``, read as pycocotools' rleFrString reads them."""
    c = np.frombuffer(b"".join(strings), np.uint8).astype(np.int64) - 48
    last = np.flatnonzero((c & 0x20) == 0)  # the last character of each value ("more" bit clear)
    first = np.empty_like(last)
    first[0], first[1:] = 0, last[:-1] + 1
    chars = last - first + 1
    shift = 5 * (np.arange(c.size) - np.repeat(first, chars))  # 5 bits per character, low bits first
    values = np.add.reduceat((c & 0x1F) << np.minimum(shift, 60), first)
    # Sign extension: a value whose top bit (that of its last character) is set is negative. Within 60
    # bits (longer values are corrupt, see too_long) subtracting 2**bits equals setting every higher bit.
    negative = (c[last] & 0x10) != 0
    values -= negative * np.left_shift(1, np.minimum(5 * chars, 60))

    stop = np.searchsorted(last, np.cumsum([len(s) for s in strings]) - 1, side="right")
    start = np.concatenate([[0], stop[:-1]])
    owner = np.repeat(np.arange(start.size), stop - start)
    index = np.arange(values.size) - start[owner]
    # From the fourth run on, each value is the difference to the run two before it: the runs at odd
    # positions from 1 on, and at even positions from 2 on, are running sums of their values. With run
    # 0 left out, the sum of the values up to m of m's own parity is (all + sign * alternating) / 2,
    # where alternating weighs the values by sign = (-1)**position: two running sums for both chains.
    sign = 1 - 2 * (index & 1)
    chained = np.where(index > 0, values, 0)
    lengths = (
        _segment_cumsum(chained, start, owner) + sign * _segment_cumsum(sign * chained, start, owner)
    ) // 2
    lengths[start] = values[start]
    end = _segment_cumsum(lengths, start, owner)
    return _Runs(lengths, start, stop, owner, index, end, np.maximum.reduceat(chars, start) > _MAX_CHARS)


def _segment_cumsum(values: np.ndarray, start: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """Running sums that restart at each string's first run."""
    sums = np.cumsum(values)
    before = np.where(start > 0, sums[start - 1], 0)
    return sums - before[owner]


def _run_problems(runs: _Runs, pixels: int) -> list[str | None]:
    negative = np.minimum.reduceat(runs.lengths, runs.start) < 0
    covered = runs.end[runs.stop - 1]
    problems: list[str | None] = []
    for j in range(runs.start.size):
        if runs.too_long[j] or negative[j]:
            problems.append("a run length is negative or too large")
        elif covered[j] != pixels:
            problems.append(f"runs cover {covered[j]} pixels, the image has {pixels}")
        else:
            problems.append(None)
    return problems


def _expand(runs: _Runs, height: int) -> list[tuple[np.ndarray, Box, int]]:
    """Each string's mask inside its tight box, from runs that add up to the image."""
    n = runs.start.size
    ones = (runs.index & 1) == 1  # runs alternate 0s and 1s, starting with 0s
    area = np.bincount(runs.owner, np.where(ones, runs.lengths, 0), minlength=n).astype(np.int64)
    # The box of each string: columns from its first and last 1-pixel; rows from every 1-run, where
    # a run that crosses into the next column covers the bottom and the top row.
    kept = np.flatnonzero(ones & (runs.lengths > 0))
    owner = runs.owner[kept]
    col_first, row_first = np.divmod(runs.end[kept] - runs.lengths[kept], height)
    col_last, row_last = np.divmod(runs.end[kept] - 1, height)
    crosses = col_last > col_first
    row_first[crosses], row_last[crosses] = 0, height - 1
    y0, y1, x0, x1 = (np.zeros(n, np.int64) for _ in range(4))
    if kept.size:
        group = np.flatnonzero(np.concatenate([[True], owner[1:] != owner[:-1]]))
        has = owner[group]
        x0[has] = col_first[group]
        x1[has] = col_last[np.concatenate([group[1:], [kept.size]]) - 1] + 1
        y0[has] = np.minimum.reduceat(row_first, group)
        y1[has] = np.maximum.reduceat(row_last, group) + 1
    # Expand every box's columns in one go: clip each run to its string's columns, repeat 0s and 1s.
    lo, hi = (x0 * height)[runs.owner], (x1 * height)[runs.owner]
    clipped = np.maximum(np.minimum(runs.end, hi) - np.maximum(runs.end - runs.lengths, lo), 0)
    bits = np.repeat(ones.view(np.uint8), clipped)
    offsets = np.concatenate([[0], np.cumsum((x1 - x0) * height)]).tolist()
    results = []
    for j, (top, bottom, left, right, count) in enumerate(
        zip(y0.tolist(), y1.tolist(), x0.tolist(), x1.tolist(), area.tolist(), strict=False)
    ):
        columns = bits[offsets[j] : offsets[j + 1]].reshape(right - left, height)[:, top:bottom]
        # rows of the box, from its columns: OpenCV's transpose is about 5x numpy's strided copy here
        pixels = cv2.transpose(columns) if columns.size else np.zeros((bottom - top, right - left), np.uint8)
        results.append((pixels, (top, bottom, left, right), count))
    return results

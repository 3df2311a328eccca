"""The confusion matrix picture: legible at 80 classes, absent classes left out, stable bytes."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from cocoseg.evaluation.plots import present_classes, write_confusion_plot


def test_absent_classes_are_left_out() -> None:
    cm = np.array([[5, 0, 1], [0, 0, 0], [2, 0, 3]])
    assert present_classes(cm).tolist() == [0, 2]


def test_eighty_classes_fit_a_screen(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 81
    cm = rng.integers(0, 50, (n, n)) * (rng.random((n, n)) < 0.1) + np.diag(rng.integers(100, 1000, n))
    names = ["background"] + [f"class {k}" for k in range(1, n)]
    write_confusion_plot(tmp_path / "a.png", cm, names)
    height, width = cv2.imread(str(tmp_path / "a.png")).shape[:2]
    assert width < 1800 and height < 1800  # was 4,500 pixels wide at 0.55 inch a class


def test_few_classes_keep_readable_cells_and_bytes_are_stable(tmp_path: Path) -> None:
    cm = np.array([[900, 20, 5], [10, 80, 3], [4, 2, 60]])
    for name in ("c.png", "d.png"):
        write_confusion_plot(tmp_path / name, cm, ["background", "square", "disk"])
    height, width = cv2.imread(str(tmp_path / "c.png")).shape[:2]
    assert 300 < width < 700 and 250 < height < 600
    assert (tmp_path / "c.png").read_bytes() == (tmp_path / "d.png").read_bytes()


def test_a_confusion_plot_of_many_classes_draws_the_most_frequent(tmp_path: Path) -> None:
    from cocoseg.evaluation.plots import PLOTTED_MAX

    k = 1204
    cm = np.zeros((k, k), np.int64)
    cm[np.arange(k), np.arange(k)] = np.arange(k) + 1  # every class present, the later ones more frequent
    write_confusion_plot(tmp_path / "c.png", cm, [f"c{i}" for i in range(k)])
    few = np.zeros((PLOTTED_MAX, PLOTTED_MAX), np.int64)
    np.fill_diagonal(few, 1)
    write_confusion_plot(tmp_path / "few.png", few, [f"c{i}" for i in range(PLOTTED_MAX)])
    assert cv2.imread(str(tmp_path / "c.png")).shape == cv2.imread(str(tmp_path / "few.png")).shape  # capped

"""Figures for DVC image plots."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from cocoseg.core.files import write_bytes

CELL_TEXT_MAX = 25  # above this many classes the cells are too small for numbers
PLOTTED_MAX = 100  # classes drawn at most (the most frequent in the truth): LVIS's 1,203 would be 19k pixels


def present_classes(cm: np.ndarray) -> np.ndarray:
    """Indices of classes in the truth or the prediction: at 80 COCO classes most val sets lack some."""
    return np.flatnonzero(cm.sum(axis=0) + cm.sum(axis=1))


def write_confusion_plot(path: Path, cm: np.ndarray, classes: list[str]) -> None:
    """Row-normalised confusion matrix (rows: truth, columns: prediction) as a PNG heatmap.

    Up to 25 classes each cell shows its share; beyond, cells shrink to 0.16 inch and lose their
    numbers, so 80 classes fit about 1,500 pixels and stay readable by colour. Classes absent from
    both truth and prediction are left out; of more than PLOTTED_MAX, the most frequent in the truth are
    drawn.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keep = present_classes(cm)
    title = f"{len(keep)} classes present"
    if len(keep) > PLOTTED_MAX:
        keep = np.sort(keep[np.argsort(-cm.sum(axis=1)[keep], kind="stable")[:PLOTTED_MAX]])
        title = f"the {PLOTTED_MAX} most frequent of {title}"
    cm, names = cm[np.ix_(keep, keep)], [classes[k] for k in keep]
    with np.errstate(invalid="ignore", divide="ignore"):
        norm = cm / cm.sum(axis=1, keepdims=True)
    n, small = len(names), len(names) > CELL_TEXT_MAX
    cell, font = (0.16, 6) if small else (0.55, 9)
    fig, ax = plt.subplots(figsize=(3.6 + cell * n, 2.0 + cell * n), dpi=100)
    image = ax.imshow(np.nan_to_num(norm), cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    ax.set_xticks(
        range(n), names, rotation=90 if small else 45, ha="center" if small else "right", fontsize=font
    )
    ax.set_yticks(range(n), names, fontsize=font)
    ax.set_xlabel("predicted")
    ax.set_ylabel("ground truth")
    ax.set_title(f"rows normalised; {title}", fontsize=9)
    if not small:
        for i, j in zip(*np.nonzero(cm), strict=False):
            ax.text(
                j,
                i,
                f"{norm[i, j]:.2f}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if norm[i, j] > 0.5 else "black",
            )
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})  # no version string: stable bytes
    plt.close(fig)
    write_bytes(path, buf.getvalue())

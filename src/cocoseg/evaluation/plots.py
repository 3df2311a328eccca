"""Figures for DVC image plots."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from cocoseg.core.files import write_bytes


def write_confusion_plot(path: Path, cm: np.ndarray, classes: list[str]) -> None:
    """Row-normalised confusion matrix (rows: truth, columns: prediction) as a PNG heatmap."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with np.errstate(invalid="ignore", divide="ignore"):
        norm = cm / cm.sum(axis=1, keepdims=True)
    n = len(classes)
    fig, ax = plt.subplots(figsize=(1.2 + 0.55 * n, 1.0 + 0.5 * n), dpi=100)
    ax.imshow(np.nan_to_num(norm), cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), classes, rotation=45, ha="right")
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("ground truth")
    if n <= 25:
        for i in range(n):
            for j in range(n):
                if not np.isnan(norm[i, j]) and cm[i, j]:
                    ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=7,
                            color="white" if norm[i, j] > 0.5 else "black")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})  # no version string: stable bytes
    plt.close(fig)
    write_bytes(path, buf.getvalue())

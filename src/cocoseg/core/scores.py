"""The names of the segmentation scores, once: training logs them as ``train/<name>`` and ``val/<name>``,
evaluate writes them to metrics.json, compare tabulates them and the progress lines show them.

Each maps to its column header in compare.md. Adding a score means an entry here and its computation in
evaluation/metrics.py (numpy) and training/module.py (torchmetrics).
"""

from __future__ import annotations

SCORES: dict[str, str] = {"miou": "mIoU", "dice": "mean Dice", "pixel_accuracy": "pixel acc."}

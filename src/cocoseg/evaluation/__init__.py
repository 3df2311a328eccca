"""Evaluation: confusion-matrix metrics, plots, the per-model scores, the comparison table and predict."""

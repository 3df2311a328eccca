"""The LightningModule's metric updates under Lightning's deterministic mode."""

import torch

from cocoseg.training.module import build_metrics, exact_counting


def test_exact_counting_matches_native_counts_and_restores_deterministic_mode(monkeypatch) -> None:
    torch.manual_seed(0)
    pred = torch.randint(0, 5, (2, 16, 16))
    target = torch.randint(0, 5, (2, 16, 16))
    target[:, :3] = 255
    reference = build_metrics(5, "val/")
    reference.update(pred, target)

    fallback_used = []
    real_eq = torch.eq
    monkeypatch.setattr(torch, "eq", lambda *a, **k: fallback_used.append(1) or real_eq(*a, **k))
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        metrics = build_metrics(5, "val/")
        with exact_counting():
            assert not torch.are_deterministic_algorithms_enabled()
            metrics.update(pred, target)
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()
    finally:
        torch.use_deterministic_algorithms(False)
    assert not fallback_used  # the (pixels x classes^2) comparison fallback was never taken
    assert {k: float(v) for k, v in metrics.compute().items()} == {k: float(v) for k, v in reference.compute().items()}

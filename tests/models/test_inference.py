"""The one inference path: the class map of upsampled logits, one class at a time, equals the full argmax."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cocoseg.models.inference import upsampled_argmax


@pytest.mark.parametrize(("classes", "low", "high"), [(3, (6, 8), (48, 64)), (21, (40, 50), (333, 517)),
                                                        (81, (16, 16), (101, 37)), (300, (5, 7), (20, 30))])
def test_upsampled_argmax_equals_argmax_of_upsampled_logits(classes: int, low: tuple[int, int],
                                                            high: tuple[int, int]) -> None:
    torch.manual_seed(classes)
    logits = torch.randn(classes, *low)
    full = F.interpolate(logits[None], size=high, mode="bilinear", align_corners=False).argmax(1)[0]
    result = upsampled_argmax(logits, high)
    assert result.dtype == torch.int64 and result.shape == high
    assert torch.equal(result, full)


def test_ties_keep_the_lower_class_id() -> None:
    logits = torch.zeros(4, 3, 3)
    logits[2] = 1.0
    logits[3] = 1.0  # classes 2 and 3 tie everywhere: argmax says 2
    assert torch.equal(upsampled_argmax(logits, (7, 5)), torch.full((7, 5), 2))

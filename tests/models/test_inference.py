"""The one inference path: its class maps equal torch's own argmax of the logits, upsampled or not."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cocoseg.models.inference import _first_maximum_torch, argmax_classes, nearest_argmax, upsampled_argmax


@pytest.mark.parametrize(
    ("classes", "low", "high"),
    [(3, (6, 8), (48, 64)), (21, (40, 50), (333, 517)), (81, (16, 16), (101, 37)), (300, (5, 7), (20, 30))],
)
def test_upsampled_argmax_equals_argmax_of_upsampled_logits(
    classes: int, low: tuple[int, int], high: tuple[int, int]
) -> None:
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


@pytest.mark.parametrize(
    ("classes", "field", "low", "high"),
    [(81, (8, 8), (64, 64), (480, 640)), (21, (5, 7), (96, 80), (61, 200))],
)
def test_smooth_logits_too(
    classes: int, field: tuple[int, int], low: tuple[int, int], high: tuple[int, int]
) -> None:
    """Logits as a segmentation head gives them: a coarse field upsampled, so large regions and few
    boundaries (each a line of cells whose corners disagree)."""
    torch.manual_seed(0)
    coarse = 3 * torch.randn(1, classes, *field)
    logits = F.interpolate(coarse, size=low, mode="bilinear", align_corners=False)[0]
    full = F.interpolate(logits[None], size=high, mode="bilinear", align_corners=False).argmax(1)[0]
    assert torch.equal(upsampled_argmax(logits, high), full)


@pytest.mark.parametrize("classes", [1, 3, 81, 300])
def test_argmax_classes_equals_torch_argmax_with_ties_and_nan(classes: int) -> None:
    torch.manual_seed(classes)
    logits = torch.randint(0, 3, (classes, 19, 23)).float()  # many ties: the first class wins
    logits[classes // 2, 3, 4] = float("nan")  # argmax says the NaN's class
    logits[:, 5, 6] = float("nan")
    assert torch.equal(argmax_classes(logits, rows=4), logits.argmax(0))
    assert torch.equal(argmax_classes(logits.double(), rows=4), logits.argmax(0))


def test_the_torch_steps_that_other_devices_take_agree() -> None:
    torch.manual_seed(2)
    logits = torch.randint(0, 3, (300, 9, 11)).float()
    assert torch.equal(300 - _first_maximum_torch(logits, rows=4).long(), logits.argmax(0))
    assert torch.equal(argmax_classes(logits.half()), logits.half().argmax(0))  # not numpy's: torch's


@pytest.mark.parametrize(("low", "high"), [((16, 16), (101, 37)), ((64, 48), (48, 64)), ((5, 7), (5, 7))])
def test_nearest_argmax_is_the_argmax_then_nearest_exact(low: tuple[int, int], high: tuple[int, int]) -> None:
    torch.manual_seed(1)
    logits = torch.randn(6, *low)
    expected = F.interpolate(logits.argmax(0)[None, None].float(), size=high, mode="nearest-exact")[0, 0]
    assert torch.equal(nearest_argmax(logits, high), expected.long())

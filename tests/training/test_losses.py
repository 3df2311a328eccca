"""The fused CE + Dice loss against the same loss written with plain autograd ops."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cocoseg.training.losses import cross_entropy_dice

VOID = 255


def reference(
    logits: torch.Tensor, target: torch.Tensor, dice_weight: float, eps: float = 1e-6
) -> torch.Tensor:
    """CE + dice_weight * (1 - mean Dice over present classes), through a one-hot and autograd."""
    valid = (target != VOID).unsqueeze(1)
    probs = logits.softmax(1) * valid
    one_hot = torch.zeros_like(probs).scatter_(1, target.where(valid.squeeze(1), 0).unsqueeze(1), 1.0) * valid
    dims = (0, 2, 3)
    dice = (2 * (probs * one_hot).sum(dims) + eps) / (probs.sum(dims) + one_hot.sum(dims) + eps)
    present = one_hot.sum(dims) > 0
    return F.cross_entropy(logits, target, ignore_index=VOID) + dice_weight * (1 - dice[present].mean())


def batch(seed: int, shape=(2, 5, 7, 9), void=0.2) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    n, k, h, w = shape
    logits = torch.randn(shape, generator=gen, dtype=torch.float64) * 3
    target = torch.randint(0, k - 1, (n, h, w), generator=gen)  # the last class never occurs
    target[torch.rand(n, h, w, generator=gen) < void] = VOID
    return logits, target


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("dice_weight", [0.0, 0.5, 2.0])
def test_value_and_gradient_match_plain_autograd(seed: int, dice_weight: float) -> None:
    logits, target = batch(seed)
    ours, theirs = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    loss = cross_entropy_dice(ours, target, dice_weight, VOID)
    expected = reference(theirs, target, dice_weight)
    loss.backward()
    expected.backward()
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ours.grad, theirs.grad, rtol=1e-10, atol=1e-12)


def test_gradcheck_with_a_scaled_output() -> None:
    logits, target = batch(7, shape=(1, 3, 4, 5))
    assert torch.autograd.gradcheck(
        lambda z: 3.0 * cross_entropy_dice(z, target, 0.7, VOID), (logits.requires_grad_(),)
    )


def test_void_pixels_get_no_gradient_and_an_all_void_batch_gives_zero() -> None:
    logits, target = batch(1, void=0.5)
    logits.requires_grad_()
    cross_entropy_dice(logits, target, 0.5, VOID).backward()
    assert logits.grad.permute(1, 0, 2, 3)[:, target == VOID].abs().max() == 0
    assert logits.grad[(target != VOID).unsqueeze(1).expand_as(logits)].abs().max() > 0
    empty = torch.full_like(target, VOID)
    z = logits.detach().requires_grad_()
    loss = cross_entropy_dice(z, empty, 0.5, VOID)
    loss.backward()
    assert loss.item() == 0 and z.grad.abs().max() == 0


def test_float32_and_bfloat16_logits_under_autocast() -> None:
    logits, target = batch(3)
    expected = reference(logits, target, 0.5)
    z32 = logits.float().requires_grad_()
    assert cross_entropy_dice(z32, target, 0.5, VOID).item() == pytest.approx(expected.item(), rel=1e-5)
    z16 = logits.bfloat16().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = cross_entropy_dice(z16, target, 0.5, VOID)
    assert loss.dtype == torch.float32  # computed in float32 whatever autocast says
    loss.backward()
    assert z16.grad.dtype == torch.bfloat16
    assert loss.item() == pytest.approx(reference(logits.bfloat16().double(), target, 0.5).item(), rel=1e-5)


def test_channels_last_logits_give_the_same_loss_and_a_gradient_in_their_layout() -> None:
    logits, target = batch(5, shape=(2, 6, 8, 10))
    plain = logits.clone().requires_grad_()
    last = logits.clone().contiguous(memory_format=torch.channels_last).requires_grad_()
    expected, loss = cross_entropy_dice(plain, target, 0.5, VOID), cross_entropy_dice(last, target, 0.5, VOID)
    expected.backward()
    loss.backward()
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(last.grad, plain.grad, rtol=1e-10, atol=1e-13)
    assert last.grad.is_contiguous(memory_format=torch.channels_last)

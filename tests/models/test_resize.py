"""The matrix-product backward of bilinear resizing and adaptive pooling equals PyTorch's own."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cocoseg.models.resize import adaptive_avg_pool, bilinear_weights, pool_weights, resize_bilinear

CASES = [  # (input h, w) -> (output h, w)
    ((8, 8), (64, 64)),  # Fast-SCNN's head: 1/8 -> full size
    ((7, 9), (55, 70)),  # odd sizes, ratios that are not whole numbers
    ((1, 1), (5, 3)),  # a pooled 1x1 map spread over the grid
    ((6, 5), (6, 5)),  # same size
    ((10, 12), (4, 5)),  # shrinking
]


def stock(kind: str):
    if kind == "bilinear":
        return lambda x, size: F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    return F.adaptive_avg_pool2d


OURS = {"bilinear": resize_bilinear, "pool": adaptive_avg_pool}


@pytest.mark.parametrize("kind", ["bilinear", "pool"])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize(("size_in", "size_out"), CASES)
def test_forward_and_gradient_equal_pytorchs(
    kind: str, channels_last: bool, size_in: tuple[int, int], size_out: tuple[int, int]
) -> None:
    if kind == "pool" and (size_out[0] > size_in[0] or size_out[1] > size_in[1]):
        size_in, size_out = size_out, size_in  # pooling shrinks
    torch.manual_seed(0)
    x = torch.randn(2, 3, *size_in, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    expected = stock(kind)(x, size_out)
    got = OURS[kind](x, size_out)
    assert torch.equal(got, expected)  # the forward pass is PyTorch's own
    grad = torch.randn_like(expected)
    (want,) = torch.autograd.grad(expected, x, grad)
    (have,) = torch.autograd.grad(got, x, grad)
    torch.testing.assert_close(have, want, rtol=1e-12, atol=1e-12)
    if channels_last:
        assert have.is_contiguous(memory_format=torch.channels_last)


def test_weights_are_the_linear_maps_pytorch_applies() -> None:
    """Each weight matrix applied to the identity reproduces PyTorch's op on a one-axis signal."""
    for n_in, n_out in [(8, 64), (7, 55), (1, 4), (13, 5)]:
        eye = torch.eye(n_in, dtype=torch.float64).view(
            n_in, 1, n_in, 1
        )  # n_in one-hot signals on the height
        resized = F.interpolate(eye, size=(n_out, 1), mode="bilinear", align_corners=False).view(n_in, n_out)
        torch.testing.assert_close(bilinear_weights(n_in, n_out), resized.t(), rtol=0, atol=1e-15)
        if n_out <= n_in:
            pooled = F.adaptive_avg_pool2d(eye, (n_out, 1)).view(n_in, n_out)
            torch.testing.assert_close(pool_weights(n_in, n_out), pooled.t(), rtol=0, atol=1e-15)


def test_bf16_gradient_keeps_dtype_and_stays_within_two_roundings() -> None:
    """In bf16 the two products each round once: the error stays within two bf16 roundings of the
    largest gradient, and on average within twice that of PyTorch's own CPU kernel (which rounds once)."""
    torch.manual_seed(0)
    x = torch.randn(2, 5, 8, 8).contiguous(memory_format=torch.channels_last)
    grad = torch.randn(2, 5, 64, 64).bfloat16()
    exact = x.bfloat16().double().requires_grad_()  # the same bf16 values, in float64
    F.interpolate(exact, size=(64, 64), mode="bilinear", align_corners=False).backward(grad.double())
    errors = {}
    for name, resize in (("ours", resize_bilinear), ("stock", stock("bilinear"))):
        low = x.bfloat16().requires_grad_()
        resize(low, (64, 64)).backward(grad)
        assert low.grad.dtype == torch.bfloat16 and low.grad.is_contiguous(memory_format=torch.channels_last)
        errors[name] = (low.grad.double() - exact.grad).abs()
    assert errors["ours"].max() <= 2 * 2**-8 * exact.grad.abs().max()
    assert errors["ours"].mean() <= 2 * errors["stock"].mean()


def test_gradcheck() -> None:
    x = torch.randn(1, 2, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: resize_bilinear(t, (7, 9)), (x,))
    assert torch.autograd.gradcheck(lambda t: adaptive_avg_pool(t, (2, 3)), (x,))

"""Fast-SCNN, written from Poudel, Liwicki and Cipolla, "Fast-SCNN: Fast Semantic Segmentation Network"
(BMVC 2019, arXiv:1902.04502): a shared learning-to-downsample stem feeds both a 1/8 high-resolution
branch and a 1/32 global feature extractor (inverted residuals + pyramid pooling), whose outputs a
feature fusion module adds before a light classifier; about 1.1M parameters for 19 classes.

Every resize goes to an explicit target size (never a scale factor), so any input height and width
works, odd sizes included, and the logits always come back at the input's exact H x W. Resizing and
pooling are PyTorch's bilinear interpolation and adaptive average pooling with a backward pass made
of matrix products (``cocoseg.models.resize``): deterministic on CUDA, where PyTorch's own backward
kernels are not, and without their atomic adds on the 81 class maps of the last layer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cocoseg.models.resize import adaptive_avg_pool, resize_bilinear

# Widths and block layout from the paper's Table 1: (channels, blocks, stride of the first block).
_BOTTLENECK_STAGES: tuple[tuple[int, int, int], ...] = ((64, 3, 2), (96, 3, 2), (128, 3, 1))
_EXPANSION = 6  # t in the paper's Table 1 (MobileNetV2 inverted residual)
_PPM_BINS: tuple[int, ...] = (1, 2, 3, 6)
_FUSION_CHANNELS = 128


class ConvBNReLU(nn.Sequential):
    """k x k conv (optionally depthwise) -> BatchNorm -> optional ReLU; padding keeps size at stride 1."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
        dilation: int = 1,
        relu: bool = True,
    ) -> None:
        padding = dilation * (kernel_size - 1) // 2
        layers: list[nn.Module] = [
            # No conv bias: the BatchNorm right after has its own shift.
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class DepthwiseSeparableConv(nn.Sequential):
    """3x3 depthwise conv + 1x1 pointwise conv, each with BN and ReLU (the paper's DSConv)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__(
            ConvBNReLU(in_channels, in_channels, 3, stride, groups=in_channels),
            ConvBNReLU(in_channels, out_channels, 1),
        )


class InvertedResidual(nn.Module):
    """MobileNetV2 bottleneck: 1x1 expand -> 3x3 depthwise (stride s) -> linear 1x1 project.

    The projection has no ReLU (a linear bottleneck); the skip is used only when the shape is unchanged.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int = _EXPANSION) -> None:
        super().__init__()
        hidden = in_channels * expansion
        self.use_skip = stride == 1 and in_channels == out_channels
        self.block = nn.Sequential(
            ConvBNReLU(in_channels, hidden, 1),
            ConvBNReLU(hidden, hidden, 3, stride, groups=hidden),
            ConvBNReLU(hidden, out_channels, 1, relu=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + out if self.use_skip else out


class PyramidPooling(nn.Module):
    """PSPNet pyramid pooling: pool to b x b bins, 1x1 conv to C/4, upsample, concat with input, fuse."""

    def __init__(self, in_channels: int, out_channels: int, bins: tuple[int, ...] = _PPM_BINS) -> None:
        super().__init__()
        self.bins = bins
        branch_channels = in_channels // len(bins)
        self.branches = nn.ModuleList(ConvBNReLU(in_channels, branch_channels, 1) for _ in bins)
        self.fuse = ConvBNReLU(in_channels + branch_channels * len(bins), out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        pooled = [x]
        for bin_size, branch in zip(self.bins, self.branches, strict=False):
            # A tiny input (33x33 gives a 2x2 map here) is smaller than the 3 and 6 bins; adaptive pooling
            # would then just repeat pixels, so cap the grid at the map size: finer than a pixel adds nothing.
            grid = (min(bin_size, height), min(bin_size, width))
            y = branch(adaptive_avg_pool(x, grid))
            pooled.append(resize_bilinear(y, (height, width)))
        return self.fuse(torch.cat(pooled, dim=1))  # (N, 2C, h, w) -> (N, out, h, w)


class FeatureFusion(nn.Module):
    """Add the 1/8 high-res branch to the upsampled 1/32 global features, then ReLU.

    The low-res path uses a dilated depthwise conv (dilation 4, the paper's Table 2) to recover some
    context lost to upsampling; both paths end in a linear 1x1 conv + BN so the sum is balanced.
    """

    def __init__(self, high_channels: int, low_channels: int, out_channels: int) -> None:
        super().__init__()
        self.low_dw = ConvBNReLU(low_channels, low_channels, 3, groups=low_channels, dilation=4)
        self.low_proj = ConvBNReLU(low_channels, out_channels, 1, relu=False)
        self.high_proj = ConvBNReLU(high_channels, out_channels, 1, relu=False)

    def forward(self, high: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        # Resize to the high-res tensor's exact size: for odd inputs 1/32 x 4 != 1/8 exactly.
        low = resize_bilinear(low, high.shape[-2:])
        low = self.low_proj(self.low_dw(low))
        return F.relu(self.high_proj(high) + low)


class FastSCNN(nn.Module):
    """Fast-SCNN semantic segmentation network; ``forward`` returns logits of shape (N, num_classes, H, W).

    Uses BatchNorm throughout, so training needs more than one value per channel in every layer: the
    1x1 pyramid-pooling branch sees one value per image, hence train with batch size >= 2.
    """

    def __init__(self, num_classes: int, in_channels: int = 3, dropout: float = 0.1) -> None:
        super().__init__()
        self.learning_to_downsample = nn.Sequential(
            ConvBNReLU(in_channels, 32, 3, stride=2),
            DepthwiseSeparableConv(32, 48, stride=2),
            DepthwiseSeparableConv(48, 64, stride=2),
        )
        self.global_features = nn.Sequential(*self._build_bottlenecks(64), PyramidPooling(128, 128))
        self.fusion = FeatureFusion(high_channels=64, low_channels=128, out_channels=_FUSION_CHANNELS)
        self.classifier = nn.Sequential(
            DepthwiseSeparableConv(_FUSION_CHANNELS, _FUSION_CHANNELS),
            DepthwiseSeparableConv(_FUSION_CHANNELS, _FUSION_CHANNELS),
            nn.Dropout(dropout),
            nn.Conv2d(_FUSION_CHANNELS, num_classes, 1),
        )
        self._init_weights()

    @staticmethod
    def _build_bottlenecks(in_channels: int) -> list[nn.Module]:
        blocks: list[nn.Module] = []
        for out_channels, repeats, stride in _BOTTLENECK_STAGES:
            for i in range(repeats):
                blocks.append(InvertedResidual(in_channels, out_channels, stride if i == 0 else 1))
                in_channels = out_channels
        return blocks

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        # Near-zero logits at the start give a loss of about ln(num_classes); with the fan-out init the
        # head alone starts near 5-6 for 4 classes and the first steps go to shrinking random confident logits.
        head = self.classifier[-1]
        nn.init.normal_(head.weight, std=0.01)
        nn.init.zeros_(head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        high = self.learning_to_downsample(x)  # (N, 64, ~H/8, ~W/8)
        low = self.global_features(high)  # (N, 128, ~H/32, ~W/32)
        fused = self.fusion(high, low)  # (N, 128, ~H/8, ~W/8)
        logits = self.classifier(fused)  # (N, num_classes, ~H/8, ~W/8)
        return resize_bilinear(logits, size)  # (N, K, H, W)

"""A compact depth-completion network: an RGB branch and a sparse-depth branch, fused
at every scale, and a U-Net decoder that predicts metric depth at 1/4, 1/2 and full
resolution (the coarse outputs feed the multi-scale loss).

Sizes: the encoder has `levels` stride-2 stages with width * 2**i channels (capped at
8 * width); inputs of any size are padded to a multiple of 2**levels and the output
cropped back.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

# Sparse depth enters the network divided by this (metres), so inputs are O(1).
DEPTH_NORM_M = 10.0


@dataclass(frozen=True)
class ModelConfig:
    width: int = 32
    levels: int = 4

    def to_dict(self) -> dict:
        return asdict(self)


def conv_bn_relu(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class ResBlock(nn.Module):
    """Two 3x3 convolutions with a skip; stride 2 halves the resolution."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.body = nn.Sequential(
            conv_bn_relu(in_channels, out_channels, stride),
            nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.skip = (
            nn.Identity()
            if stride == 1 and in_channels == out_channels
            else nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.skip(x))


def encoder_channels(width: int, levels: int) -> list[int]:
    """Channels at each scale: width * 2**i, capped at 8 * width."""
    return [min(width * 2**i, 8 * width) for i in range(levels + 1)]


class FusionEncoder(nn.Module):
    """An RGB branch and, with_depth, a sparse-depth branch (seeing depth / DEPTH_NORM_M
    and the validity mask) of `len(channels) - 1` stride-2 stages, fused at every scale
    by concatenation and a 1x1 convolution. forward -> the skips [(B, channels[i],
    H / (stem_stride * 2**i), W / ...)], finest first."""

    def __init__(self, channels: list[int], stem_stride: int = 1, with_depth: bool = True):
        super().__init__()
        levels = len(channels) - 1
        self.with_depth = with_depth
        self.rgb_stem = conv_bn_relu(3, channels[0], stem_stride)
        self.rgb_down = nn.ModuleList(ResBlock(channels[i], channels[i + 1], 2) for i in range(levels))
        if with_depth:
            self.depth_stem = conv_bn_relu(2, channels[0], stem_stride)
            self.depth_down = nn.ModuleList(ResBlock(channels[i], channels[i + 1], 2) for i in range(levels))
            self.fuse = nn.ModuleList(
                nn.Sequential(nn.Conv2d(2 * c, c, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True))
                for c in channels
            )

    def forward(self, rgb: torch.Tensor, sparse: torch.Tensor) -> list[torch.Tensor]:
        x_rgb = self.rgb_stem(rgb)
        if not self.with_depth:
            skips = [x_rgb]
            for block in self.rgb_down:
                skips.append(block(skips[-1]))
            return skips
        x_depth = self.depth_stem(torch.cat([sparse / DEPTH_NORM_M, (sparse > 0).to(sparse.dtype)], 1))
        skips = [self.fuse[0](torch.cat([x_rgb, x_depth], 1))]
        for rgb_down, depth_down, fuse in zip(self.rgb_down, self.depth_down, self.fuse[1:], strict=True):
            x_rgb, x_depth = rgb_down(x_rgb), depth_down(x_depth)
            skips.append(fuse(torch.cat([x_rgb, x_depth], 1)))
        return skips


class DepthCompletionNet(nn.Module):
    def __init__(self, config: ModelConfig = ModelConfig()):
        super().__init__()
        self.config = config
        channels = encoder_channels(config.width, config.levels)
        self.encoder = FusionEncoder(channels)
        self.up = nn.ModuleList(
            ResBlock(channels[i + 1] + channels[i], channels[i]) for i in reversed(range(config.levels))
        )
        # Depth heads at full, 1/2 and 1/4 resolution.
        self.heads = nn.ModuleList(nn.Conv2d(channels[i], 1, 3, 1, 1) for i in range(min(3, config.levels + 1)))

    @property
    def deepest_stride(self) -> int:
        """The deepest features are the (padded) input / this, per side."""
        return 2**self.config.levels

    def forward(self, rgb: torch.Tensor, sparse: torch.Tensor) -> list[torch.Tensor]:
        """rgb (B, 3, H, W) in 0..1, sparse (B, 1, H, W) metres (0 = none) -> predicted
        depth in metres, [(B, 1, H, W), (B, 1, H/2, W/2), (B, 1, H/4, W/4)] (sizes
        rounded up for odd inputs); only the first in eval mode."""
        height, width = rgb.shape[-2:]
        multiple = self.deepest_stride
        pad = (0, -width % multiple, 0, -height % multiple)
        rgb = F.pad(rgb, pad, mode="replicate")
        sparse = F.pad(sparse, pad)
        skips = self.encoder(rgb, sparse)
        x = skips.pop()
        outputs = []
        for block in self.up:
            skip = skips.pop()
            x = block(
                torch.cat([F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False), skip], 1)
            )
            scale = len(skips)
            if scale < len(self.heads) and (self.training or scale == 0):
                out_h, out_w = -(-height // 2**scale), -(-width // 2**scale)
                depth = F.softplus(self.heads[scale](x).float()) * DEPTH_NORM_M + 1e-3
                outputs.append(depth[..., :out_h, :out_w])
        return outputs[::-1]


def parameter_count(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())

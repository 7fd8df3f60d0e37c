"""A depth-bin head (hybrid regression, AdaBins-style).

Per image, N metric bin centres come from global features: positive widths normalised
to sum to 1 -> edges (cumulative sums) spread over [min_depth, max_depth] -> centres
(midpoints of neighbouring edges), so centres are strictly increasing and inside the
range by construction. Per pixel, a softmax over the N bins; depth = sum p_i * c_i.
The centres are learnt from ground truth with a chamfer term between the centres and
the image's valid ground-truth depths.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import check_bins
from .errors import TrainError

# Smallest share of the range a bin may get: keeps centres strictly increasing.
MIN_BIN_SHARE = 1e-3
# The chamfer term compares the centres with at most this many ground-truth pixels per
# image (evenly strided among the valid ones): a full N x pixels table is too big.
CHAMFER_PIXELS = 4096


def centres_from_widths(widths: torch.Tensor, min_depth: float, max_depth: float) -> torch.Tensor:
    """widths (B, N) > 0, any scale -> centres (B, N) in metres, increasing, inside
    (min_depth, max_depth)."""
    shares = widths / widths.sum(1, keepdim=True)
    edges = min_depth + (max_depth - min_depth) * F.pad(torch.cumsum(shares, 1), (1, 0))
    return 0.5 * (edges[:, :-1] + edges[:, 1:])


def bin_depth(logits: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """logits (B, N, H, W), centres (B, N) metres -> depth (B, 1, H, W) = sum softmax * centre."""
    return (logits.softmax(1) * centres[:, :, None, None]).sum(1, keepdim=True)


class BinHead(nn.Module):
    """Global features (B, C_global, h, w) -> N centres; pixel features (B, C, H, W) ->
    N logits per pixel."""

    def __init__(self, global_channels: int, pixel_channels: int, bins: int, min_depth: float, max_depth: float):
        super().__init__()
        check_bins(bins)
        if not 0 < min_depth < max_depth:
            raise TrainError(f"--bin-range must be 0 < MIN < MAX metres (got {min_depth}, {max_depth})")
        self.min_depth, self.max_depth = float(min_depth), float(max_depth)
        self.widths = nn.Sequential(
            nn.Linear(global_channels, 2 * global_channels), nn.ReLU(inplace=True), nn.Linear(2 * global_channels, bins)
        )
        self.logits = nn.Conv2d(pixel_channels, bins, 1)

    def forward(self, global_features: torch.Tensor, pixel_features: torch.Tensor):
        """-> (centres (B, N) m, logits (B, N, H, W)), in float32; bin_depth gives the depth."""
        pooled = global_features.float().mean((2, 3))
        shares = self.widths.float()(pooled).softmax(1)
        widths = shares + MIN_BIN_SHARE
        centres = centres_from_widths(widths, self.min_depth, self.max_depth)
        logits = self.logits(pixel_features).float()
        return centres, logits


def chamfer_loss(centres: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Symmetric chamfer distance (metres, L1) between each image's centres (B, N) and its
    valid target depths (B, 1, H, W) with mask (B, 1, H, W): mean over depths of the
    nearest centre plus mean over centres of the nearest depth, averaged over images
    that have ground truth (0 when none has)."""
    total, images = centres.new_zeros(()), 0
    for image_centres, depths, valid in zip(centres, target.flatten(1), mask.flatten(1) > 0, strict=True):
        values = depths[valid]
        if values.numel() == 0:
            continue
        values = values[:: max(1, values.numel() // CHAMFER_PIXELS)]
        distance = (values[:, None] - image_centres[None, :]).abs()
        total = total + distance.min(1).values.mean() + distance.min(0).values.mean()
        images += 1
    return total / max(images, 1)

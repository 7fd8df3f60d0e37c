"""Light students with a depth-bin head, distilled from a depth foundation model.

- `mono`: RGB only, a residual encoder and a U-Net decoder;
- `completion`: the same with a sparse-depth branch fused at every scale (as in
  DepthCompletionNet), for LiDAR depth completion.

For speed the stems have stride 2: the network runs at 1/2 resolution and below, and
its bin logits are upsampled (bilinearly) to full resolution. Both end in a BinHead:
metric bin centres from the deepest features, per-pixel bin logits from the 1/2
resolution decoder features. forward returns a dict: depth [(B, 1, H, W) m], logits
(B, N, H, W), centres (B, N) m and features (B, C, H/2, W/2) (the decoder features the
logits come from, for view-relational distillation).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .bins import BinHead, bin_depth, check_bins
from .config import STUDENTS
from .errors import TrainError
from .model import DEPTH_NORM_M, ResBlock, conv_bn_relu

DEFAULT_STUDENT_WIDTH = 16


@dataclass(frozen=True)
class StudentConfig:
    student: str = "completion"
    width: int = DEFAULT_STUDENT_WIDTH
    levels: int = 4
    bins: int = 64
    min_depth: float = 0.5
    max_depth: float = 100.0

    def to_dict(self) -> dict:
        return asdict(self)


class BinStudent(nn.Module):
    def __init__(self, config: StudentConfig = StudentConfig()):
        super().__init__()
        if config.student not in STUDENTS:
            raise TrainError(f"unknown student {config.student!r}: use one of {', '.join(STUDENTS)}")
        check_bins(config.bins)
        self.config = config
        channels = [min(config.width * 2**i, 8 * config.width) for i in range(config.levels + 1)]
        self.rgb_stem = conv_bn_relu(3, channels[0], stride=2)
        self.rgb_down = nn.ModuleList(ResBlock(channels[i], channels[i + 1], 2) for i in range(config.levels))
        self.uses_sparse = config.student == "completion"
        if self.uses_sparse:
            # The depth branch sees depth / DEPTH_NORM_M and the validity mask.
            self.depth_stem = conv_bn_relu(2, channels[0], stride=2)
            self.depth_down = nn.ModuleList(ResBlock(channels[i], channels[i + 1], 2) for i in range(config.levels))
            self.fuse = nn.ModuleList(
                nn.Sequential(nn.Conv2d(2 * c, c, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True))
                for c in channels
            )
        self.up = nn.ModuleList(
            ResBlock(channels[i + 1] + channels[i], channels[i]) for i in reversed(range(config.levels))
        )
        self.head = BinHead(channels[-1], channels[0], config.bins, config.min_depth, config.max_depth)

    def _encode(self, rgb: torch.Tensor, sparse: torch.Tensor) -> list[torch.Tensor]:
        x_rgb = self.rgb_stem(rgb)
        if not self.uses_sparse:
            skips = [x_rgb]
            for block in self.rgb_down:
                skips.append(block(skips[-1]))
            return skips
        x_depth = self.depth_stem(torch.cat([sparse / DEPTH_NORM_M, (sparse > 0).to(sparse.dtype)], 1))
        skips = [self.fuse[0](torch.cat([x_rgb, x_depth], 1))]
        for level in range(self.config.levels):
            x_rgb = self.rgb_down[level](x_rgb)
            x_depth = self.depth_down[level](x_depth)
            skips.append(self.fuse[level + 1](torch.cat([x_rgb, x_depth], 1)))
        return skips

    def forward(self, rgb: torch.Tensor, sparse: torch.Tensor) -> dict:
        """rgb (B, 3, H, W) in 0..1, sparse (B, 1, H, W) metres (0 = none; unused by the
        mono student) -> the dict of the module doc, cropped back to (H, W)."""
        height, width = rgb.shape[-2:]
        multiple = 2 ** (self.config.levels + 1)
        pad = (0, -width % multiple, 0, -height % multiple)
        skips = self._encode(F.pad(rgb, pad, mode="replicate"), F.pad(sparse, pad))
        deepest = x = skips.pop()
        for block in self.up:
            skip = skips.pop()
            x = block(
                torch.cat([F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False), skip], 1)
            )
        features = x[..., : -(-height // 2), : -(-width // 2)]
        centres, logits = self.head(deepest, features)
        logits = F.interpolate(logits, scale_factor=2, mode="bilinear", align_corners=False)[..., :height, :width]
        return {"depth": [bin_depth(logits, centres)], "logits": logits, "centres": centres, "features": features}


def student_from_checkpoint(checkpoint: dict, path, width: int | None = None, ema: bool = True) -> BinStudent:
    """The checkpoint's student, with its EMA weights when it has them and ema is set."""
    config = StudentConfig(**checkpoint["model_config"])
    if width is not None and width != config.width:
        raise TrainError(f"{path} holds a student of width {config.width}, not {width}: pass --width {config.width}")
    model = BinStudent(config)
    weights = checkpoint["ema"] if ema and checkpoint.get("ema") is not None else checkpoint["model"]
    try:
        model.load_state_dict(weights)
    except RuntimeError:
        raise TrainError(f"{path}: weights do not match its {config.student} student; is it corrupt?") from None
    return model


def is_student_checkpoint(checkpoint: dict) -> bool:
    return "student" in checkpoint["model_config"]

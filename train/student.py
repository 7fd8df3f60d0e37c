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

from .bins import BinHead, bin_depth
from .checkpoint import load_weights
from .config import STUDENTS, check_bins
from .errors import TrainError
from .model import FusionEncoder, ResBlock, encoder_channels

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
        channels = encoder_channels(config.width, config.levels)
        self.encoder = FusionEncoder(channels, stem_stride=2, with_depth=config.student == "completion")
        self.up = nn.ModuleList(
            ResBlock(channels[i + 1] + channels[i], channels[i]) for i in reversed(range(config.levels))
        )
        self.head = BinHead(channels[-1], channels[0], config.bins, config.min_depth, config.max_depth)

    @property
    def deepest_stride(self) -> int:
        """The deepest features are the (padded) input / this, per side (the stems have stride 2)."""
        return 2 ** (self.config.levels + 1)

    def forward(self, rgb: torch.Tensor, sparse: torch.Tensor) -> dict:
        """rgb (B, 3, H, W) in 0..1, sparse (B, 1, H, W) metres (0 = none; unused by the
        mono student) -> the dict of the module doc, cropped back to (H, W)."""
        height, width = rgb.shape[-2:]
        multiple = self.deepest_stride
        pad = (0, -width % multiple, 0, -height % multiple)
        skips = self.encoder(F.pad(rgb, pad, mode="replicate"), F.pad(sparse, pad))
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
    return load_weights(BinStudent(config), checkpoint, path, ema, f"its {config.student} student")


def is_student_checkpoint(checkpoint: dict) -> bool:
    return "student" in checkpoint["model_config"]

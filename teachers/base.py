"""The teacher protocol: a batch of images in, one depth map per image out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

DepthKind = Literal["metric", "disparity", "depth"]


class TeacherError(ValueError):
    """A teacher cannot give depth for an input (the message says what to do)."""


@dataclass
class TeacherInput:
    """path: the photo's file (sidecar teachers read files beside it);
    rgb: (H, W, 3) uint8, EXIF orientation already applied."""

    path: Path
    rgb: np.ndarray


@dataclass
class DepthPrediction:
    """depth: (H, W) float32 at the image's size. For kind 'metric' it is camera z in
    metres, 0 = no value; 'disparity' and 'depth' are relative (unknown scale and
    shift). focal_px: the teacher's own focal-length estimate, if it makes one.
    conversion: what was done to get here, recorded in each sample's json."""

    depth: np.ndarray
    kind: DepthKind
    focal_px: float | None = None
    conversion: dict = field(default_factory=dict)


class Teacher(Protocol):
    name: str

    def predict(self, batch: Sequence[TeacherInput]) -> list[DepthPrediction | TeacherError]:
        """One prediction per input, or the TeacherError that explains why there is none."""
        ...

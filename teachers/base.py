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


class TeacherUnavailable(TeacherError):
    """A teacher cannot run at all (weights missing, not a depth model, bad device):
    the run stops rather than skipping every photo."""


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
    shift). focal_px: the teacher's own focal-length estimate (pixels, at the image's
    size), if it makes one. conversion: what was done to get here, recorded in each
    sample's json ("from": the teacher's own output kind once converted to metric).
    teacher, revision: which teacher and weights made it."""

    depth: np.ndarray
    kind: DepthKind
    focal_px: float | None = None
    conversion: dict = field(default_factory=dict)
    teacher: str = ""
    revision: str = ""

    def describe(self) -> dict:
        """The sample json's "teacher" record."""
        return {
            "id": self.teacher,
            "revision": self.revision,
            "output": self.conversion.get("from", self.kind),
            "focal_px": self.focal_px,
            "conversion": self.conversion,
        }


class Teacher(Protocol):
    name: str

    def predict(self, batch: Sequence[TeacherInput]) -> list[DepthPrediction | TeacherError]:
        """One prediction per input, or the TeacherError that explains why there is none.
        Raises TeacherUnavailable when it cannot predict anything."""
        ...


def cache_id(teacher: Teacher, item: TeacherInput) -> str | None:
    """What identifies `teacher`'s output for `item` besides the image itself (name,
    weights revision, settings that change the output), or None when it is not worth
    caching (a sidecar file is read faster than a cache entry). Teachers opt in with a
    `cache_id(item)` method."""
    method = getattr(teacher, "cache_id", None)
    return method(item) if method is not None else None

"""What every sensor kind shares: a frame's rays (Firing) and a content hash.

A sensor (SpinningLidar, RisleyLidar) offers the pipeline: name, kind, channels,
points_per_frame, vertical_fov_deg, min_range_m, max_range_m, default_mount, effects,
ray_drop (a FittedRayDrop or None), spec_hash(), fire(rng) -> Firing and
trigger_time_s(firing, direction_lidar), when a camera looking that way is triggered.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Firing:
    """One frame's rays: directions_lidar (N, 3) float64 unit vectors in the LiDAR frame,
    origins_lidar (N, 3) float64 the point (m, LiDAR frame) each ray leaves from, ring (N,)
    int32 channel of each ray (0 = top beam or first emitter), time_s (N,) float64 firing
    time since the frame started, and phase: the random start of the frame, as recorded in
    the sample's json.

    A return at distance t along ray i is origins_lidar[i] + t * directions_lidar[i]: a
    caster must start each ray at its own origin (lasers of a real unit sit apart, and
    their origins turn with the head), and points.npy holds that point."""

    directions_lidar: np.ndarray
    origins_lidar: np.ndarray
    ring: np.ndarray
    time_s: np.ndarray
    phase: dict[str, float]


def content_hash(spec) -> str:
    """A short content hash of every figure of a sensor dataclass that changes the rays
    or the returns (not its description, citation or published figures)."""
    figures = {k: v for k, v in asdict(spec).items() if k not in ("description", "source", "published")}
    # A sensor without per-laser origins or a fitted ray drop keeps the hash it had before
    # they existed.
    if not figures.get("laser_origins_m", True):
        del figures["laser_origins_m"]
    if figures.get("ray_drop", 0) is None:
        del figures["ray_drop"]
    return hashlib.sha256(json.dumps(figures, sort_keys=True).encode()).hexdigest()[:16]

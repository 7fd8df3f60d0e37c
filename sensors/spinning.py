"""A spinning LiDAR: a fixed column of lasers (one elevation per ring) swept in azimuth."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class SpinningLidar:
    """A rotating multi-beam LiDAR.

    Angles are stored in degrees as in the sensor files; the methods return radians
    and unit vectors. Ring r fires at `elevations_deg[r]`; ring 0 is the top beam.
    Azimuth 0 points along the LiDAR's x axis (forward), positive azimuth turns
    toward +y (left), so the sweep is counter-clockwise seen from above.
    """

    name: str
    description: str
    source: str
    elevations_deg: tuple[float, ...]
    azimuth_step_deg: float
    horizontal_fov_deg: float
    min_range_m: float
    max_range_m: float
    default_mount: str

    @property
    def channels(self) -> int:
        return len(self.elevations_deg)

    @property
    def columns(self) -> int:
        """Firings per laser per frame."""
        return int(round(self.horizontal_fov_deg / self.azimuth_step_deg))

    @property
    def points_per_frame(self) -> int:
        return self.channels * self.columns

    def spec_hash(self) -> str:
        """A short content hash of every figure that changes the rays or returns."""
        figures = {k: v for k, v in asdict(self).items() if k not in ("description", "source")}
        return hashlib.sha256(json.dumps(figures, sort_keys=True).encode()).hexdigest()[:16]

    def ray_directions(self, azimuth_phase_rad: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Unit ray directions of one frame in the LiDAR frame.

        Args:
            azimuth_phase_rad: where the sweep starts, in [0, step); real sensors
                fire on a grid whose phase is arbitrary with respect to the camera.

        Returns:
            directions_lidar: (channels * columns, 3) float64 unit vectors, ring-major.
            ring: (channels * columns,) int32 ring index of each ray.
        """
        elevation = np.deg2rad(np.asarray(self.elevations_deg, dtype=np.float64))
        azimuth_start = -0.5 * np.deg2rad(self.horizontal_fov_deg)
        azimuth = azimuth_start + azimuth_phase_rad + np.arange(self.columns) * np.deg2rad(self.azimuth_step_deg)
        elevation_grid, azimuth_grid = np.meshgrid(elevation, azimuth, indexing="ij")
        cos_elevation = np.cos(elevation_grid)
        directions_lidar = np.stack(
            [cos_elevation * np.cos(azimuth_grid), cos_elevation * np.sin(azimuth_grid), np.sin(elevation_grid)],
            axis=-1,
        ).reshape(-1, 3)
        ring = np.repeat(np.arange(self.channels, dtype=np.int32), self.columns)
        return directions_lidar, ring

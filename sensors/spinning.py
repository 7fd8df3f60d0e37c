"""A spinning LiDAR: a fixed column of lasers (one elevation per ring) swept in azimuth."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .base import Firing, content_hash
from .effects import ReturnEffects
from .ray_drop import FittedRayDrop


@dataclass(frozen=True)
class SpinningLidar:
    """A rotating multi-beam LiDAR.

    Angles are stored in degrees as in the sensor files; the methods return radians
    and unit vectors. Ring r fires at `elevations_deg[r]`; ring 0 is the top beam, and
    at `azimuth_offsets_deg[r]` from the column's azimuth when the sensor staggers its
    lasers. Azimuth 0 points along the LiDAR's x axis (forward), positive azimuth turns
    toward +y (left), so the sweep is counter-clockwise seen from above.

    `laser_origins_m[r]` is where laser r fires from, (forward, left, up) in metres in the
    head's frame: forward along the column's azimuth (the encoder angle, before the laser's
    own azimuth offset), left perpendicular to it, up along the LiDAR's z axis. The origin
    turns with the head, so each ray of a frame has its own. Empty: every laser fires from
    the LiDAR frame's origin.
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
    azimuth_offsets_deg: tuple[float, ...] = ()
    laser_origins_m: tuple[tuple[float, float, float], ...] = ()
    rotation_hz: float = 10.0
    effects: ReturnEffects = ReturnEffects()
    ray_drop: FittedRayDrop | None = None
    published: dict = field(default_factory=dict, compare=False)

    kind = "spinning"

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

    @property
    def vertical_fov_deg(self) -> tuple[float, float]:
        """(top, bottom) beam elevation in degrees."""
        return self.elevations_deg[0], self.elevations_deg[-1]

    def spec_hash(self) -> str:
        return content_hash(self)

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
        elevation_grid, azimuth_grid = np.meshgrid(elevation, self.column_azimuths(azimuth_phase_rad), indexing="ij")
        if self.azimuth_offsets_deg:
            azimuth_grid = azimuth_grid + np.deg2rad(np.asarray(self.azimuth_offsets_deg))[:, None]
        cos_elevation = np.cos(elevation_grid)
        directions_lidar = np.stack(
            [cos_elevation * np.cos(azimuth_grid), cos_elevation * np.sin(azimuth_grid), np.sin(elevation_grid)],
            axis=-1,
        ).reshape(-1, 3)
        ring = np.repeat(np.arange(self.channels, dtype=np.int32), self.columns)
        return directions_lidar, ring

    def column_azimuths(self, azimuth_phase_rad: float = 0.0) -> np.ndarray:
        """(columns,) float64 azimuth (rad) of each column (the encoder angle) of a frame."""
        azimuth_start = -0.5 * np.deg2rad(self.horizontal_fov_deg)
        return azimuth_start + azimuth_phase_rad + np.arange(self.columns) * np.deg2rad(self.azimuth_step_deg)

    def ray_origins(self, azimuth_phase_rad: float = 0.0) -> np.ndarray:
        """(channels * columns, 3) float64 origin of each ray (m, LiDAR frame), ring-major
        like ray_directions: each laser's (forward, left, up) turned by its column's azimuth."""
        if not self.laser_origins_m:
            return np.zeros((self.points_per_frame, 3))
        forward, left, up = (column[:, None] for column in np.asarray(self.laser_origins_m, dtype=np.float64).T)
        azimuth = self.column_azimuths(azimuth_phase_rad)[None, :]
        cos_azimuth, sin_azimuth = np.cos(azimuth), np.sin(azimuth)
        origins_lidar = np.stack(
            np.broadcast_arrays(
                forward * cos_azimuth - left * sin_azimuth, forward * sin_azimuth + left * cos_azimuth, up
            ),
            axis=-1,
        )
        return origins_lidar.reshape(-1, 3)

    def fire(self, rng: np.random.Generator) -> Firing:
        """One frame with a random azimuth phase in [0, step) drawn from `rng`."""
        azimuth_phase_rad = float(rng.uniform(0.0, np.deg2rad(self.azimuth_step_deg)))
        directions_lidar, ring = self.ray_directions(azimuth_phase_rad)
        column_time_s = np.arange(self.columns) / (self.columns * self.rotation_hz)
        return Firing(
            directions_lidar,
            self.ray_origins(azimuth_phase_rad),
            ring,
            np.tile(column_time_s, self.channels),
            {"azimuth_phase_deg": float(np.rad2deg(azimuth_phase_rad))},
        )

    def trigger_time_s(self, firing: Firing, direction_lidar: np.ndarray) -> float:
        """When a camera looking along direction_lidar (3,) (LiDAR frame) is triggered
        during `firing`: the firing time (s) of the column whose beams point nearest to it
        in azimuth, as KITTI triggers its cameras when the sweep passes them."""
        beam_azimuth = np.arctan2(firing.directions_lidar[:, 1], firing.directions_lidar[:, 0])
        offset = np.angle(np.exp(1j * (beam_azimuth - np.arctan2(direction_lidar[1], direction_lidar[0]))))
        return float(firing.time_s[np.argmin(np.abs(offset))])

    def nearest_laser(self, points_lidar: np.ndarray) -> np.ndarray:
        """(N,) int32 the laser whose elevation (seen from its own origin) is nearest to
        that of each point (N, 3) m in the LiDAR frame: a real scan's ring."""
        elevation = np.deg2rad(np.asarray(self.elevations_deg))
        up = np.asarray([origin[2] for origin in self.laser_origins_m]) if self.laser_origins_m else 0.0
        horizontal = np.hypot(points_lidar[:, 0], points_lidar[:, 1])[:, None]
        seen = np.arctan2(points_lidar[:, 2][:, None] - up, horizontal)
        return np.argmin(np.abs(seen - elevation[None, :]), axis=1).astype(np.int32)

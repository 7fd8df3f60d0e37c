"""A non-repetitive solid-state LiDAR (Livox Mid-40, Mid-70, Avia): emitters behind a
pair of rotating wedge prisms (a Risley pair).

Each emitter's beam is refracted through two wedge prisms spinning at different rates
about the optical axis (LiDAR x). The beam traces a rosette that never repeats, so the
share of the field of view covered grows with integration time, as on the real sensor.
Refraction is exact (vector Snell's law at all four faces), not the thin-prism
approximation: prism 1 has its flat face toward the emitters and its wedge face out;
prism 2 is mirrored (wedge face in, flat face out).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .base import Firing, content_hash
from .effects import ReturnEffects
from .ray_drop import FittedRayDrop

# Start times are drawn in [0, START_WINDOW_S): far longer than any rotor period.
START_WINDOW_S = 60.0


def refract(directions: np.ndarray, normals: np.ndarray, index_ratio: float) -> np.ndarray:
    """Vector Snell's law.

    Args:
        directions: (N, 3) unit directions of the incoming rays.
        normals: (N, 3) or (3,) unit face normals pointing along the propagation (n . d > 0).
        index_ratio: n_incident / n_transmitted.

    Returns:
        (N, 3) unit refracted directions; NaN where the ray is totally reflected.
    """
    cos_in = np.sum(directions * normals, axis=-1, keepdims=True)
    sin2_out = index_ratio**2 * (1.0 - cos_in**2)
    with np.errstate(invalid="ignore"):
        cos_out = np.sqrt(1.0 - sin2_out)
    return index_ratio * directions + (cos_out - index_ratio * cos_in) * normals


def _wedge_normal(wedge_rad: float, rotor_rad: np.ndarray) -> np.ndarray:
    """(N, 3) unit normal of a wedge face tilted by wedge_rad toward rotor angle, in the
    prism frame (z = optical axis)."""
    sin_wedge = np.sin(wedge_rad)
    return np.stack(
        [sin_wedge * np.cos(rotor_rad), sin_wedge * np.sin(rotor_rad), np.full_like(rotor_rad, np.cos(wedge_rad))],
        axis=-1,
    )


@dataclass(frozen=True)
class RisleyLidar:
    """A Risley-prism scanner. Rotor speeds are signed (rpm, counter-rotating pairs have
    opposite signs); wedge angles in degrees; emitters are tilted from the optical axis by
    (azimuth, elevation) degrees before the prisms; `point_rate_hz` counts points of all
    emitters together; a frame integrates `integration_time_s` seconds of firing."""

    name: str
    description: str
    source: str
    rotor_rpm: tuple[float, float]
    wedge_deg: tuple[float, float]
    refractive_index: float
    emitter_azimuth_deg: tuple[float, ...]
    emitter_elevation_deg: tuple[float, ...]
    point_rate_hz: float
    integration_time_s: float
    min_range_m: float
    max_range_m: float
    default_mount: str
    effects: ReturnEffects = ReturnEffects()
    ray_drop: FittedRayDrop | None = None
    published: dict = field(default_factory=dict, compare=False)

    kind = "risley"

    @property
    def channels(self) -> int:
        """Emitters."""
        return len(self.emitter_elevation_deg)

    @property
    def firings(self) -> int:
        """Firings per emitter per frame."""
        return int(round(self.point_rate_hz * self.integration_time_s / self.channels))

    @property
    def points_per_frame(self) -> int:
        return self.channels * self.firings

    @property
    def vertical_fov_deg(self) -> tuple[float, float]:
        """(top, bottom) elevation in degrees reached by any emitter over all rotor angles."""
        half = self.field_of_view_deg()[1] / 2
        return half, -half

    def field_of_view_deg(self) -> tuple[float, float]:
        """Full (horizontal, vertical) FOV in degrees: twice the largest azimuth and
        elevation any emitter reaches, from a dense sweep of both rotor angles; NaN when
        some ray is totally reflected inside the prisms."""
        angles = np.linspace(0.0, 2 * np.pi, 181)
        rotor_1, rotor_2 = (grid.ravel() for grid in np.meshgrid(angles, angles))
        reach = self._deflect(rotor_1, rotor_2)
        horizontal = np.rad2deg(np.max(np.abs(np.arctan2(reach[..., 1], reach[..., 0]))))
        vertical = np.rad2deg(np.max(np.abs(np.arcsin(np.clip(reach[..., 2], -1, 1)))))
        return 2 * float(horizontal), 2 * float(vertical)

    def spec_hash(self) -> str:
        return content_hash(self)

    def _deflect(self, rotor_1_rad: np.ndarray, rotor_2_rad: np.ndarray) -> np.ndarray:
        """(T, E, 3) LiDAR-frame unit directions of every emitter for T rotor angle pairs."""
        azimuth = np.deg2rad(np.asarray(self.emitter_azimuth_deg))
        elevation = np.deg2rad(np.asarray(self.emitter_elevation_deg))
        # Prism frame: z along the optical axis (LiDAR x), x along LiDAR y, y along LiDAR z.
        emitted = np.stack(
            [np.cos(elevation) * np.sin(azimuth), np.sin(elevation), np.cos(elevation) * np.cos(azimuth)], axis=-1
        )
        count = len(rotor_1_rad)
        rays = np.broadcast_to(emitted, (count, self.channels, 3)).reshape(-1, 3)
        normal_1 = np.repeat(_wedge_normal(np.deg2rad(self.wedge_deg[0]), rotor_1_rad), self.channels, axis=0)
        normal_2 = np.repeat(_wedge_normal(np.deg2rad(self.wedge_deg[1]), rotor_2_rad), self.channels, axis=0)
        axis = np.array([0.0, 0.0, 1.0])
        glass = self.refractive_index
        rays = refract(rays, axis, 1.0 / glass)
        rays = refract(rays, normal_1, glass)
        rays = refract(rays, normal_2, 1.0 / glass)
        rays = refract(rays, axis, glass)
        directions_lidar = np.stack([rays[:, 2], rays[:, 0], rays[:, 1]], axis=-1)
        return directions_lidar.reshape(count, self.channels, 3)

    def directions_at(self, time_s: np.ndarray) -> np.ndarray:
        """(T, E, 3) unit directions of every emitter at times (T,) seconds; NaN where a
        ray is totally reflected inside the prisms."""
        rotor_1 = 2 * np.pi * self.rotor_rpm[0] / 60.0 * time_s
        rotor_2 = 2 * np.pi * self.rotor_rpm[1] / 60.0 * time_s
        return self._deflect(rotor_1, rotor_2)

    def fire(self, rng: np.random.Generator) -> Firing:
        """One frame of integration_time_s from a random start time (rotor phase) drawn from
        `rng`; emitters fire together, rays are emitter-major like a spinning sensor's rings."""
        start_s = float(rng.uniform(0.0, START_WINDOW_S))
        offset_s = np.arange(self.firings) * self.channels / self.point_rate_hz
        directions = self.directions_at(start_s + offset_s).transpose(1, 0, 2).reshape(-1, 3)
        ring = np.repeat(np.arange(self.channels, dtype=np.int32), self.firings)
        usable = np.isfinite(directions).all(axis=1)
        return Firing(
            directions[usable],
            np.zeros((int(usable.sum()), 3)),
            ring[usable],
            np.tile(offset_s, self.channels)[usable],
            {"start_time_s": start_s},
        )

    def trigger_time_s(self, firing: Firing, direction_lidar: np.ndarray) -> float:
        """When a camera (looking along direction_lidar (3,), any: the rosette covers the
        whole field at once) is triggered during `firing`: the middle of the frame (s)."""
        return 0.5 * float(firing.time_s.min() + firing.time_s.max()) if len(firing.time_s) else 0.0

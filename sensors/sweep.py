"""Motion during the sweep: a LiDAR that moves while it fires, in a static scene.

A spinning LiDAR takes a whole turn (0.1 s at 10 Hz) to record a frame; a car at 10 m/s
moves 1 m meanwhile. Each ray is fired from where the LiDAR is at its firing time. The
LiDAR moves as a car does over so short a time: a constant forward speed along its own x
axis and a constant yaw rate about its own z axis (a circular arc; the lever arm between
the car's turning centre and the LiDAR is left out).

The frame a scan is written in is the LiDAR's at the camera's trigger time: for a spinning
sensor the moment its sweep passes the camera's optical axis (KITTI triggers its cameras
so), for a Risley sensor the middle of its integration window. A return is written either
as the sensor measured it, in its own frame at its firing time, with nothing corrected
(`deskew` False: a raw scan, as KITTI's, sheared along the sweep with a seam where the
sweep starts and ends), or moved into the trigger-time frame (`deskew` True: a
motion-compensated scan, where a static scene lands where it is).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from .base import Firing
from .mount import spec_items

# Bounds of the ranges a spec may give: a car's speed (m/s) and yaw rate (deg/s).
MAX_SPEED_MPS = 70.0
MAX_YAW_RATE_DEG_S = 180.0
# `ego_motion` keys -> (EgoMotion field, unit, bound).
_MOTION_KEYS = {
    "speed": ("speed_mps", "m/s", MAX_SPEED_MPS),
    "yaw_rate": ("yaw_rate_deg_s", "deg/s", MAX_YAW_RATE_DEG_S),
}


@dataclass(frozen=True)
class EgoMotion:
    """The ranges each view's motion is drawn from, uniformly: forward speed (m/s, negative
    = reversing) and yaw rate (deg/s, positive = turning left), each (low, high)."""

    speed_mps: tuple[float, float] = (0.0, 0.0)
    yaw_rate_deg_s: tuple[float, float] = (0.0, 0.0)

    def describe(self) -> str:
        """The canonical `ego_motion` text of these ranges."""
        return ",".join(f"{key}={low:g}:{high:g}" for key, (low, high) in self._ranges().items())

    def _ranges(self) -> dict[str, tuple[float, float]]:
        return {key: getattr(self, field) for key, (field, _, _) in _MOTION_KEYS.items()}


def parse_ego_motion(text: str, option: str = "`ego_motion`") -> EgoMotion | None:
    """'speed=5:15,yaw_rate=-10:10' -> EgoMotion; a single value is a fixed one
    ('speed=10'), unnamed keys are 0, 'none' is no motion (None).

    Raises ValueError with a one-line reason, naming `option`, for an unknown key, a bad
    value, a range whose low end exceeds its high end or a value out of bounds."""
    if text.strip().lower() in ("none", ""):
        return None
    ranges = {field: (0.0, 0.0) for field, _, _ in _MOTION_KEYS.values()}
    hint = "(m/s, deg/s), e.g. speed=5:15,yaw_rate=-10:10"
    for key, value in spec_items(text, _MOTION_KEYS, option, "KEY=VALUE or KEY=LOW:HIGH", hint):
        field, unit, bound = _MOTION_KEYS[key]
        try:
            numbers = [float(end) for end in value.split(":")]
        except ValueError:
            raise ValueError(f"{option}: {key} must be a number or LOW:HIGH, got {value.strip()!r}") from None
        low, high = (numbers[0], numbers[0]) if len(numbers) == 1 else numbers[:2]
        if len(numbers) > 2 or not -bound <= low <= high <= bound:
            raise ValueError(f"{option}: {key} must be a number or LOW:HIGH ({unit}) within +-{bound:g}, got {value}")
        ranges[field] = (low, high)
    return EgoMotion(**ranges)


@dataclass(frozen=True)
class SweepMotion:
    """One frame's motion: forward speed (m/s), yaw rate (rad/s), whether the scan is
    written motion-compensated, and the camera's trigger time (s since the sweep started;
    the scan sets it once the frame is fired, see `Sensor.trigger_time_s`)."""

    speed_mps: float
    yaw_rate_rad_s: float
    deskew: bool
    trigger_time_s: float = 0.0

    def poses(self, time_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Where the LiDAR is at times time_s (N,) s, in its frame at the trigger time:
        (yaw (N,) rad about z, position (N, 3) m)."""
        elapsed = np.asarray(time_s, dtype=np.float64) - self.trigger_time_s
        yaw = self.yaw_rate_rad_s * elapsed
        if abs(self.yaw_rate_rad_s) < 1e-9:
            forward, left = self.speed_mps * elapsed, np.zeros_like(elapsed)
        else:
            radius = self.speed_mps / self.yaw_rate_rad_s
            forward, left = radius * np.sin(yaw), radius * (1.0 - np.cos(yaw))
        return yaw, np.column_stack([forward, left, np.zeros_like(elapsed)])

    def to_trigger_frame(self, vectors_lidar: np.ndarray, time_s: np.ndarray, directions: bool = False) -> np.ndarray:
        """(N, 3) points (m) or directions, each in the LiDAR frame at its time time_s (N,),
        moved into the LiDAR frame at the trigger time."""
        yaw, position = self.poses(time_s)
        cos_yaw, sin_yaw = np.cos(yaw), np.sin(yaw)
        x, y, z = vectors_lidar.T
        turned = np.column_stack([cos_yaw * x - sin_yaw * y, sin_yaw * x + cos_yaw * y, z])
        return turned if directions else turned + position

    def firing_as_cast(self, firing: Firing) -> Firing:
        """`firing` with every ray's origin and direction in the trigger-time frame: where
        the moving LiDAR fired it from and toward."""
        return dataclasses.replace(
            firing,
            directions_lidar=self.to_trigger_frame(firing.directions_lidar, firing.time_s, directions=True),
            origins_lidar=self.to_trigger_frame(firing.origins_lidar, firing.time_s),
        )

    def record(self) -> dict:
        """The sample json's `ego_motion`."""
        return {
            "speed_mps": self.speed_mps,
            "yaw_rate_deg_s": float(np.rad2deg(self.yaw_rate_rad_s)),
            "trigger_time_s": self.trigger_time_s,
            "deskewed": self.deskew,
            "frame": "LiDAR at the camera's trigger time"
            + ("" if self.deskew else " (each return as measured, in the LiDAR's frame at its firing time)"),
        }


def sample_sweep_motion(motion: EgoMotion, deskew: bool, rng: np.random.Generator) -> SweepMotion:
    """Draw one frame's speed and yaw rate from `motion`'s ranges."""
    speed_mps = float(rng.uniform(*motion.speed_mps))
    yaw_rate_deg_s = float(rng.uniform(*motion.yaw_rate_deg_s))
    return SweepMotion(speed_mps, float(np.deg2rad(yaw_rate_deg_s)), deskew)

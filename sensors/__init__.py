"""LiDAR models: beam patterns, the catalog of real sensors, mounts, ray-casting
into a mesh and projection into a camera. Depends on numpy and Open3D only."""

from .catalog import SensorSpecError, available_sensors, load_sensor
from .mount import MOUNTS, MountJitter, mount_pose, sample_mount_jitter
from .spinning import SpinningLidar

__all__ = [
    "MOUNTS",
    "MountJitter",
    "SensorSpecError",
    "SpinningLidar",
    "available_sensors",
    "load_sensor",
    "mount_pose",
    "sample_mount_jitter",
]

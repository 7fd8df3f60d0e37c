"""LiDAR models: beam patterns, the catalog of real sensors, return effects, mounts,
ray-casting into a mesh and projection into a camera. Depends on numpy and Open3D only."""

from .base import Firing
from .calibration import Calibration, CalibrationError, mount_from_calibration, read_calibration
from .catalog import KINDS, Sensor, SensorSpecError, available_sensors, configure_sensor, load_sensor
from .effects import RETURN_MODES, ReturnEffects
from .mount import (
    DEFAULT_MOUNT_JITTER,
    MOUNTS,
    MountJitter,
    mount_pose,
    parse_mount_jitter,
    sample_mount_jitter,
)
from .risley import RisleyLidar
from .spinning import SpinningLidar

__all__ = [
    "DEFAULT_MOUNT_JITTER",
    "KINDS",
    "MOUNTS",
    "RETURN_MODES",
    "Calibration",
    "CalibrationError",
    "Firing",
    "MountJitter",
    "ReturnEffects",
    "RisleyLidar",
    "Sensor",
    "SensorSpecError",
    "SpinningLidar",
    "available_sensors",
    "configure_sensor",
    "load_sensor",
    "mount_from_calibration",
    "mount_pose",
    "parse_mount_jitter",
    "read_calibration",
    "sample_mount_jitter",
]

"""Depth teachers behind one small protocol, and camera intrinsics policies."""

from .base import DepthPrediction, Teacher, TeacherError, TeacherInput
from .intrinsics import IntrinsicsError, intrinsics_from_hfov, parse_intrinsics, resolve_intrinsics
from .sidecar import SidecarTeacher, find_depth_sidecar

__all__ = [
    "DepthPrediction",
    "IntrinsicsError",
    "SidecarTeacher",
    "Teacher",
    "TeacherError",
    "TeacherInput",
    "find_depth_sidecar",
    "intrinsics_from_hfov",
    "parse_intrinsics",
    "resolve_intrinsics",
]

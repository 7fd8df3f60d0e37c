"""Depth teachers behind one small protocol, and camera intrinsics policies."""

from .base import DepthPrediction, Teacher, TeacherError, TeacherInput, TeacherUnavailable, cache_id
from .factory import AutoTeacher, load_teacher
from .intrinsics import (
    POLICIES,
    IntrinsicsError,
    intrinsics_from_hfov,
    parse_fov_range,
    parse_intrinsics,
    parse_policy,
    resolve_intrinsics,
)
from .metric import DepthConversion, depth_conversion, to_metric
from .registry import DEFAULT_MODEL, MODELS, check_teacher_name, known_teachers
from .sidecar import DEPTH_SIDECAR_SUFFIXES, SidecarTeacher, find_depth_sidecar

__all__ = [
    "DEPTH_SIDECAR_SUFFIXES",
    "DEFAULT_MODEL",
    "MODELS",
    "POLICIES",
    "AutoTeacher",
    "DepthConversion",
    "DepthPrediction",
    "IntrinsicsError",
    "SidecarTeacher",
    "Teacher",
    "TeacherError",
    "TeacherInput",
    "TeacherUnavailable",
    "cache_id",
    "check_teacher_name",
    "depth_conversion",
    "find_depth_sidecar",
    "intrinsics_from_hfov",
    "known_teachers",
    "load_teacher",
    "parse_fov_range",
    "parse_intrinsics",
    "parse_policy",
    "resolve_intrinsics",
    "to_metric",
]

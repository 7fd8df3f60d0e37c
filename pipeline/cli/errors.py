"""The CLI's side of errors: which exceptions are the user's to fix (printed as one line,
exit 2), and the library parameter names their messages quote, as the flags that set them."""

from __future__ import annotations

import re

from simlidar.sensors import SensorSpecError
from simlidar.teachers import IntrinsicsError, TeacherError

from ..errors import PipelineError

# Libraries name a parameter in `backticks`; the CLI shows the flag that sets it.
FLAGS = {
    "batch_size": "--batch-size",
    "depth_range": "--depth-range",
    "device": "--device",
    "disparity_percentiles": "--disparity-percentiles",
    "dtype": "--dtype",
    "fov_deg": "--fov",
    "fov_range": "--fov-range",
    "integration_time_s": "--integration-time",
    "intrinsics": "--intrinsics",
    "intrinsics_policy": "--intrinsics-policy",
    "like": "--like",
    "max_size": "--max-size",
    "metric_scale": "--metric-scale",
    "mount_jitter": "--mount-jitter",
    "sky_threshold": "--sky-threshold",
    "teacher": "--teacher",
    "teacher_output": "--teacher-output",
}


def user_errors() -> tuple[type[Exception], ...]:
    """Every exception a user can act on; the training package's own is imported here,
    lazily, so that the data pipeline never depends on it."""
    from simlidar.train.errors import TrainError

    return (PipelineError, SensorSpecError, TeacherError, IntrinsicsError, TrainError)


def with_flags(message: str) -> str:
    """`message` with each `parameter` it quotes written as its flag (unknown names unquoted)."""
    return re.sub(r"`(\w+)`", lambda match: FLAGS.get(match.group(1), match.group(1)), message)

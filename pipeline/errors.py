"""Errors a user can act on: the CLI prints their message as one line and exits 2."""

from __future__ import annotations

from simlidar.sensors import SensorSpecError
from simlidar.teachers import IntrinsicsError, TeacherError
from simlidar.train.errors import TrainError


class PipelineError(Exception):
    """A bad option, input folder or output folder, or a run that cannot go on."""


USER_ERRORS = (PipelineError, SensorSpecError, TeacherError, IntrinsicsError, TrainError)

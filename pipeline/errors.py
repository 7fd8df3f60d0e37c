"""Errors a user can act on: the CLI prints their message as one line and exits 2
(pipeline/cli/errors.py lists every such exception). Problems of one input are not
among them: the worker records those in errors.jsonl."""

from simlidar.teachers import IntrinsicsError, TeacherError


class PipelineError(Exception):
    """A bad option, input folder or output folder, or a run that cannot go on."""


class UnusableDepth(ValueError):
    """One input's depth holds too few pixels a LiDAR could return from (recorded in
    errors.jsonl; the rest of its shard is made)."""


def error_stage(error: Exception) -> str:
    """The errors.jsonl stage of one input's error: teacher, intrinsics or depth."""
    if isinstance(error, TeacherError):
        return "teacher"
    return "intrinsics" if isinstance(error, IntrinsicsError) else "depth"

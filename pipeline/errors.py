"""Errors a user can act on: the CLI prints their message as one line and exits 1, or 2 for
an OptionError (pipeline/cli/errors.py lists every such exception). Problems of one input are not
among them: the worker records those in errors.jsonl."""

import re

from simlidar.teachers import IntrinsicsError, TeacherError

# "<_io.BytesIO object at 0x7f...>" and the like: an address differs from run to run.
_OBJECT_REPR = re.compile(r" ?<[^<>]* at 0x[0-9a-fA-F]+>")


class PipelineError(Exception):
    """A bad input folder or output folder, or a run that cannot go on."""


class OptionError(PipelineError):
    """An option's value that cannot work, found before any work: a usage error."""


class UnusableDepth(ValueError):
    """One input's depth holds too few pixels a LiDAR could return from (recorded in
    errors.jsonl; the rest of its shard is made)."""


def error_stage(error: Exception) -> str:
    """The errors.jsonl stage of one input's error: teacher, intrinsics or depth."""
    if isinstance(error, TeacherError):
        return "teacher"
    return "intrinsics" if isinstance(error, IntrinsicsError) else "depth"


def without_addresses(message: str) -> str:
    """`message` without the memory addresses some libraries put in theirs (errors.jsonl
    lines are the same from run to run)."""
    return _OBJECT_REPR.sub("", message).strip()


def unexpected_reason(error: Exception) -> str:
    """The errors.jsonl reason of an error no check foresaw (the input is skipped, its shard made)."""
    cause = error.__cause__ or error.__context__
    detail = f" ({type(cause).__name__}: {without_addresses(str(cause))})" if cause is not None else ""
    return f"{type(error).__name__}: {without_addresses(str(error)) or 'no message'}{detail}"

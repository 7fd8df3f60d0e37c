"""The CLI's side of errors: which exceptions are the user's to fix (printed as one line;
exit 2 for a usage error, 1 for data or a run that failed), and the library parameter
names their messages quote, as the flags that set them."""

from __future__ import annotations

import re

import click
from simlidar.sensors import SensorSpecError
from simlidar.teachers import IntrinsicsError, TeacherError

from ..errors import OptionError, PipelineError

# Libraries name a parameter in `backticks`; the CLI shows the flag that sets it: the flag of
# the option of that name (every command's options, read from the commands themselves), or,
# for the teachers' settings, which the options name otherwise, these.
LIBRARY_FLAGS = {"batch_size": "--batch-size", "device": "--device", "dtype": "--dtype", "max_size": "--max-size"}


def _commands(command: click.Command) -> list[click.Command]:
    """`command` and every command under it."""
    below = command.commands.values() if isinstance(command, click.Group) else ()
    return [command, *(each for child in below for each in _commands(child))]


def flag_names() -> dict[str, str]:
    """Each option's parameter name -> its flag (the longest of its names), across every
    command of the CLI, and LIBRARY_FLAGS."""
    from .main import cli

    found = dict(LIBRARY_FLAGS)
    for command in _commands(cli):
        for parameter in command.params:
            if isinstance(parameter, click.Option):
                found.setdefault(parameter.name, max(parameter.opts, key=len))
    return found


def user_errors() -> tuple[type[Exception], ...]:
    """Every exception a user can act on; the training package's own is imported here,
    lazily, so that the data pipeline never depends on it."""
    from simlidar.train.errors import TrainError

    return (PipelineError, SensorSpecError, TeacherError, IntrinsicsError, TrainError)


def usage_errors() -> tuple[type[Exception], ...]:
    """The user errors that are the command line's: an option's value that cannot work."""
    from simlidar.train.errors import TrainOptionError

    return (OptionError, TrainOptionError)


def with_flags(message: str) -> str:
    """`message` with each `parameter` it quotes written as its flag (unknown names unquoted)."""
    flags = flag_names()
    return re.sub(r"`(\w+)`", lambda match: flags.get(match.group(1), match.group(1)), message)

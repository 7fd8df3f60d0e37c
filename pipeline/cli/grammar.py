"""What every command shares in how it reads: names checked against their catalog before
any work (a misspelt one is a usage error with the names meant), the options that mean the
same on every command (--quiet, --overwrite), and a renamed flag kept working as a
hidden, deprecated alias."""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable, Iterable
from pathlib import Path

import click
from simlidar.sensors import MOUNTS, available_sensors
from simlidar.teachers import known_teachers
from simlidar.teachers.registry import is_hf_name


def did_you_mean(value: str, known: Iterable[str]) -> str:
    """' (did you mean A or B?)' for the known names close to `value`, else ''."""
    close = difflib.get_close_matches(value, list(known), n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(close)}?)" if close else ""


def _checked(kind: str, known: Callable[[], Iterable[str]], accepted: Callable[[str], bool], other: str):
    """A click callback that lets through a known name or what `accepted` takes and refuses
    anything else as a usage error (exit 2) naming the close names and every known one."""

    def check(context: click.Context, parameter: click.Parameter, value: str | None) -> str | None:
        if value is None or value in known() or accepted(value):
            return value
        names = list(known())
        raise click.BadParameter(
            f"unknown {kind} {value!r}{did_you_mean(value, names)}; known: {', '.join(names)}, {other}"
        )

    return check


check_sensor = _checked("sensor", available_sensors, lambda value: value.endswith(".toml"), "or a sensor .toml file")
check_teacher = _checked(
    "teacher",
    known_teachers,
    lambda value: value == "" or is_hf_name(value),
    "or hf:ORG/NAME (`simlidar teachers list`)",
)
check_mount = _checked(
    "mount",
    lambda: MOUNTS,
    lambda value: value == "" or Path(value).is_file(),
    "or a calibration file (KITTI calib.txt or calib_velo_to_cam.txt, .json/.toml with T_cam_lidar)",
)


def quiet_option(what: str = "No progress bar or summary."):
    return click.option("--quiet", is_flag=True, help=what)


def overwrite_option(what: str):
    return click.option("--overwrite", is_flag=True, help=what)


def renamed(old_flag: str, name: str, new_flag: str, **option):
    """Keep `old_flag` working as a hidden, deprecated alias of the option whose parameter is
    `name` (flag `new_flag`); giving both is a usage error. Apply below `@click.command()`."""
    alias = f"{name}_alias"

    def decorate(command: Callable) -> Callable:
        @functools.wraps(command)
        def with_alias(*args, **kwargs):
            value = kwargs.pop(alias)
            if value is not None:
                context = click.get_current_context()
                if context.get_parameter_source(name) != click.core.ParameterSource.DEFAULT:
                    raise click.UsageError(f"{old_flag} is the old name of {new_flag}: give {new_flag} only")
                click.echo(f"warning: {old_flag} is deprecated: use {new_flag}", err=True)
                kwargs[name] = value
            return command(*args, **kwargs)

        return click.option(old_flag, alias, default=None, hidden=True, **option)(with_alias)

    return decorate


def old_name(command: click.Command, name: str, new: str) -> click.Command:
    """`command` under its old `name`: hidden from help, and saying `new` is its name now."""
    return click.Command(
        name,
        params=command.params,
        callback=command.callback,
        help=command.help,
        hidden=True,
        deprecated=f"use `{new}`",
    )

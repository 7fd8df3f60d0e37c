"""`simlidar`: the command group, its commands, and the one place errors become one line."""

from __future__ import annotations

import sys

import click

from ..sources.urls import access_problem
from .bench import bench
from .convert import convert
from .errors import usage_errors, user_errors, with_flags
from .fidelity import fidelity
from .generate import generate
from .grammar import old_name
from .output import inspect_command, publish
from .sensors import sensors
from .teachers import teachers


@click.group(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(package_name="simlidar")
def cli() -> None:
    """Turn a folder of photos into LiDAR depth-completion training data (WebDataset shards)."""


for command in (generate, inspect_command, publish, bench, sensors, teachers, convert, fidelity):
    cli.add_command(command)


def add_training_commands() -> None:
    """The training commands come from `simlidar.train.cli`, imported here rather than at module
    level so that the data pipeline never depends on the training package; its benches go
    under `bench`, their old top-level names (bench-train, ...) kept as hidden aliases."""
    from simlidar.train.cli import BENCHES, evaluate, predict, train

    for command in (train, evaluate, predict):
        cli.add_command(command)
    for name, command in BENCHES.items():
        bench.add_command(command)
        cli.add_command(old_name(command, f"bench-{name}", f"simlidar bench {name}"))


def main() -> None:
    add_training_commands()
    try:
        # Outside standalone mode click returns a command's Exit(code) instead of raising it.
        code = cli.main(standalone_mode=False)
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("interrupted: finished shards are kept; re-run the same command to resume", err=True)
        sys.exit(130)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except user_errors() as error:
        # 2: the command line cannot work (as click's own usage errors); 1: the data or the run failed.
        click.echo(f"error: {with_flags(str(error))}", err=True)
        sys.exit(2 if isinstance(error, usage_errors()) else 1)
    except Exception as error:
        problem = access_problem(error)
        if problem is None:
            raise
        click.echo(f"error: {problem}", err=True)
        sys.exit(1)
    if isinstance(code, int) and code:
        sys.exit(code)

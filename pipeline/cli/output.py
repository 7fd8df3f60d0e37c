"""`simlidar inspect` and `simlidar publish`: check a finished output, put it on the Hub."""

from __future__ import annotations

import click

from ..output.store import open_store
from .grammar import quiet_option


class _OldPositional(click.Argument):
    """The positional OUT these commands took before --shards: still read, not shown."""

    def get_usage_pieces(self, context: click.Context) -> list[str]:
        return []


def _shards_options(command):
    """--shards (the output to read), and the positional it replaces as a hidden, deprecated alias."""
    shards = click.option(
        "--shards", default=None, help="The output folder `simlidar generate` wrote, or its URL (s3://...) [required]."
    )
    old = click.argument("out", required=False, cls=_OldPositional)
    return shards(old(command))


def _shards_location(shards: str | None, out: str | None) -> str:
    if shards and out:
        raise click.UsageError(f"give the output once: --shards {shards}")
    if out:
        click.echo(f"warning: the positional OUT is deprecated: write --shards {out}", err=True)
    if not (shards or out):
        raise click.UsageError("Missing option '--shards': the output folder that `simlidar generate` wrote")
    return shards or out


@click.command("inspect")
@_shards_options
@click.option("--previews", default=12, type=click.IntRange(min=0), help="Samples on the contact sheet (0: none).")
@quiet_option("Print only problems (and the exit code says whether there are any).")
def inspect_command(shards: str | None, out: str | None, previews: int, quiet: bool) -> None:
    """Check every shard in --shards (a folder or a URL) against its manifest, print statistics, and
    write previews/ beside them (contact_sheet.png: RGB, sparse LiDAR over RGB, dense depth; stats.json)."""
    from ..errors import PipelineError
    from ..output.inspect import PREVIEWS, format_report, inspect_output
    from ..output.manifest import run_command

    location = _shards_location(shards, out)
    store = open_store(location)
    copy = store.local_copy()
    report = inspect_output(copy.root, previews)
    store.save_back(copy, PREVIEWS)
    if not quiet:
        for line in format_report(report):
            click.echo(line)
        click.echo(f"previews in {store.where(PREVIEWS)}/")
    for problem in report.problems:
        click.echo(f"problem: {problem}", err=True)
    if report.problems:
        raise PipelineError(
            f"{len(report.problems)} problems in {location} (listed above); re-run `{run_command(report.manifest)}` "
            "on it"
        )


@click.command()
@_shards_options
@click.option("--repo", required=True, help="Hub dataset repo, USER/NAME or ORG/NAME (created if missing).")
@click.option("--private", is_flag=True, help="Create the repo as private.")
@click.option("--revision", default=None, help="Branch to upload to (created if missing) [default: main].")
@click.option(
    "--license",
    "licence",
    default=None,
    help="Licence id for the card (e.g. cc-by-4.0, apache-2.0): your photos' and the teacher's terms decide it "
    "[default: other, with a warning on the card].",
)
@click.option("--split", default="train", help="Split the shards belong to (data/SPLIT/ on the Hub).")
@click.option("--dry-run", is_flag=True, help="Check and stage OUT/hub (shards, card, preview); upload nothing.")
@quiet_option("Print only the uploaded commit's URL (and warnings).")
def publish(
    shards: str | None,
    out: str | None,
    repo: str,
    private: bool,
    revision: str | None,
    licence: str | None,
    split: str,
    dry_run: bool,
    quiet: bool,
) -> None:
    """Publish --shards (a folder or a URL) to the Hugging Face Hub as a dataset that `datasets`
    and webdataset load.

    The output is checked first (as `simlidar inspect` does); a URL is staged in a local copy.
    The token comes from HF_TOKEN or `hf auth login`; re-running after an interrupted upload resumes it.
    """
    from ..output.publish import UNSET_LICENCE, check_licence, stage, upload

    location = _shards_location(shards, out)
    check_licence(licence or UNSET_LICENCE)  # before an output on a store is downloaded
    folder = open_store(location).local_copy().root
    staging = stage(folder, repo, licence, split, revision or "main")
    if licence is None:
        click.echo(
            f"warning: no --license given, so the card says `{UNSET_LICENCE}`: the data carries your photos' licence "
            "and the teacher's terms (in the card); pass --license ID (e.g. cc-by-4.0)",
            err=True,
        )
    if not quiet:
        click.echo(f"staged {folder / 'hub'}/ (data/{split}/, README.md dataset card, previews/)")
    if dry_run:
        return
    click.echo(f"uploaded: {upload(staging, repo, private, revision)}")

"""`simlidar inspect` and `simlidar publish`: check a finished output, put it on the Hub."""

from __future__ import annotations

import click

from ..output.store import open_store


@click.command("inspect")
@click.argument("out")
@click.option("--previews", default=12, type=click.IntRange(min=0), help="Samples on the contact sheet (0: none).")
def inspect_command(out: str, previews: int) -> None:
    """Check every shard in OUT (a folder or a URL) against its manifest, print statistics, and
    write OUT/previews/ (contact_sheet.png: RGB, sparse LiDAR over RGB, dense depth; stats.json)."""
    from ..errors import PipelineError
    from ..output.inspect import PREVIEWS, format_report, inspect_output
    from ..output.manifest import run_command

    store = open_store(out)
    copy = store.local_copy()
    report = inspect_output(copy.root, previews)
    for line in format_report(report):
        click.echo(line)
    store.save_back(copy, PREVIEWS)
    click.echo(f"previews in {store.where(PREVIEWS)}/")
    for problem in report.problems:
        click.echo(f"problem: {problem}", err=True)
    if report.problems:
        raise PipelineError(
            f"{len(report.problems)} problems in {out} (listed above); re-run `{run_command(report.manifest)}` on it"
        )


@click.command()
@click.argument("out")
@click.option("--repo", required=True, help="Hub dataset repo, USER/NAME or ORG/NAME (created if missing).")
@click.option("--private", is_flag=True, help="Create the repo as private.")
@click.option("--revision", default=None, help="Branch to upload to (created if missing) [default: main].")
@click.option("--license", "licence", default="other", help="Licence id for the card (e.g. cc-by-4.0, apache-2.0).")
@click.option("--split", default="train", help="Split the shards belong to (data/SPLIT/ on the Hub).")
@click.option("--dry-run", is_flag=True, help="Check and stage OUT/hub (shards, card, preview); upload nothing.")
def publish(out: str, repo: str, private: bool, revision: str | None, licence: str, split: str, dry_run: bool) -> None:
    """Publish OUT (a folder or a URL) to the Hugging Face Hub as a dataset that `datasets`
    and webdataset load.

    OUT is checked first (as `simlidar inspect` does); a URL is staged in a local copy. The
    token comes from HF_TOKEN or `hf auth login`; re-running after an interrupted upload resumes it.
    """
    from ..output.publish import check_licence, stage, upload

    check_licence(licence)  # before an output on a store is downloaded
    folder = open_store(out).local_copy().root
    staging = stage(folder, repo, licence, split, revision or "main")
    click.echo(f"staged {folder / 'hub'}/ (data/{split}/, README.md dataset card, previews/)")
    if dry_run:
        return
    click.echo(f"uploaded: {upload(staging, repo, private, revision)}")

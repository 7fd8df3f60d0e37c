"""What every command that runs the engine shares (`generate` and each `convert`): how the
run is distributed, whether it may replace another, and the summary printed at its end."""

from __future__ import annotations

import click

from ..config import RunConfig
from ..output.store import open_store
from .grammar import overwrite_option, quiet_option

RUN_OPTIONS = (
    click.option(
        "--workers",
        default=0,
        type=click.IntRange(min=0),
        help="Shards made at a time, as Ray tasks (0: one per CPU core; 1: in this process, without Ray).",
    ),
    click.option(
        "--address",
        default=None,
        envvar="RAY_ADDRESS",
        help="Ray cluster to join (also RAY_ADDRESS); local inputs and --out must be on storage every node can "
        "reach, URLs (s3://, gs://) need no shared filesystem [default: a local Ray].",
    ),
    click.option(
        "--teacher-actors",
        default=None,
        type=click.IntRange(min=0),
        help="On Ray: model copies serving every shard's teacher batches (0: one per task) "
        "[default: one per GPU, none without GPUs].",
    ),
    overwrite_option("Replace a different or finished run in --out."),
    quiet_option(),
)


def run_options(command):
    """Add RUN_OPTIONS to a click command."""
    for option in reversed(RUN_OPTIONS):
        command = option(command)
    return command


def run_and_report(
    config: RunConfig,
    out: str,
    unit: str,
    overwrite: bool,
    quiet: bool,
    workers: int,
    address: str | None,
    teacher_actors: int | None,
) -> None:
    """Make every missing shard of `config` in OUT, then say what was read and written
    (unit: what one input is, plural: images, frames)."""
    from ..runner import generate as run

    store = open_store(out)
    summary = run(
        config,
        store,
        overwrite=overwrite,
        progress=not quiet,
        workers=workers,
        address=address,
        teacher_actors=teacher_actors,
    )
    for shard, why in summary.shards_remade:
        click.echo(f"made {shard} again: {why}", err=True)
    if quiet:
        return
    totals = summary.manifest["totals"]
    skipped = totals["images_skipped"]
    click.echo(
        f"read {totals['images_written']} of {totals['inputs']} {unit}"
        + (f" ({skipped} skipped, see {store.where('errors.jsonl')})" if skipped else "")
    )
    click.echo(
        f"wrote {totals['samples']} samples in {summary.shards_total} shard{'s' if summary.shards_total != 1 else ''}"
        + (f" ({summary.shards_resumed} already done)" if summary.shards_resumed else "")
        + f": {totals['points_per_sample']:.0f} points per sample "
        f"({totals['points_min']}-{totals['points_max']}), "
        f"{totals['sparse_pixels_per_sample']:.0f} sparse pixels per sample"
    )
    click.echo(_made_with(summary.manifest))
    click.echo(f"took {summary.elapsed_s:.1f} s; output in {store}/")


def _made_with(manifest: dict) -> str:
    """Where the samples' depth and intrinsics came from and the mount: what the options resolved to."""
    from ..output.manifest import describe_sources

    resolved = manifest["resolved"]
    words = describe_sources(resolved)
    line = f"depth from {words['teacher']}; intrinsics from {words['intrinsics']}; mount {resolved['mount']}"
    random = resolved["intrinsics"].get("random", 0)
    if random:
        samples = manifest["totals"]["samples"]
        every = "every sample" if random == samples else f"{random} of {samples} samples"
        line += (
            f"\nnote: {every} got a random field of view (--fov-range): where you know the camera, give each "
            "photo a .json with fx, fy, cx, cy, or pass --fov or --intrinsics"
        )
    return line

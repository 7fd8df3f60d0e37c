"""`simlidar`: the command line."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from simlidar.sensors import MOUNTS, available_sensors

from .bench import bench
from .config import TEACHERS, GenerateConfig
from .errors import USER_ERRORS
from .mesh import METHODS, MeshOptions


def _parse_intrinsics_option(context, parameter, value):
    if value is None:
        return None
    from simlidar.teachers import IntrinsicsError, parse_intrinsics

    try:
        return parse_intrinsics(value)
    except IntrinsicsError as error:
        raise click.BadParameter(str(error)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(package_name="simlidar")
def cli() -> None:
    """Turn a folder of photos into LiDAR depth-completion training data (WebDataset shards)."""


@cli.command()
@click.option(
    "--images", required=True, type=click.Path(path_type=Path), help="Folder of photos (searched recursively)."
)
@click.option(
    "--sensor",
    default="hdl64",
    help=f"LiDAR to simulate: {', '.join(available_sensors())}, or a path to a sensor .toml file.",
)
@click.option(
    "--out", default=Path("out"), type=click.Path(path_type=Path), help="Output folder for shards and manifest."
)
@click.option(
    "--mount", default="", show_default=False, help=f"LiDAR placement: {', '.join(MOUNTS)} [default: the sensor's own]."
)
@click.option("--teacher", default="sidecar", type=click.Choice(TEACHERS), help="Where dense depth comes from.")
@click.option("--seed", default=0, type=int, help="Run seed; the same seed gives byte-identical shards.")
@click.option("--limit", default=None, type=int, help="Use only the first N photos (sorted by path).")
@click.option("--shard-size", default=500, type=int, help="Photos per shard (the unit of work and resume).")
@click.option("--views", default=1, type=int, help="Samples per photo, each with its own LiDAR pose jitter.")
@click.option(
    "--fov", "fov_deg", default=None, type=float, help="Horizontal field of view (deg) for photos with no intrinsics."
)
@click.option(
    "--intrinsics",
    default=None,
    callback=_parse_intrinsics_option,
    help="fx,fy,cx,cy in pixels for every photo (overrides photo.json and --fov).",
)
@click.option("--save-points", is_flag=True, help="Also store each scan's N x 5 points (x, y, z, intensity, ring).")
@click.option(
    "--max-depth-jump",
    default=MeshOptions.max_depth_jump,
    type=float,
    help="Mesh: cut triangles whose relative depth range exceeds this (no rubber sheets).",
)
@click.option(
    "--max-grazing-deg",
    default=MeshOptions.max_grazing_deg,
    type=float,
    help="Mesh: cut triangles seen more obliquely.",
)
@click.option(
    "--occlusion-fill",
    "occlusion_fill_px",
    default=MeshOptions.occlusion_fill_px,
    type=int,
    help="Mesh: pixels the background extends behind occluding edges (see-through points; 0 = off).",
)
@click.option(
    "--mesh",
    default=MeshOptions.method,
    type=click.Choice(METHODS),
    help="Mesh method: grid (a triangle pair per pixel quad), decimated (grid simplified, edges kept), "
    "poisson (screened Poisson surface, trimmed to the input points).",
)
@click.option(
    "--mesh-stride", default=MeshOptions.stride, type=int, help="Mesh: use every K-th pixel in both directions."
)
@click.option(
    "--mesh-faces",
    default=MeshOptions.target_faces,
    type=float,
    help="Mesh decimated: visible faces to keep, a count, or a fraction of the grid's when below 1.",
)
@click.option(
    "--poisson-depth", default=MeshOptions.poisson_depth, type=int, help="Mesh poisson: octree depth (detail)."
)
@click.option(
    "--poisson-trim",
    "poisson_trim_px",
    default=MeshOptions.poisson_trim_px,
    type=float,
    help="Mesh poisson: drop surface further than this many pixel footprints from the input points.",
)
@click.option(
    "--jitter-translation", "jitter_translation_m", default=0.02, type=float, help="Mount jitter, +- metres per axis."
)
@click.option(
    "--jitter-rotation",
    "jitter_rotation_deg",
    default=0.5,
    type=float,
    help="Mount jitter, +- deg of roll, pitch, yaw.",
)
@click.option("--overwrite", is_flag=True, help="Replace a different or finished run in --out.")
@click.option("--quiet", is_flag=True, help="No progress bar or summary.")
def generate(out: Path, overwrite: bool, quiet: bool, images: Path, **options) -> None:
    """Simulate a LiDAR over every photo in --images and write WebDataset shards to --out.

    Re-running the same command resumes: finished shards are kept, unfinished ones redone.
    """
    from .runner import generate as run_generate

    config = GenerateConfig(images=str(images.resolve()), **options)
    summary = run_generate(config, out, overwrite=overwrite, progress=not quiet)
    if quiet:
        return
    totals = summary.manifest["totals"]
    click.echo(
        f"read {totals['images_written']} of {totals['inputs']} images"
        + (f" ({totals['images_skipped']} skipped, see {out / 'errors.jsonl'})" if totals["images_skipped"] else "")
    )
    click.echo(
        f"wrote {totals['samples']} samples in {summary.shards_total} shards"
        + (f" ({summary.shards_resumed} already done)" if summary.shards_resumed else "")
        + f": {totals['points_per_sample']:.0f} points per sample "
        f"({totals['points_min']}-{totals['points_max']}), "
        f"{totals['sparse_pixels_per_sample']:.0f} sparse pixels per sample"
    )
    click.echo(f"took {summary.elapsed_s:.1f} s; output in {out}/")


cli.add_command(bench)


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("interrupted: finished shards are kept; re-run the same command to resume", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("interrupted: finished shards are kept; re-run the same command to resume", err=True)
        sys.exit(130)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except USER_ERRORS as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(2)

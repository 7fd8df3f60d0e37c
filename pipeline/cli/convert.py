"""`simlidar convert`: real datasets into shards of the simlidar schema."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import PipelineError


@click.group()
def convert() -> None:
    """Turn real datasets into shards of the simlidar schema."""


@convert.command()
@click.argument("root", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Output folder for the shards.")
@click.option(
    "--split",
    default="train",
    type=click.Choice(("train", "val", "val_selection_cropped")),
    help="Which part of the benchmark to convert.",
)
@click.option("--raw", default=None, type=click.Path(path_type=Path), help="KITTI raw images [default: ROOT/raw].")
@click.option(
    "--teacher",
    default=None,
    help="Teacher whose relative disparity goes in teacher.png: a name of `simlidar teachers list`, hf:ORG/NAME "
    "or sidecar (photo.depth.png beside each raw image) [default: none].",
)
@click.option(
    "--teacher-output",
    default=None,
    type=click.Choice(("metric", "disparity", "depth")),
    help="What an hf:ORG/NAME teacher predicts.",
)
@click.option("--shard-size", default=1000, type=int, help="Frames per shard.")
@click.option("--limit", default=None, type=int, help="Convert only the first N frames (sorted).")
@click.option("--overwrite", is_flag=True, help="Replace shards already in --out.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def kitti(root, out, split, raw, teacher, teacher_output, shard_size, limit, overwrite, quiet) -> None:
    """KITTI depth completion (ROOT holds data_depth_velodyne, data_depth_annotated, raw, depth_selection)."""
    from simlidar.teachers import load_teacher

    from ..sources.kitti import convert_kitti

    if shard_size < 1:
        raise PipelineError("--shard-size must be at least 1")
    teacher_model = load_teacher(teacher, output=teacher_output) if teacher else None
    manifest = convert_kitti(root, out, split, teacher_model, raw, shard_size, limit, overwrite, progress=not quiet)
    click.echo(f"wrote {manifest['samples']} {split} frames in {len(manifest['shards'])} shards to {out}/")

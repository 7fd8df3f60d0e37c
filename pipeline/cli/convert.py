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


@convert.command("rig")
@click.argument("root", type=click.Path(path_type=Path))
@click.option("--rig", required=True, type=click.Path(path_type=Path), help="The calibration (ROOT/calibration.json).")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Output folder for the shards.")
@click.option(
    "--teacher",
    default=None,
    help="Teacher whose relative disparity goes in teacher.png: a name of `simlidar teachers list`, hf:ORG/NAME "
    "or sidecar (CAMERA/FRAME.depth.png beside each image) [default: none].",
)
@click.option(
    "--teacher-output",
    default=None,
    type=click.Choice(("metric", "disparity", "depth")),
    help="What an hf:ORG/NAME teacher predicts.",
)
@click.option("--lidar-folder", default=None, help="Folder of ROOT with the sweeps [default: the one with .bin/.pcd].")
@click.option(
    "--lidar-columns",
    default="auto",
    type=click.Choice(("auto", "4", "5")),
    help=".bin sweeps: float32 values per point (4: x y z reflectance; 5: x y z intensity ring).",
)
@click.option("--shard-size", default=100, type=int, help="Frames per shard (a frame's cameras stay together).")
@click.option("--overwrite", is_flag=True, help="Replace shards already in --out.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def convert_rig_command(
    root, rig, out, teacher, teacher_output, lidar_folder, lidar_columns, shard_size, overwrite, quiet
) -> None:
    """A calibrated camera rig with real LiDAR sweeps (ROOT/CAMERA/FRAME.jpg, ROOT/LIDAR/FRAME.bin|.pcd)."""
    from simlidar.teachers import load_teacher

    from ..sources.calibrated_rig_lidar import convert_rig

    if shard_size < 1:
        raise PipelineError("--shard-size must be at least 1")
    teacher_model = load_teacher(teacher, output=teacher_output) if teacher else None
    manifest = convert_rig(
        root, str(rig), out, teacher_model, lidar_folder, lidar_columns, shard_size, not quiet, overwrite
    )
    skipped = f" ({manifest['skipped']} frames skipped: {out}/errors.jsonl)" if manifest["skipped"] else ""
    click.echo(f"wrote {manifest['samples']} samples of {manifest['frames']} frames to {out}/{skipped}")

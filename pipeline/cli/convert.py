"""`simlidar convert`: real datasets into shards of the simlidar schema, made by the same
engine as `generate` (lock, verified resume, Ray, object-store outputs, errors.jsonl)."""

from __future__ import annotations

import os
from dataclasses import fields

import click

from ..config import ConvertKittiConfig, ConvertRigConfig
from ..sources.calibrated_rig_lidar import LIDAR_COLUMNS
from ..sources.kitti import SPLITS
from ..sources.urls import absolute_location
from .engine import run_and_report, run_options
from .grammar import check_teacher

TEACHER_OUTPUTS = ("metric", "disparity", "depth")
# Every default is the config's: the CLI names no value of its own.
KITTI_DEFAULTS = {field.name: field.default for field in fields(ConvertKittiConfig)}
RIG_DEFAULTS = {field.name: field.default for field in fields(ConvertRigConfig)}


@click.group()
def convert() -> None:
    """Turn real datasets into shards of the simlidar schema."""


def _teacher_options(beside: str):
    """--teacher and --teacher-output (by default none); `beside`: where a sidecar teacher
    finds depth."""
    teacher = click.option(
        "--teacher",
        default=KITTI_DEFAULTS["teacher"],
        show_default=False,
        callback=check_teacher,
        help="Teacher whose relative disparity goes in teacher.png: a name of `simlidar teachers list`, hf:ORG/NAME "
        f"or sidecar ({beside}) [default: none].",
    )
    output = click.option(
        "--teacher-output",
        default=KITTI_DEFAULTS["teacher_output"],
        show_default=False,
        type=click.Choice(("", *TEACHER_OUTPUTS)),
        help="What an hf:ORG/NAME teacher predicts [default: none].",
    )
    return lambda command: teacher(output(command))


@convert.command()
@click.argument("root")
@click.option("--out", required=True, help="Output folder for the shards, or a URL (s3://bucket/run/).")
@click.option(
    "--split",
    default=KITTI_DEFAULTS["split"],
    type=click.Choice(SPLITS),
    help="Which part of the benchmark to convert.",
)
@click.option("--raw", default=KITTI_DEFAULTS["raw"], show_default=False, help="KITTI raw images [default: ROOT/raw].")
@_teacher_options("photo.depth.png beside each raw image")
@click.option(
    "--shard-size",
    default=KITTI_DEFAULTS["shard_size"],
    type=int,
    help="Frames per shard (the unit of work and resume).",
)
@click.option("--limit", default=KITTI_DEFAULTS["limit"], type=int, help="Convert only the first N frames (sorted).")
@run_options
def kitti(root, out, raw, overwrite, quiet, workers, address, teacher_actors, **options) -> None:
    """KITTI depth completion (ROOT holds data_depth_velodyne, data_depth_annotated, raw, depth_selection).

    Re-running the same command resumes: finished shards are kept, unfinished ones redone."""
    raw = absolute_location(raw) if raw else ""
    config = ConvertKittiConfig(root=absolute_location(root), raw=raw, **options)
    run_and_report(config, out, "frames", overwrite, quiet, workers, address, teacher_actors)


@convert.command("rig")
@click.argument("root")
@click.option("--rig", required=True, help="The calibration (ROOT/calibration.json).")
@click.option("--out", required=True, help="Output folder for the shards, or a URL (s3://bucket/run/).")
@_teacher_options("CAMERA/FRAME.depth.png beside each image")
@click.option(
    "--lidar-folder",
    default=RIG_DEFAULTS["lidar_folder"],
    show_default=False,
    help="Folder of ROOT with the sweeps [default: the one with .bin/.pcd].",
)
@click.option(
    "--lidar-columns",
    default=RIG_DEFAULTS["lidar_columns"],
    type=click.Choice(LIDAR_COLUMNS),
    help=".bin sweeps: float32 values per point (4: x y z reflectance; 5: x y z intensity ring).",
)
@click.option(
    "--shard-size",
    default=RIG_DEFAULTS["shard_size"],
    type=int,
    help="Frames per shard (a frame's cameras stay together).",
)
@click.option("--limit", default=RIG_DEFAULTS["limit"], type=int, help="Convert only the first N frames (sorted).")
@run_options
def convert_rig_command(root, rig, out, overwrite, quiet, workers, address, teacher_actors, **options) -> None:
    """A calibrated camera rig with real LiDAR sweeps (ROOT/CAMERA/FRAME.jpg, ROOT/LIDAR/FRAME.bin|.pcd).

    Re-running the same command resumes: finished shards are kept, unfinished ones redone."""
    config = ConvertRigConfig(root=absolute_location(root), rig=os.path.abspath(rig), **options)
    run_and_report(config, out, "frames", overwrite, quiet, workers, address, teacher_actors)

"""`simlidar bench ...`: every benchmark, one subcommand each, with defaults that work from any
folder (the bundled scenes and the shared real data are found where simlidar lies); the
figures come from pipeline/bench/ (and train/ for the training benches)."""

from __future__ import annotations

from pathlib import Path

import click

from ..bench.edges import BLURS, print_edge_table
from ..bench.frame import print_frame_table, print_mesh_table
from ..bench.gpu_plan import SIZE_CHOICES
from ..sources.bundled import SCENES, existing, shared_data
from ..stages.edges import RULES as EDGE_RULES
from .grammar import check_sensor, check_teacher

KITTI_OBJECTS = "kitti_object"
KITTI_OBJECT = f"{KITTI_OBJECTS}/000134"


def _images_option(command):
    return click.option(
        "--images",
        default=None,
        type=click.Path(path_type=Path),
        help=f"Photos with sidecar depth and intrinsics [default: the bundled scenes, {SCENES}].",
    )(command)


def _kitti_object_option(help_text: str):
    return click.option(
        "--kitti-object",
        default=None,
        type=click.Path(path_type=Path),
        help=f"{help_text} [default: {KITTI_OBJECT} of the shared data, {shared_data('')}].",
    )


def _repeats_option(command):
    return click.option("--repeats", default=5, type=click.IntRange(min=1), help="Runs per photo; medians reported.")(
        command
    )


def _sensor_option(command):
    return click.option("--sensor", default="hdl64", callback=check_sensor, help="Sensor to simulate.")(command)


def _scenes(images: Path | None) -> Path:
    return images or existing(SCENES, "the bundled scenes (examples/scenes of a checkout)", "pass --images DIR")


@click.group(invoke_without_command=True)
@click.pass_context
def bench(context: click.Context) -> None:
    """Benchmarks that print figures (times, ratios, fidelity); without a subcommand, `bench frame`."""
    if context.invoked_subcommand is None:
        context.invoke(frame)


@bench.command()
@_images_option
@_kitti_object_option(
    "A KITTI object frame DIR/NAME (NAME.bin, .png, .calib.txt) as a real-depth frame; skipped if absent"
)
@_sensor_option
@_repeats_option
def frame(images: Path | None, kitti_object: Path | None, sensor: str, repeats: int) -> None:
    """Per-stage milliseconds per frame of the default mesh method (march) and the grid side by side,
    their ratio and the march's fidelity to the grid's returns."""
    print_frame_table(_scenes(images), kitti_object or shared_data(KITTI_OBJECT), sensor, repeats)


@bench.command()
@_images_option
@_sensor_option
@_repeats_option
def meshes(images: Path | None, sensor: str, repeats: int) -> None:
    """Each mesh method's time, size and fidelity."""
    print_mesh_table(_scenes(images), sensor, repeats)


@bench.command()
@_images_option
@_kitti_object_option("A KITTI object frame DIR/NAME: every frame beside it is scanned too")
@click.option(
    "--edge-rule",
    default="photo",
    type=click.Choice(EDGE_RULES),
    help="The edge rule the scans use (generate's --edges).",
)
@click.option("--blurs", default=BLURS, help="The soft depths, KIND:F each.")
@_repeats_option
def edges(images: Path | None, kitti_object: Path | None, edge_rule: str, blurs: str, repeats: int) -> None:
    """Scans of blurred copies of true depth (stand-ins for a teacher's soft edges, the photo sharp):
    flying returns, returns, row-profile correlation with the real scan, cost of the edge rule."""
    if kitti_object is None:
        remedy = "pass --kitti-object DIR/NAME, or set SIMLIDAR_DATA to the shared data"
        kitti_object = existing(shared_data(KITTI_OBJECTS), "the shared KITTI object frames", remedy) / "000134"
    print_edge_table(_scenes(images), kitti_object, edge_rule, blurs, repeats)


@bench.command()
@_images_option
@click.option("--workers", default=0, type=click.IntRange(min=0), help="Workers to compare with one (0: all cores).")
def scaling(images: Path | None, workers: int) -> None:
    """Parallel efficiency on Ray and peak memory for 100 vs 1000 photos."""
    from ..bench.scaling import print_scaling

    print_scaling(_scenes(images), workers)


@bench.command()
@click.option("--out", required=True, help="Object-store URL (s3://bucket/prefix) the timed runs write into.")
@_images_option
@click.option("--frames", default=16, type=click.IntRange(min=1), help="Photos per run.")
def store(out: str, images: Path | None, frames: int) -> None:
    """A run's throughput into an object store against the same run on local disk."""
    from ..bench.store import print_store_throughput

    print_store_throughput(_scenes(images), out, frames)


@bench.command()
@click.option("--teacher", required=True, callback=check_teacher, help="The teacher to time.")
@click.option("--batch-sizes", default="1,2,4,8", help="Batch sizes to time.")
@click.option(
    "--random-weights",
    is_flag=True,
    help="depth-anything-v2-small or -base: the published architecture, random weights.",
)
@click.option("--device", default="auto", help="auto, cpu, cuda[:N] or mps.")
@click.option("--dtype", default="auto", help="auto (fp16 on CUDA), fp32, fp16, bf16.")
@click.option("--image-size", default="640x480", help="WxH of the synthetic photos.")
@_repeats_option
def teacher(teacher: str, repeats: int, **options) -> None:
    """A teacher's images/s per batch size."""
    from ..bench.teacher import print_teacher_bench

    print_teacher_bench(teacher, repeats=repeats, **options)


@bench.command()
@click.option(
    "--size",
    type=click.Choice(SIZE_CHOICES),
    default="auto",
    help="auto: the full run on a CUDA GPU (under 8 minutes on one), else the CPU half (a few minutes on 2 cores); "
    "gpu, cpu: either one; tiny: every part at its smallest (for tests).",
)
@click.option(
    "--json",
    "json_path",
    default=Path("out/bench-gpu.json"),
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where the table is written as JSON (with the run's size, the device and each part's seconds).",
)
def gpu(size: str, json_path: Path) -> None:
    """In one run: the teacher's bare forward (Depth Anything V2 small and base, fp32 and fp16,
    batch 1/8/32), generate with the teacher on GPU actors against that forward, and training
    (completion and bins-kd) with AMP and channels-last, then under torchrun on every GPU.
    Without a GPU it says so and runs the CPU half."""
    from simlidar.train import gpu_bench as training

    from ..bench.gpu import run_gpu_bench

    if not run_gpu_bench(size, json_path, training):
        raise click.exceptions.Exit(1)

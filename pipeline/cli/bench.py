"""`simlidar bench` (a frame's stages, or the mode its flags choose) and `simlidar bench gpu`:
which benchmark to run and its options; the figures come from pipeline/bench/."""

from __future__ import annotations

from pathlib import Path

import click
from click.core import ParameterSource

from ..bench.edges import BLURS, print_edge_table
from ..bench.frame import print_frame_table, print_mesh_table
from ..bench.gpu_plan import SIZE_CHOICES
from ..stages.edges import RULES as EDGE_RULES


def _path_option(flag: str, default: str, help_text: str):
    return click.option(flag, default=Path(default), type=click.Path(path_type=Path), show_default=True, help=help_text)


@click.group(invoke_without_command=True)
@_path_option(
    "--images", "examples/scenes", "Photos with sidecar depth and intrinsics (the bundled scenes by default)."
)
@_path_option(
    "--kitti-object",
    "../shared/data/kitti_object/000134",
    "A KITTI object frame DIR/NAME (NAME.bin, .png, .calib.txt): its densified scan is a real-depth frame; "
    "skipped if absent.",
)
@click.option("--sensor", default="hdl64", show_default=True, help="Sensor to simulate.")
@click.option("--repeats", default=5, show_default=True, help="Runs per photo; medians are reported.")
@click.option(
    "--edges",
    is_flag=True,
    help="Scan blurred copies of true depth (stand-ins for a teacher's soft edges, the photo sharp) of the "
    "photos and of every KITTI object frame beside --kitti-object instead: flying returns, returns, row-profile "
    "correlation with the real scan, cost of the edge rule.",
)
@click.option(
    "--edge-rule",
    default="photo",
    show_default=True,
    type=click.Choice(EDGE_RULES),
    help="--edges: the edge rule the table's scans use (generate's --edges).",
)
@click.option("--blurs", default=BLURS, show_default=True, help="--edges: the soft depths, KIND:F each.")
@click.option("--meshes", is_flag=True, help="Compare the mesh methods (time, faces, fidelity) instead.")
@click.option(
    "--scaling", is_flag=True, help="Measure parallel efficiency on Ray and peak memory for 100 vs 1000 photos instead."
)
@click.option(
    "--workers", default=0, type=click.IntRange(min=0), help="--scaling: workers to compare with one (0: all cores)."
)
@click.option(
    "--store",
    default="",
    help="Time one run into this object-store URL (s3://bucket/prefix) against the same run on local disk instead.",
)
@click.option("--frames", default=16, show_default=True, type=click.IntRange(min=1), help="--store: photos per run.")
@click.option("--teacher", default="", show_default=False, help="Time this teacher instead (images/s per batch size).")
@click.option("--batch-sizes", default="1,2,4,8", show_default=True, help="--teacher: batch sizes to time.")
@click.option(
    "--random-weights",
    is_flag=True,
    help="--teacher depth-anything-v2-small or -base: the published architecture with random weights.",
)
@click.option("--device", default="auto", show_default=True, help="--teacher: auto, cpu, cuda[:N] or mps.")
@click.option("--dtype", default="auto", show_default=True, help="--teacher: auto (fp16 on CUDA), fp32, fp16, bf16.")
@click.option("--image-size", default="640x480", show_default=True, help="--teacher: WxH of the synthetic photos.")
@click.pass_context
def bench(
    context: click.Context,
    images: Path,
    kitti_object: Path,
    sensor: str,
    repeats: int,
    edges: bool,
    edge_rule: str,
    blurs: str,
    meshes: bool,
    scaling: bool,
    workers: int,
    store: str,
    frames: int,
    teacher: str,
    **teacher_bench,
) -> None:
    """Print per-stage milliseconds per frame of the default mesh method (march) and the
    grid side by side, their ratio and the march's fidelity to the grid's returns,
    or with --meshes each mesh method's time, size and fidelity, or with --scaling how
    the runner scales with workers and input count, or with --store a run's throughput
    into an object store against local disk, or with --edges scans of soft stand-ins for a
    teacher's depth edges. `simlidar bench gpu` measures what a GPU gives."""
    if context.invoked_subcommand is not None:
        given = [name for name in context.params if context.get_parameter_source(name) != ParameterSource.DEFAULT]
        if given:
            flags = ", ".join(f"--{name.replace('_', '-')}" for name in given)
            raise click.UsageError(f"{flags} belong to the frame bench, not to `bench {context.invoked_subcommand}`")
        return
    if store:
        from ..bench.store import print_store_throughput

        print_store_throughput(images, store, frames)
        return
    if teacher:
        from ..bench.teacher import print_teacher_bench

        print_teacher_bench(teacher, repeats=repeats, **teacher_bench)
        return
    if meshes:
        print_mesh_table(images, sensor, repeats)
        return
    if edges:
        print_edge_table(images, kitti_object, edge_rule, blurs, repeats)
        return
    if scaling:
        from ..bench.scaling import print_scaling

        print_scaling(images, workers)
        return
    print_frame_table(images, kitti_object, sensor, repeats)


@bench.command()
@click.option(
    "--size",
    type=click.Choice(SIZE_CHOICES),
    default="auto",
    show_default=True,
    help="auto: the full run on a CUDA GPU (under 8 minutes on one), else the CPU half (a few minutes on 2 cores); "
    "gpu, cpu: either one; tiny: every part at its smallest (for tests).",
)
@click.option(
    "--json",
    "json_path",
    default=Path("out/bench-gpu.json"),
    type=click.Path(dir_okay=False, path_type=Path),
    show_default=True,
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

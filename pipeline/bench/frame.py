"""`simlidar bench`: per-stage time per frame on real inputs (the bundled scenes and a
densified real KITTI scan), the default march method against the grid mesh side by
side with the march's fidelity to the grid's returns; with --meshes, every mesh method
measured against the others (time, size, fidelity)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import click
import numpy as np
from simlidar.sensors import MOUNTS, load_sensor, mount_pose
from simlidar.sensors.depth_grid import load_kernels
from simlidar.sensors.raycast import render_depth
from simlidar.teachers import DepthPrediction

from .. import schema
from ..config import GenerateConfig
from ..output.fidelity import RealFrame, densify, project_scan, read_kitti_object_frame
from ..output.store import LocalStore
from ..sources.photos import list_images, load_image
from ..stages.march import fidelity_against_grid
from ..stages.mesh import METHODS, MeshOptions
from ..stages.scan import simulate_rig_scan
from ..stages.scene import Scene, SceneCamera, sidecar_camera, simulate_scene
from ..stages.target import ray_target
from ..stages.timing import StageTimes
from ..stages.views import PhotoViews
from ..writer import ShardWriter

STAGES = ("read", "teacher", "edges", "mesh", "scene", "rays", "cast", "project", "encode", "write")
# A LiDAR return nearer than the camera-visible surface by more than this is invented.
INVENTED_MARGIN_M = 0.3


# The default and today's path, measured side by side.
COMPARED = ("march", "grid")


@dataclass(frozen=True)
class BenchInput:
    """A frame to time: its name, how to load its camera (timing 'read' and 'teacher'),
    and the LiDAR's pose in its camera (4, 4; None: the sensor's default mount)."""

    name: str
    load_camera: Callable[[StageTimes], SceneCamera]
    T_cam_lidar: np.ndarray | None = None


def bench_inputs(images: Path, kitti_object: Path) -> list[BenchInput]:
    """The photos with sidecar depth and intrinsics in `images`, then the KITTI object frame
    `kitti_object` (DIR/NAME: NAME.bin, .png, .calib.txt) with its densified real scan as
    depth, if it exists."""
    inputs = [BenchInput(item.path.name, partial(sidecar_camera, item.path)) for item in list_images(images)]
    if kitti_object.with_suffix(".bin").is_file():
        T_cam_lidar = read_kitti_object_frame(kitti_object).calibration.T_cam_lidar
        inputs.append(BenchInput(f"kitti {kitti_object.name}", partial(kitti_camera, kitti_object), T_cam_lidar))
    return inputs


def densified_depth(frame: RealFrame) -> np.ndarray:
    """(H, W) float32 depth (m, 0 = none) of a real frame's scene: its scan projected into
    its image and densified as `simlidar fidelity` does."""
    height, width = frame.rgb.shape[:2]
    calibration = frame.calibration
    return densify(project_scan(frame.points_lidar, calibration.T_cam_lidar, calibration.K, width, height))


def kitti_camera(kitti_object: Path, times: StageTimes) -> SceneCamera:
    """A KITTI object frame as a scene's one camera, its densified real scan standing in
    for the teacher's depth (timed as 'teacher')."""
    with times.stage("read"):
        frame = read_kitti_object_frame(kitti_object)
        image = load_image(kitti_object.with_suffix(".png"), 95)
    with times.stage("teacher"):
        prediction = DepthPrediction(densified_depth(frame), "metric")
    return SceneCamera(image, frame.calibration.K, "calibration", prediction, kitti_object.name)


def bench_methods(bench_input: BenchInput, sensor_name: str, repeats: int) -> dict:
    """Median seconds per stage of each COMPARED mesh method making one sample of
    `bench_input` by the chain `generate` runs, and the march's fidelity to the grid."""
    plan = GenerateConfig(images=".", sensor=sensor_name, mount_jitter="none").resolve()
    T_cam_lidar = mount_pose(plan.mount) if bench_input.T_cam_lidar is None else bench_input.T_cam_lidar
    runs = {method: [] for method in COMPARED}
    # Interleaved, so that load from others on a shared machine falls on both alike.
    for _ in range(repeats):
        for method in COMPARED:
            times = StageTimes()
            camera = bench_input.load_camera(times)
            scene = Scene(
                schema.sanitize_key(Path(camera.source_path).stem), (camera,), PhotoViews(), T_scene_lidar=T_cam_lidar
            )
            method_plan = replace(plan, mesh=replace(plan.mesh, method=method))
            with tempfile.TemporaryDirectory() as folder, ShardWriter(LocalStore(folder), "bench.tar") as writer:
                for key, members, _ in simulate_scene(scene, method_plan, times):
                    writer.write(key, members)
            runs[method].append(dict(times.seconds))
    return {
        "name": bench_input.name,
        "size": f"{camera.width}x{camera.height}",
        "stages": {
            method: {stage: float(np.median([run.get(stage, 0.0) for run in runs[method]])) for stage in STAGES}
            for method in COMPARED
        },
        "fidelity": fidelity_against_grid(camera.prediction.depth, camera.K, plan.sensor, T_cam_lidar, plan.mesh),
    }


def depth_fidelity(rendered: np.ndarray, depth: np.ndarray) -> dict:
    """How well a mesh renders back the depth it was built from. rendered, depth:
    (H, W) camera z (m), 0 = none. coverage: share of valid input pixels the mesh
    covers; median/p95: absolute error (m) on those; off_5pct: share of them off
    by more than 5%."""
    valid = np.isfinite(depth) & (depth > 0)
    covered = valid & (rendered > 0)
    error = np.abs(rendered[covered] - depth[covered])
    if not error.size:
        return {"coverage": 0.0, "median": float("nan"), "p95": float("nan"), "off_5pct": float("nan")}
    return {
        "coverage": float(covered.sum() / max(valid.sum(), 1)),
        "median": float(np.median(error)),
        "p95": float(np.percentile(error, 95)),
        "off_5pct": float(np.mean(error > 0.05 * depth[covered])),
    }


def invented_fraction(sparse: np.ndarray, depth: np.ndarray, margin_m: float = INVENTED_MARGIN_M) -> float:
    """Share of LiDAR returns (sparse (H, W), m, 0 = none) nearer than every valid
    input depth in their pixel's 3x3 neighbourhood by more than margin_m: surface
    the camera would have seen (rubber sheets, blobs, sky); a pixel with no valid
    neighbour counts as invented for any return."""
    surface = np.where(np.isfinite(depth) & (depth > 0), depth, np.inf)
    padded = np.pad(surface, 1, constant_values=np.inf)
    nearest = np.lib.stride_tricks.sliding_window_view(padded, (3, 3)).min(axis=(2, 3))
    returns = sparse > 0
    if not returns.any():
        return 0.0
    return float(np.mean(sparse[returns] < nearest[returns] - margin_m))


def bench_meshes(path: Path, sensor_name: str, repeats: int) -> list[dict]:
    """Per mesh method (default options otherwise) for one photo with sidecar depth and
    intrinsics: median mesh and scene-build + cast seconds, face count, render-back
    fidelity, invented share."""
    sensor = load_sensor(sensor_name)
    T_cam_lidar = mount_pose(MOUNTS[sensor.default_mount])
    camera = sidecar_camera(path, StageTimes())
    depth, K, width, height = camera.prediction.depth, camera.K, camera.width, camera.height
    scan_camera = camera.scan_camera("uniform")
    results = []
    for method in METHODS:
        mesh_seconds, cast_seconds = [], []
        for _ in range(repeats):
            times = StageTimes()
            target = ray_target(depth, K, MeshOptions(method=method), times=times)
            scan = simulate_rig_scan(target.target, [scan_camera], sensor, T_cam_lidar, np.random.default_rng(0), times)
            mesh_seconds.append(times.seconds["mesh"])
            cast_seconds.append(times.seconds["scene"] + times.seconds["cast"])
        results.append(
            {
                "name": path.name,
                "size": f"{width}x{height}",
                "method": method,
                "mesh_s": float(np.median(mesh_seconds)),
                "scene_cast_s": float(np.median(cast_seconds)),
                "faces": target.summary.get("faces", 0),
                **depth_fidelity(render_depth(target.target, K, width, height), depth),
                "invented": invented_fraction(scan.sparse_depth_m, depth),
            }
        )
    return results


def print_mesh_table(images: Path, sensor: str, repeats: int) -> None:
    """One row per photo and mesh method: time, faces and render-back fidelity."""
    header = f"{'photo':<18}{'size':>10}{'method':>11}{'mesh':>9}{'bld+cast':>9}{'faces':>9}"
    click.echo(header + f"{'cover':>8}{'med mm':>8}{'p95 mm':>8}{'>5%':>8}{'invented':>10}")
    load_kernels()
    for item in list_images(images):
        for row in bench_meshes(item.path, sensor, repeats):
            click.echo(
                f"{row['name']:<18}{row['size']:>10}{row['method']:>11}{row['mesh_s'] * 1000:>9.1f}"
                f"{row['scene_cast_s'] * 1000:>9.1f}{row['faces']:>9}{row['coverage']:>8.2%}"
                f"{row['median'] * 1000:>8.1f}{row['p95'] * 1000:>8.1f}{row['off_5pct']:>8.2%}{row['invented']:>10.3%}"
            )
    click.echo(
        "mesh, bld+cast (scene build + LiDAR cast): ms per frame (median); cover: valid input pixels the mesh "
        "renders; med, p95: |rendered - input depth| there; >5%: share of them off by > 5%; invented: share of "
        f"LiDAR returns > {INVENTED_MARGIN_M} m nearer than the input's 3x3 neighbourhood"
    )


def print_frame_table(images: Path, kitti_object: Path, sensor: str, repeats: int) -> None:
    """Per frame, a row per COMPARED method: milliseconds per stage and after the teacher;
    on the march's row its ratio to the grid and its fidelity to the grid's returns."""
    header = f"{'frame':<18}{'size':>10}{'method':>7}" + "".join(f"{s:>8}" for s in STAGES)
    click.echo(header + f"{'post':>8}{'ratio':>7}{'present':>9}{'<=1%':>8}{'invented':>9}{'see-through':>15}")
    load_kernels()
    for bench_input in bench_inputs(images, kitti_object):
        result = bench_methods(bench_input, sensor, repeats)
        post = {method: post_teacher_seconds(result["stages"][method]) for method in COMPARED}
        for method in COMPARED:
            row = f"{result['name']:<18}{result['size']:>10}{method:>7}"
            row += (
                "".join(f"{result['stages'][method][s] * 1000:>8.1f}" for s in STAGES) + f"{post[method] * 1000:>8.1f}"
            )
            if method == COMPARED[0]:
                row += f"{post[method] / post[COMPARED[-1]]:>7.2f}" + _fidelity_columns(result["fidelity"])
            click.echo(row)
    if not kitti_object.with_suffix(".bin").is_file():
        click.echo(f"(no KITTI frame: {kitti_object}.bin is absent)")
    click.echo(
        "ms per frame, median, one view per photo; post: after the teacher (mesh to write); ratio: march / grid. "
        "Fidelity of the march to the grid on one frame's rays: present: the grid's returns it has; <=1%: of "
        f"those, within 1% in range; invented: returns > {INVENTED_MARGIN_M} m in front of the grid's (or where "
        f"it has none); see-through: share of returns > {INVENTED_MARGIN_M} m behind the visible surface, grid>march"
    )


def post_teacher_seconds(stages: dict[str, float]) -> float:
    """Seconds per frame after the teacher: every stage but 'read' and 'teacher'."""
    return sum(seconds for stage, seconds in stages.items() if stage not in ("read", "teacher"))


def _fidelity_columns(figures: dict) -> str:
    see_through = f"{figures['see_through_reference']:.2%}>{figures['see_through_candidate']:.2%}"
    return f"{figures['present']:>9.3%}{figures['within_1pct']:>8.2%}{figures['invented']:>9}{see_through:>15}"

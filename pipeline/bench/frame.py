"""`simlidar bench`: per-stage time per frame on real inputs, against the bare
Open3D cost of building and casting into the same mesh; with --meshes, the mesh
methods measured against each other (time, size, fidelity)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import click
import numpy as np
import open3d as o3d
from simlidar.sensors import MOUNTS, load_sensor, mount_pose
from simlidar.sensors.camera import rays_reaching_frustum
from simlidar.sensors.raycast import MeshScene, render_depth
from simlidar.teachers import SidecarTeacher, TeacherInput, resolve_intrinsics

from .. import schema
from ..sources.photos import list_images, load_image
from ..stages.mesh import METHODS, MeshOptions, depth_to_mesh
from ..stages.scan import simulate_scan
from ..stages.timing import StageTimes
from ..writer import ShardWriter

STAGES = ("read", "teacher", "mesh", "scene", "rays", "cast", "project", "encode", "write")
# A LiDAR return nearer than the camera-visible surface by more than this is invented.
INVENTED_MARGIN_M = 0.3


def _read_frame(path: Path, times: StageTimes) -> tuple[np.ndarray, np.ndarray]:
    """Depth (H, W, m) and K (3, 3) of a photo with sidecar depth and intrinsics,
    timing the 'read' and 'teacher' stages."""
    with times.stage("read"):
        image = load_image(path, 95)
    with times.stage("teacher"):
        depth = SidecarTeacher().predict([TeacherInput(path, image.rgb)])[0].depth
    height, width = depth.shape
    K, _ = resolve_intrinsics(path, width, height, None, None)
    return depth, K


def bench_frame(path: Path, sensor_name: str, repeats: int) -> dict:
    """Median seconds per stage for one photo with sidecar depth and intrinsics."""
    sensor = load_sensor(sensor_name)
    T_cam_lidar = mount_pose(MOUNTS[sensor.default_mount])
    runs = []
    for _ in range(repeats):
        times = StageTimes()
        depth, K = _read_frame(path, times)
        height, width = depth.shape
        with times.stage("mesh"):
            mesh = depth_to_mesh(depth, K)
        with times.stage("scene"):
            scene = MeshScene(mesh.vertices_cam, mesh.triangles)
        scan = simulate_scan(scene, K, width, height, sensor, T_cam_lidar, np.random.default_rng(0), times)
        with times.stage("encode"):
            members = {
                schema.IMAGE: path.read_bytes(),
                schema.SPARSE: schema.encode_depth_png(scan.sparse_depth_m),
                schema.DENSE: schema.encode_depth_png(depth),
            }
        with tempfile.TemporaryDirectory() as folder, times.stage("write"):
            with ShardWriter(Path(folder) / "bench.tar") as writer:
                writer.write("bench", members)
        runs.append(dict(times.seconds))
    directions_lidar = sensor.fire(np.random.default_rng(0)).directions_lidar
    directions_cam = directions_lidar @ T_cam_lidar[:3, :3].T
    toward = rays_reaching_frustum(
        T_cam_lidar[:3, 3], directions_cam, K, width, height, sensor.min_range_m, sensor.max_range_m
    )
    rays = np.hstack([np.broadcast_to(T_cam_lidar[:3, 3], (int(toward.sum()), 3)), directions_cam[toward]])
    bare = []
    for _ in range(repeats):
        start = time.perf_counter()
        bare_scene = o3d.t.geometry.RaycastingScene()
        bare_scene.add_triangles(o3d.core.Tensor(mesh.vertices_cam), o3d.core.Tensor(mesh.triangles.astype(np.uint32)))
        bare_scene.cast_rays(o3d.core.Tensor(rays.astype(np.float32)))
        bare.append(time.perf_counter() - start)
    stage_seconds = {stage: float(np.median([run.get(stage, 0.0) for run in runs])) for stage in STAGES}
    return {
        "name": path.name,
        "size": f"{width}x{height}",
        "triangles": len(mesh.triangles),
        "stages": stage_seconds,
        "bare_build_cast": float(np.median(bare)),
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
    depth, K = _read_frame(path, StageTimes())
    height, width = depth.shape
    results = []
    for method in METHODS:
        method_options = MeshOptions(method=method)
        mesh_seconds, cast_seconds = [], []
        for _ in range(repeats):
            times = StageTimes()
            with times.stage("mesh"):
                mesh = depth_to_mesh(depth, K, method_options)
            with times.stage("scene"):
                scene = MeshScene(mesh.vertices_cam, mesh.triangles)
            scan = simulate_scan(scene, K, width, height, sensor, T_cam_lidar, np.random.default_rng(0), times)
            mesh_seconds.append(times.seconds["mesh"])
            cast_seconds.append(times.seconds["scene"] + times.seconds["cast"])
        results.append(
            {
                "name": path.name,
                "size": f"{width}x{height}",
                "method": method,
                "mesh_s": float(np.median(mesh_seconds)),
                "scene_cast_s": float(np.median(cast_seconds)),
                "faces": len(mesh.triangles),
                **depth_fidelity(render_depth(scene, K, width, height), depth),
                "invented": invented_fraction(scan.sparse_depth_m, depth),
            }
        )
    return results


def _print_mesh_table(images: Path, sensor: str, repeats: int) -> None:
    header = f"{'photo':<18}{'size':>10}{'method':>11}{'mesh':>9}{'bld+cast':>9}{'faces':>9}"
    click.echo(header + f"{'cover':>8}{'med mm':>8}{'p95 mm':>8}{'>5%':>8}{'invented':>10}")
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


@click.command()
@click.option(
    "--images",
    default=Path("examples/scenes"),
    type=click.Path(path_type=Path),
    show_default=True,
    help="Photos with sidecar depth and intrinsics (the bundled scenes by default).",
)
@click.option("--sensor", default="hdl64", show_default=True, help="Sensor to simulate.")
@click.option("--repeats", default=5, show_default=True, help="Runs per photo; medians are reported.")
@click.option("--meshes", is_flag=True, help="Compare the mesh methods (time, faces, fidelity) instead.")
@click.option(
    "--scaling", is_flag=True, help="Measure parallel efficiency on Ray and peak memory for 100 vs 1000 photos instead."
)
@click.option(
    "--workers", default=0, type=click.IntRange(min=0), help="--scaling: workers to compare with one (0: all cores)."
)
@click.option("--teacher", default="", show_default=False, help="Time this teacher instead (images/s per batch size).")
@click.option("--batch-sizes", default="1,2,4,8", show_default=True, help="--teacher: batch sizes to time.")
@click.option(
    "--random-weights", is_flag=True, help="--teacher depth-anything-v2-small: its architecture with random weights."
)
@click.option("--device", default="auto", show_default=True, help="--teacher: auto, cpu, cuda[:N] or mps.")
@click.option("--dtype", default="auto", show_default=True, help="--teacher: auto (fp16 on CUDA), fp32, fp16, bf16.")
@click.option("--image-size", default="640x480", show_default=True, help="--teacher: WxH of the synthetic photos.")
def bench(
    images: Path, sensor: str, repeats: int, meshes: bool, scaling: bool, workers: int, teacher: str, **teacher_bench
) -> None:
    """Print per-stage milliseconds per frame and the ratio to bare Open3D build + cast,
    or with --meshes each mesh method's time, size and fidelity, or with --scaling how
    the runner scales with workers and input count."""
    if teacher:
        from .teacher import print_teacher_bench

        print_teacher_bench(teacher, repeats=repeats, **teacher_bench)
        return
    if meshes:
        _print_mesh_table(images, sensor, repeats)
        return
    if scaling:
        from .scaling import print_scaling

        print_scaling(images, workers)
        return
    header = f"{'photo':<18}{'size':>10}{'triangles':>11}" + "".join(f"{s:>9}" for s in STAGES)
    click.echo(header + f"{'total':>9}{'frames/s':>10}{'bare o3d':>10}{'post-teacher/bare':>19}")
    for item in list_images(images):
        result = bench_frame(item.path, sensor, repeats)
        stages = result["stages"]
        total = sum(stages.values())
        post_teacher = total - stages["read"] - stages["teacher"]
        click.echo(
            f"{result['name']:<18}{result['size']:>10}{result['triangles']:>11}"
            + "".join(f"{stages[s] * 1000:>9.1f}" for s in STAGES)
            + f"{total * 1000:>9.1f}{1 / total:>10.2f}{result['bare_build_cast'] * 1000:>10.1f}"
            + f"{post_teacher / result['bare_build_cast']:>19.2f}"
        )
    click.echo("times in ms per frame (median); Open3D builds its BVH lazily, so 'cast' includes the build")

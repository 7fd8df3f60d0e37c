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
from simlidar.sensors.camera import rays_reaching_frustum, transform_directions
from simlidar.sensors.raycast import render_depth

from .. import schema
from ..config import GenerateConfig, RunPlan
from ..sources.photos import list_images
from ..stages.mesh import METHODS, Mesh, MeshOptions, depth_to_mesh
from ..stages.scan import simulate_rig_scan
from ..stages.scene import Scene, mesh_scene, sidecar_camera, simulate_scene
from ..stages.timing import StageTimes
from ..stages.views import PhotoViews
from ..writer import ShardWriter

STAGES = ("read", "teacher", "mesh", "scene", "rays", "cast", "project", "encode", "write")
# A LiDAR return nearer than the camera-visible surface by more than this is invented.
INVENTED_MARGIN_M = 0.3


def bench_plan(path: Path, sensor_name: str) -> RunPlan:
    """The plan `generate` would make for this photo and sensor, with the mount unjittered."""
    return GenerateConfig(images=str(path), sensor=sensor_name, mount_jitter="none").resolve()


def bench_frame(path: Path, sensor_name: str, repeats: int) -> dict:
    """Median seconds per stage for one photo with sidecar depth and intrinsics, made by
    the chain `generate` runs (read, teacher, mesh, scene, scan, encode, write)."""
    plan = bench_plan(path, sensor_name)
    runs = []
    for _ in range(repeats):
        times = StageTimes()
        camera = sidecar_camera(path, times)
        scene = Scene(schema.sanitize_key(path.stem), (camera,), PhotoViews())
        with tempfile.TemporaryDirectory() as folder, ShardWriter(Path(folder) / "bench.tar") as writer:
            for key, members, _ in simulate_scene(scene, plan, times):
                writer.write(key, members)
        runs.append(dict(times.seconds))
    mesh = depth_to_mesh(camera.prediction.depth, camera.K, plan.mesh)
    T_cam_lidar = mount_pose(plan.mount)
    stage_seconds = {stage: float(np.median([run.get(stage, 0.0) for run in runs])) for stage in STAGES}
    return {
        "name": path.name,
        "size": f"{camera.width}x{camera.height}",
        "triangles": len(mesh.triangles),
        "stages": stage_seconds,
        "bare_build_cast": bare_build_cast(mesh, plan.sensor, T_cam_lidar, camera, repeats),
    }


def bare_build_cast(mesh: Mesh, sensor, T_cam_lidar: np.ndarray, camera, repeats: int) -> float:
    """Median seconds Open3D alone takes to build a scene of `mesh` and cast one frame's
    rays that can reach the camera's image (the floor the pipeline is measured against)."""
    directions_cam = transform_directions(T_cam_lidar, sensor.fire(np.random.default_rng(0)).directions_lidar)
    size, ranges = (camera.width, camera.height), (sensor.min_range_m, sensor.max_range_m)
    toward = rays_reaching_frustum(T_cam_lidar[:3, 3], directions_cam, camera.K, *size, *ranges)
    rays = np.hstack([np.broadcast_to(T_cam_lidar[:3, 3], (int(toward.sum()), 3)), directions_cam[toward]])
    bare = []
    for _ in range(repeats):
        start = time.perf_counter()
        bare_scene = o3d.t.geometry.RaycastingScene()
        bare_scene.add_triangles(o3d.core.Tensor(mesh.vertices_cam), o3d.core.Tensor(mesh.triangles.astype(np.uint32)))
        bare_scene.cast_rays(o3d.core.Tensor(rays.astype(np.float32)))
        bare.append(time.perf_counter() - start)
    return float(np.median(bare))


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
    scene = Scene(path.stem, (camera,), PhotoViews())
    depth, K, width, height = camera.prediction.depth, camera.K, camera.width, camera.height
    results = []
    for method in METHODS:
        mesh_seconds, cast_seconds = [], []
        for _ in range(repeats):
            times = StageTimes()
            ray_scene, (mesh,) = mesh_scene(scene, MeshOptions(method=method), times)
            scan_camera = camera.scan_camera("uniform")
            scan = simulate_rig_scan(ray_scene, [scan_camera], sensor, T_cam_lidar, np.random.default_rng(0), times)
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
                **depth_fidelity(render_depth(ray_scene, K, width, height), depth),
                "invented": invented_fraction(scan.sparse_depth_m, depth),
            }
        )
    return results


def print_mesh_table(images: Path, sensor: str, repeats: int) -> None:
    """One row per photo and mesh method: time, faces and render-back fidelity."""
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


def print_frame_table(images: Path, sensor: str, repeats: int) -> None:
    """One row per photo: milliseconds per stage, total, frames/s, bare Open3D and the ratio."""
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

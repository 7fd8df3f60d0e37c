"""`simlidar bench`: per-stage time per frame on real inputs, against the bare
Open3D cost of building and casting into the same mesh."""

from __future__ import annotations

import time
from pathlib import Path

import click
import numpy as np
import open3d as o3d
from simlidar.sensors import MOUNTS, load_sensor, mount_pose
from simlidar.sensors.camera import rays_reaching_frustum
from simlidar.sensors.raycast import MeshScene
from simlidar.teachers import SidecarTeacher, TeacherInput, resolve_intrinsics

from . import schema
from .mesh import depth_to_mesh
from .reader import list_images, load_image
from .simulate import simulate_scan
from .timing import StageTimes

STAGES = ("read", "teacher", "mesh", "scene", "rays", "cast", "project", "encode")


def bench_frame(path: Path, sensor_name: str, repeats: int) -> dict:
    """Median seconds per stage for one photo with sidecar depth and intrinsics."""
    sensor = load_sensor(sensor_name)
    T_cam_lidar = mount_pose(MOUNTS[sensor.default_mount])
    runs = []
    for _ in range(repeats):
        times = StageTimes()
        with times.stage("read"):
            image = load_image(path, 95)
        with times.stage("teacher"):
            depth = SidecarTeacher().predict([TeacherInput(path, image.rgb)])[0].depth
        height, width = depth.shape
        K, _ = resolve_intrinsics(path, width, height, None, None)
        with times.stage("mesh"):
            mesh = depth_to_mesh(depth, K)
        with times.stage("scene"):
            scene = MeshScene(mesh.vertices_cam, mesh.triangles)
        scan = simulate_scan(scene, K, width, height, sensor, T_cam_lidar, 0.0, times)
        with times.stage("encode"):
            schema.encode_depth_png(scan.sparse_depth_m)
            schema.encode_depth_png(depth)
        runs.append(dict(times.seconds))
    directions_lidar, _ = sensor.ray_directions()
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
def bench(images: Path, sensor: str, repeats: int) -> None:
    """Print per-stage milliseconds per frame and the ratio to bare Open3D build + cast."""
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

"""A camera's depth map as a ray target (sensors/targets.py): the one factory, depth map +
K + mesh options -> target, that generate's scenes, bench, `sensors show` and fidelity all
use. The mesh method says how: march casts the depth map's grid mesh in place (no mesh is
built), grid, decimated and poisson build a triangle mesh that Open3D casts into."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from simlidar.sensors.camera import transform_points
from simlidar.sensors.raycast import MeshScene
from simlidar.sensors.targets import RayTarget

from .march import depth_grid_scene, grid_summary
from .mesh import MeshOptions, depth_to_mesh
from .timing import StageTimes


@dataclass(frozen=True)
class CameraTarget:
    """target: a camera's surface in the scene's frame; summary: its record in a sample's
    json ("mesh": the method and its vertex or face counts)."""

    target: RayTarget
    summary: dict


def ray_target(
    depth_m: np.ndarray,
    K: np.ndarray,
    options: MeshOptions | None = None,
    T_scene_cam: np.ndarray | None = None,
    times: StageTimes | None = None,
) -> CameraTarget:
    """The (H, W) camera-z depth map (m; 0, NaN or inf = no value) with intrinsics K (3, 3)
    as a ray target in the frame of T_scene_cam (4, 4; None: the camera's), by the method of
    `options` (None: the defaults); times the 'mesh' stage and, for a mesh, its ray-casting
    build ('scene')."""
    options, times = options or MeshOptions(), times or StageTimes()
    if options.method == "march":
        with times.stage("mesh"):
            grid = depth_grid_scene(depth_m, K, options, T_scene_cam)
        return CameraTarget(grid, grid_summary(grid))
    with times.stage("mesh"):
        mesh = depth_to_mesh(depth_m, K, options)
    with times.stage("scene"):
        vertices = mesh.vertices_cam
        if T_scene_cam is not None:
            vertices = transform_points(T_scene_cam, vertices.astype(np.float64)).astype(np.float32)
        return CameraTarget(MeshScene(vertices, mesh.triangles), mesh.summary())

"""The march mesh method: the grid mesh of a depth map, cast without being built.

`simlidar generate`'s default. The returns are those of the grid method (same vertices,
same discontinuity rule, same hidden background layer behind occluding edges), but
instead of two triangles per pixel and an Embree BVH over them, each LiDAR ray walks
the quads its image crosses (sensors/depth_grid.py). Building costs one max filter (the
hidden layer); casting costs a few quads per ray, so a frame costs a fraction of the
grid's BVH build, which dominated the post-teacher time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
from simlidar.pipeline.stages.mesh import MeshOptions, _subsample, depth_to_mesh
from simlidar.sensors import Sensor
from simlidar.sensors.camera import rays_reaching_frustum, transform_directions, transform_points
from simlidar.sensors.depth_grid import DepthGridScene, hidden_background_layer
from simlidar.sensors.raycast import Hits, MeshScene


def grid_summary(scene: DepthGridScene) -> dict:
    """The record of a march target in a sample's json: the grid mesh's vertex counts
    (pixels with depth; hidden-layer pixels), as its faces are never listed."""
    return {
        "method": "march",
        "vertices": int(np.count_nonzero(scene.depth_m)),
        "hidden_vertices": int(np.count_nonzero(scene.hidden_depth_m)),
    }


def depth_grid_scene(
    depth_m: np.ndarray, K: np.ndarray, options: MeshOptions = MeshOptions(), T_scene_cam: np.ndarray | None = None
) -> DepthGridScene:
    """The grid mesh of an (H, W) camera-z depth map (metres; 0, NaN or inf = no value)
    with intrinsics K (3, 3), ready for ray queries in the frame of T_scene_cam (4, 4;
    None: the camera's). Uses options' discontinuity rule, hidden layer and stride."""
    if options.stride > 1:
        depth_m, K = _subsample(depth_m, K, options.stride)
        # The hidden layer's reach stays the same in full-resolution pixels, as in the grid.
        fill_px = -(-options.occlusion_fill_px // options.stride)
    else:
        fill_px = options.occlusion_fill_px
    return DepthGridScene(
        depth_m,
        K,
        hidden_depth_m=hidden_background_layer(depth_m, fill_px, options.max_depth_jump),
        max_depth_jump=options.max_depth_jump,
        max_grazing_deg=options.max_grazing_deg,
        T_scene_cam=T_scene_cam,
    )


def fidelity_against_grid(
    depth_m: np.ndarray, K: np.ndarray, sensor: Sensor, T_cam_lidar: np.ndarray, options: MeshOptions = MeshOptions()
) -> dict:
    """hit_fidelity of the march method against the grid mesh (same options otherwise) on
    one frame of `sensor` (phase from seed 0, per-laser origins) placed at T_cam_lidar (4, 4): the rays that
    can reach the (H, W) depth map's image with intrinsics K (3, 3); plus the ray and the
    grid's hit counts."""
    height, width = depth_m.shape
    firing = sensor.fire(np.random.default_rng(0))
    origins = transform_points(T_cam_lidar, firing.origins_lidar)
    directions = transform_directions(T_cam_lidar, firing.directions_lidar)
    ranges = (sensor.min_range_m, sensor.max_range_m)
    toward = rays_reaching_frustum(origins, directions, K, width, height, *ranges)
    origins, directions = origins[toward], directions[toward]
    grid_mesh = depth_to_mesh(depth_m, K, replace(options, method="grid"))
    grid = MeshScene(grid_mesh.vertices_cam, grid_mesh.triangles).cast(origins, directions)
    march = depth_grid_scene(depth_m, K, options).cast(origins, directions)
    figures = hit_fidelity(grid, march, lambda t: origins + directions * t[:, None], depth_m, K)
    return {"rays": len(directions), "grid_hits": int(np.isfinite(grid.t).sum()), **figures}


def hit_fidelity(
    reference: Hits,
    candidate: Hits,
    points_at: Callable[[np.ndarray], np.ndarray],
    depth_m: np.ndarray,
    K: np.ndarray,
    margin_m: float = 0.3,
) -> dict:
    """How well `candidate` hits reproduce `reference` hits (the grid's) on the same N rays.

    points_at(t) gives the camera-frame points (N, 3, m) at distances t (N,) along the
    rays; depth_m (H, W) and K (3, 3) are the camera's visible surface. present: share of
    the reference's hits the candidate also has; within_1pct: share of those whose range
    agrees within 1%; invented: candidate hits nearer than the reference's by more than
    margin_m, or where the reference has none (count); see_through: each one's
    share of hits whose point lies behind the visible surface at its pixel by more than
    margin_m (points the camera cannot see: the hidden layer's)."""
    hit_reference, hit_candidate = np.isfinite(reference.t), np.isfinite(candidate.t)
    both = hit_reference & hit_candidate
    agree = np.abs(candidate.t[both] - reference.t[both]) <= 0.01 * reference.t[both]
    nearer = np.where(hit_reference, reference.t - margin_m, np.inf)
    invented = hit_candidate & (candidate.t < nearer)
    return {
        "present": float(both.sum() / max(hit_reference.sum(), 1)),
        "within_1pct": float(agree.mean()) if agree.size else 1.0,
        "invented": int(invented.sum()),
        "see_through_reference": _see_through_share(points_at, reference.t, depth_m, K, margin_m),
        "see_through_candidate": _see_through_share(points_at, candidate.t, depth_m, K, margin_m),
    }


def _see_through_share(
    points_at: Callable[[np.ndarray], np.ndarray], t: np.ndarray, depth_m: np.ndarray, K: np.ndarray, margin_m: float
) -> float:
    """Share of the hits (t (N,) finite; points_at(t) their camera-frame points (N, 3))
    deeper than the visible depth (H, W) at their pixel by more than margin_m."""
    height, width = depth_m.shape
    hit = np.isfinite(t)
    if not hit.any():
        return 0.0
    points = points_at(np.where(hit, t, 0.0))[hit]
    u = np.clip(np.floor(K[0, 0] * points[:, 0] / points[:, 2] + K[0, 2] + 0.5), 0, width - 1).astype(np.int64)
    v = np.clip(np.floor(K[1, 1] * points[:, 1] / points[:, 2] + K[1, 2] + 0.5), 0, height - 1).astype(np.int64)
    return float(np.mean(points[:, 2] > depth_m[v, u] + margin_m))

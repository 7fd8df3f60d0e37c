"""One LiDAR scan of one meshed photo: rays, frustum culling, cast, projection."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from simlidar.sensors import SpinningLidar
from simlidar.sensors.camera import rays_reaching_frustum, sparse_depth_image
from simlidar.sensors.raycast import MeshScene

from .timing import StageTimes


@dataclass
class Scan:
    """sparse_depth_m: (H, W) float32 camera z (m), 0 = no return.
    points_lidar: (N, 5) float32 (x, y, z, intensity, ring) in the LiDAR frame.
    counts: rays fired, rays that can reach the image, hits in range, pixels filled."""

    sparse_depth_m: np.ndarray
    points_lidar: np.ndarray
    counts: dict[str, int]


def simulate_scan(
    scene: MeshScene,
    K: np.ndarray,
    width: int,
    height: int,
    sensor: SpinningLidar,
    T_cam_lidar: np.ndarray,
    azimuth_phase_rad: float,
    times: StageTimes | None = None,
    threads: int = 0,
) -> Scan:
    """Fire one frame of `sensor` placed at `T_cam_lidar` (4, 4) into `scene` (camera
    frame, metres) and project the returns into the (width x height) camera K (3, 3).

    Intensity is |cos| of the incidence angle, a reflectance-free proxy.
    """
    times = times or StageTimes()
    with times.stage("rays"):
        directions_lidar, ring = sensor.ray_directions(azimuth_phase_rad)
        rotation_cam_lidar, origin_cam = T_cam_lidar[:3, :3], T_cam_lidar[:3, 3]
        directions_cam = directions_lidar @ rotation_cam_lidar.T
        toward_image = rays_reaching_frustum(
            origin_cam, directions_cam, K, width, height, sensor.min_range_m, sensor.max_range_m
        )
        directions_cam = directions_cam[toward_image]
    with times.stage("cast"):
        hits = scene.cast(origin_cam, directions_cam, threads=threads)
    with times.stage("project"):
        in_range = np.isfinite(hits.t) & (hits.t >= sensor.min_range_m) & (hits.t <= sensor.max_range_m)
        distance = hits.t[in_range]
        directions_hit_cam = directions_cam[in_range]
        points_cam = origin_cam + directions_hit_cam * distance[:, None]
        sparse_depth_m, _ = sparse_depth_image(points_cam, K, width, height)
        intensity = np.abs(np.einsum("ij,ij->i", hits.normals[in_range], directions_hit_cam))
        points_lidar = np.column_stack(
            [
                directions_lidar[toward_image][in_range] * distance[:, None],
                intensity,
                ring[toward_image][in_range],
            ]
        ).astype(np.float32)
    counts = {
        "rays": int(len(directions_lidar)),
        "rays_toward_image": int(toward_image.sum()),
        "points": int(in_range.sum()),
        "sparse_pixels": int(np.count_nonzero(sparse_depth_m)),
    }
    return Scan(sparse_depth_m=sparse_depth_m, points_lidar=points_lidar, counts=counts)

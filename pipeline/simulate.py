"""One LiDAR scan of one meshed photo: fire, frustum culling, cast (with sub-rays for
beam divergence), return effects, projection."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from simlidar.sensors import Sensor
from simlidar.sensors.camera import rays_reaching_frustum, sparse_depth_image
from simlidar.sensors.effects import (
    UNIFORM_REFLECTANCE,
    intensity_from_signal,
    resolve_returns,
    signal_strength,
    sub_ray_directions,
)
from simlidar.sensors.raycast import MeshScene

from .timing import StageTimes


@dataclass
class Scan:
    """sparse_depth_m: (H, W) float32 camera z (m), 0 = no return.
    points_lidar: (N, 5) float32 (x, y, z, intensity, ring) in the LiDAR frame.
    counts: rays fired, rays that can reach the image, rays cast (with sub-rays), beams
    with a hit in range, points returned after the return effects, pixels filled.
    phase: the frame's random start (azimuth phase or start time), for the sample json."""

    sparse_depth_m: np.ndarray
    points_lidar: np.ndarray
    counts: dict[str, int]
    phase: dict[str, float]


def sample_reflectance(points_cam: np.ndarray, reflectance: np.ndarray | None, K: np.ndarray) -> np.ndarray:
    """Reflectance (N,) in [0, 1] at the pixels where points (N, 3, camera frame, m)
    project in the (H, W) reflectance image; UNIFORM_REFLECTANCE outside it or without one."""
    values = np.full(len(points_cam), UNIFORM_REFLECTANCE)
    if reflectance is None or not len(points_cam):
        return values
    height, width = reflectance.shape
    z = points_cam[:, 2]
    safe_z = np.where(z > 1e-6, z, 1.0)
    u = np.floor(K[0, 0] * points_cam[:, 0] / safe_z + K[0, 2] + 0.5)
    v = np.floor(K[1, 1] * points_cam[:, 1] / safe_z + K[1, 2] + 0.5)
    inside = (z > 1e-6) & (u >= 0) & (u < width) & (v >= 0) & (v < height)
    values[inside] = reflectance[v[inside].astype(np.int64), u[inside].astype(np.int64)]
    return values


def simulate_scan(
    scene: MeshScene,
    K: np.ndarray,
    width: int,
    height: int,
    sensor: Sensor,
    T_cam_lidar: np.ndarray,
    rng: np.random.Generator,
    times: StageTimes | None = None,
    threads: int = 0,
    reflectance: np.ndarray | None = None,
) -> Scan:
    """Fire one frame of `sensor` placed at `T_cam_lidar` (4, 4) into `scene` (camera
    frame, metres) and project the returns into the (width x height) camera K (3, 3).

    The frame's phase and every return effect draw from `rng` (sensors/effects.py has the
    effect model). reflectance: (H, W) in [0, 1], e.g. the photo's luma; the intensity of a
    point is its reflectance x cos(incidence) / range^2, normalised by intensity_from_signal.
    """
    times = times or StageTimes()
    effects = sensor.effects
    with times.stage("rays"):
        firing = sensor.fire(rng)
        rotation_cam_lidar, origin_cam = T_cam_lidar[:3, :3], T_cam_lidar[:3, 3]
        directions_cam = firing.directions_lidar @ rotation_cam_lidar.T
        toward_image = rays_reaching_frustum(
            origin_cam, directions_cam, K, width, height, sensor.min_range_m, sensor.max_range_m
        )
        beams_cam = directions_cam[toward_image]
        sub_rays_cam = sub_ray_directions(beams_cam, effects.divergence_mrad * 1e-3, effects.active_sub_rays)
        beams, sub_rays = sub_rays_cam.shape[:2]
        flat_cam = sub_rays_cam.reshape(-1, 3)
    with times.stage("cast"):
        hits = scene.cast(origin_cam, flat_cam, threads=threads)
    with times.stage("project"):
        in_range = np.isfinite(hits.t) & (hits.t >= sensor.min_range_m) & (hits.t <= sensor.max_range_m)
        range_m = np.where(in_range, hits.t, np.inf)
        hit_points_cam = origin_cam + flat_cam[in_range] * hits.t[in_range, None]
        signal = np.zeros(len(flat_cam))
        signal[in_range] = signal_strength(
            sample_reflectance(hit_points_cam, reflectance, K),
            np.abs(np.einsum("ij,ij->i", hits.normals[in_range], flat_cam[in_range])),
            hits.t[in_range],
        )
        returns = resolve_returns(range_m.reshape(beams, sub_rays), signal.reshape(beams, sub_rays), effects, rng)
        kept = np.isfinite(returns.range_m)
        distance = returns.range_m[kept]
        # A sensor reports every return along its beam's axis.
        points_cam = origin_cam + beams_cam[kept] * distance[:, None]
        sparse_depth_m, _ = sparse_depth_image(points_cam, K, width, height)
        points_lidar = np.column_stack(
            [
                firing.directions_lidar[toward_image][kept] * distance[:, None],
                intensity_from_signal(returns.signal[kept]),
                firing.ring[toward_image][kept],
            ]
        ).astype(np.float32)
    counts = {
        "rays": int(len(firing.directions_lidar)),
        "rays_toward_image": int(toward_image.sum()),
        "rays_cast": int(len(flat_cam)),
        "hits": int(in_range.reshape(beams, sub_rays).any(axis=1).sum()),
        "points": int(kept.sum()),
        "sparse_pixels": int(np.count_nonzero(sparse_depth_m)),
    }
    return Scan(sparse_depth_m=sparse_depth_m, points_lidar=points_lidar, counts=counts, phase=firing.phase)

"""One LiDAR scan of a ray target (a photo's, or a rig's cameras'): fire, frustum culling,
cast (with sub-rays for beam divergence), return effects, projection."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from simlidar.sensors import Firing, Sensor
from simlidar.sensors.camera import (
    pixels_in_image,
    rays_reaching_frustum,
    sparse_depth_image,
    transform_directions,
    transform_points,
)
from simlidar.sensors.effects import (
    UNIFORM_REFLECTANCE,
    intensity_from_signal,
    resolve_returns,
    signal_strength,
    sub_ray_directions,
)
from simlidar.sensors.targets import RayTarget

from .timing import StageTimes


@dataclass
class Scan:
    """sparse_depth_m: (H, W) float32 camera z (m), 0 = no return.
    points_lidar: (N, 5) float32 (x, y, z, intensity, ring) in the LiDAR frame.
    points_scene: (N, 3) float64 the same returns in the scene's frame (m).
    counts: rays fired, rays that can reach an image, rays cast (with sub-rays), beams
    with a hit in range, points returned after the return effects, pixels filled.
    phase: the frame's random start (azimuth phase or start time), for the sample json."""

    sparse_depth_m: np.ndarray
    points_lidar: np.ndarray
    counts: dict[str, int]
    phase: dict[str, float]
    points_scene: np.ndarray


@dataclass(frozen=True)
class ScanCamera:
    """A camera a scan serves: K (3, 3) pixels, its size, T_cam_scene (4, 4) from the
    scene's frame into its own (None: the scene's frame is this camera's) and the
    reflectance (H, W) in [0, 1] its image gives (None: uniform)."""

    K: np.ndarray
    width: int
    height: int
    T_cam_scene: np.ndarray | None = None
    reflectance: np.ndarray | None = None

    def from_scene(self, points_scene: np.ndarray) -> np.ndarray:
        """(N, 3) points in the scene's frame (m) -> in this camera's."""
        return points_scene if self.T_cam_scene is None else transform_points(self.T_cam_scene, points_scene)

    def directions_from_scene(self, directions_scene: np.ndarray) -> np.ndarray:
        """(N, 3) directions in the scene's frame -> in this camera's."""
        if self.T_cam_scene is None:
            return directions_scene
        return transform_directions(self.T_cam_scene, directions_scene)


def sample_reflectance(points_scene: np.ndarray, cameras: list[ScanCamera]) -> np.ndarray:
    """Reflectance (N,) in [0, 1] of points (N, 3, scene frame, m): at the pixel where
    each lands in the first camera (in order) whose image holds it; UNIFORM_REFLECTANCE
    outside every image or where the cameras give none."""
    values = np.full(len(points_scene), UNIFORM_REFLECTANCE)
    unseen = np.ones(len(points_scene), dtype=bool)
    for camera in cameras:
        if camera.reflectance is None or not unseen.any():
            continue
        u, v, inside = pixels_in_image(camera.from_scene(points_scene), camera.K, camera.width, camera.height)
        take = inside & unseen
        values[take] = camera.reflectance[v[take].astype(np.int64), u[take].astype(np.int64)]
        unseen &= ~take
    return values


def simulate_scan(
    target: RayTarget,
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
    """Fire one frame of `sensor` placed at `T_cam_lidar` (4, 4) into `target` (camera
    frame, metres) and project the returns into the (width x height) camera K (3, 3).

    The frame's phase and every return effect draw from `rng` (sensors/effects.py has the
    effect model). reflectance: (H, W) in [0, 1], e.g. the photo's luma; the intensity of a
    point is its reflectance x cos(incidence) / range^2, normalised by intensity_from_signal.
    """
    return simulate_rig_scan(
        target, [ScanCamera(K, width, height, reflectance=reflectance)], sensor, T_cam_lidar, rng, times, threads
    )


def _toward_images(
    origins_scene: np.ndarray, directions_scene: np.ndarray, cameras: list[ScanCamera], sensor: Sensor
) -> np.ndarray:
    """(N,) bool: which rays from origins_scene (N, 3) along directions_scene (N, 3) can
    reach one of the cameras' images within the sensor's range."""
    toward_image = np.zeros(len(directions_scene), dtype=bool)
    for camera in cameras:
        toward_image |= rays_reaching_frustum(
            camera.from_scene(origins_scene),
            camera.directions_from_scene(directions_scene),
            camera.K,
            camera.width,
            camera.height,
            sensor.min_range_m,
            sensor.max_range_m,
        )
    return toward_image


def _points_lidar(firing: Firing, returned: np.ndarray, distance_m: np.ndarray, signal: np.ndarray) -> np.ndarray:
    """(N, 5) float32 points.npy rows (x, y, z, intensity, ring) in the LiDAR frame of the
    returned rays (N,) indices into `firing`: each from its own origin, distance_m (N,) along
    its beam, with the intensity of its signal (N,)."""
    ray_points = firing.origins_lidar[returned] + firing.directions_lidar[returned] * distance_m[:, None]
    return np.column_stack([ray_points, intensity_from_signal(signal), firing.ring[returned]]).astype(np.float32)


def simulate_rig_scan(
    target: RayTarget,
    cameras: list[ScanCamera],
    sensor: Sensor,
    T_scene_lidar: np.ndarray,
    rng: np.random.Generator,
    times: StageTimes | None = None,
    threads: int = 0,
) -> Scan:
    """One frame of `sensor` placed at `T_scene_lidar` (4, 4) in `target` (any frame, m)
    serving several cameras: only beams that can reach one of the cameras' images are
    cast; a hit's reflectance comes from the first camera that sees it. sparse_depth_m is
    the first camera's; the others project points_scene themselves (own z-buffer)."""
    times = times or StageTimes()
    effects = sensor.effects
    with times.stage("rays"):
        firing = sensor.fire(rng)
        directions_scene = transform_directions(T_scene_lidar, firing.directions_lidar)
        origins_scene = transform_points(T_scene_lidar, firing.origins_lidar)
        toward_image = _toward_images(origins_scene, directions_scene, cameras, sensor)
        beams_scene = directions_scene[toward_image]
        beam_origins_scene = origins_scene[toward_image]
        sub_rays_scene = sub_ray_directions(beams_scene, effects.divergence_mrad * 1e-3, effects.active_sub_rays)
        beams, sub_rays = sub_rays_scene.shape[:2]
        flat_scene = sub_rays_scene.reshape(-1, 3)
        flat_origins_scene = np.repeat(beam_origins_scene, sub_rays, axis=0)
    with times.stage("cast"):
        hits = target.cast(flat_origins_scene, flat_scene, threads=threads)
    with times.stage("project"):
        in_range = np.isfinite(hits.t) & (hits.t >= sensor.min_range_m) & (hits.t <= sensor.max_range_m)
        range_m = np.where(in_range, hits.t, np.inf)
        hit_points_scene = flat_origins_scene[in_range] + flat_scene[in_range] * hits.t[in_range, None]
        signal = np.zeros(len(flat_scene))
        signal[in_range] = signal_strength(
            sample_reflectance(hit_points_scene, cameras),
            np.abs(np.einsum("ij,ij->i", hits.normals[in_range], flat_scene[in_range])),
            hits.t[in_range],
        )
        returns = resolve_returns(range_m.reshape(beams, sub_rays), signal.reshape(beams, sub_rays), effects, rng)
        kept = np.isfinite(returns.range_m)
        distance = returns.range_m[kept]
        # A sensor reports every return along its beam's axis.
        points_scene = beam_origins_scene[kept] + beams_scene[kept] * distance[:, None]
        returned = np.flatnonzero(toward_image)[kept]
        first = cameras[0]
        sparse_depth_m, _ = sparse_depth_image(first.from_scene(points_scene), first.K, first.width, first.height)
        points_lidar = _points_lidar(firing, returned, distance, returns.signal[kept])
    counts = {
        "rays": int(len(firing.directions_lidar)),
        "rays_toward_image": int(toward_image.sum()),
        "rays_cast": int(len(flat_scene)),
        "hits": int(in_range.reshape(beams, sub_rays).any(axis=1).sum()),
        "points": int(kept.sum()),
        "sparse_pixels": int(np.count_nonzero(sparse_depth_m)),
    }
    return Scan(sparse_depth_m, points_lidar, counts, firing.phase, points_scene)


def with_calibration_error(
    scan: Scan, T_cam_lidar: np.ndarray, K: np.ndarray, width: int, height: int, T_error: np.ndarray
) -> tuple[Scan, np.ndarray]:
    """The scan as a real dataset records it: its extrinsic calibration is off by
    `T_error` (4, 4, in the LiDAR's frame), so the returns, cast from the true pose
    `T_cam_lidar` (4, 4), are projected into the (width x height) camera K (3, 3) with
    the recorded pose T_cam_lidar @ T_error. Returns (scan with the recorded sparse
    depth and pixel count, recorded T_cam_lidar (4, 4))."""
    T_cam_lidar_recorded = T_cam_lidar @ T_error
    points_cam = transform_points(T_cam_lidar_recorded, scan.points_lidar[:, :3].astype(np.float64))
    sparse_depth_m, _ = sparse_depth_image(points_cam, K, width, height)
    counts = {**scan.counts, "sparse_pixels": int(np.count_nonzero(sparse_depth_m))}
    return dataclasses.replace(scan, sparse_depth_m=sparse_depth_m, counts=counts), T_cam_lidar_recorded

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
    luma,
    resolve_returns,
    signal_strength,
    sub_ray_directions,
)
from simlidar.sensors.ray_drop import HitFeatures, greenness
from simlidar.sensors.raycast import Hits
from simlidar.sensors.sweep import SweepMotion
from simlidar.sensors.targets import RayTarget

from .timing import StageTimes


@dataclass
class Scan:
    """sparse_depth_m: (H, W) float32 camera z (m), 0 = no return.
    points_lidar: (N, 7) float32 points.npy rows in the LiDAR frame, columns
    schema.POINT_FIELDS (x, y, z, intensity, ring, time, azimuth).
    points_scene: (N, 3) float64 the same returns in the scene's frame (m).
    counts: rays fired, rays that can reach an image, rays cast (with sub-rays), beams
    with a hit in range, points returned after the return effects, pixels filled.
    phase: the frame's random start (azimuth phase or start time), for the sample json.
    hits: what decided each returned point's return (its HitFeatures, row for row).
    ego_motion: the motion the frame was scanned under (SweepMotion.record), None: still."""

    sparse_depth_m: np.ndarray
    points_lidar: np.ndarray
    counts: dict[str, int]
    phase: dict[str, float]
    points_scene: np.ndarray
    hits: HitFeatures | None = None
    ego_motion: dict | None = None


@dataclass(frozen=True)
class ScanCamera:
    """A camera a scan serves: K (3, 3) pixels, its size, T_cam_scene (4, 4) from the
    scene's frame into its own (None: the scene's frame is this camera's), and the
    reflectance (H, W) in [0, 1] and greenness (H, W) in [0, 1] its image gives (None:
    uniform reflectance, no greenness)."""

    K: np.ndarray
    width: int
    height: int
    T_cam_scene: np.ndarray | None = None
    reflectance: np.ndarray | None = None
    greenness: np.ndarray | None = None

    def from_scene(self, points_scene: np.ndarray) -> np.ndarray:
        """(N, 3) points in the scene's frame (m) -> in this camera's."""
        return points_scene if self.T_cam_scene is None else transform_points(self.T_cam_scene, points_scene)

    def directions_from_scene(self, directions_scene: np.ndarray) -> np.ndarray:
        """(N, 3) directions in the scene's frame -> in this camera's."""
        if self.T_cam_scene is None:
            return directions_scene
        return transform_directions(self.T_cam_scene, directions_scene)


def photo_scan_camera(K: np.ndarray, rgb: np.ndarray, T_cam_scene: np.ndarray | None = None) -> ScanCamera:
    """A camera K (3, 3) whose (H, W, 3) uint8 photo colours the hits: its luma as the
    reflectance, and its greenness."""
    height, width = rgb.shape[:2]
    return ScanCamera(K, width, height, T_cam_scene, luma(rgb), greenness(rgb))


def sample_reflectance(
    points_scene: np.ndarray, cameras: list[ScanCamera], layer: str = "reflectance", fallback=UNIFORM_REFLECTANCE
) -> np.ndarray:
    """The camera image's `layer` (reflectance or greenness) (N,) at points (N, 3, scene
    frame, m): at the pixel where each lands in the first camera (in order) whose image
    holds it; `fallback` outside every image or where the cameras give none."""
    values = np.full(len(points_scene), fallback, dtype=np.float64)
    unseen = np.ones(len(points_scene), dtype=bool)
    for camera in cameras:
        image = getattr(camera, layer)
        if image is None or not unseen.any():
            continue
        u, v, inside = pixels_in_image(camera.from_scene(points_scene), camera.K, camera.width, camera.height)
        take = inside & unseen
        values[take] = image[v[take].astype(np.int64), u[take].astype(np.int64)]
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


def _points_lidar(
    recorded: Firing, firing: Firing, returned: np.ndarray, distance_m: np.ndarray, signal: np.ndarray
) -> np.ndarray:
    """(N, 7) float32 points.npy rows (schema.POINT_FIELDS) of the returned rays (N,)
    indices into the frame: each at distance_m (N,) along its beam from its origin as
    `recorded` states them (the firing itself, or the firing moved into the trigger-time
    frame), with the intensity of its signal (N,), and its ring, firing time and the
    azimuth (rad) it was fired at in the LiDAR's own frame, from `firing`."""
    ray_points = recorded.origins_lidar[returned] + recorded.directions_lidar[returned] * distance_m[:, None]
    directions = firing.directions_lidar[returned]
    azimuth = np.arctan2(directions[:, 1], directions[:, 0])
    columns = [ray_points, intensity_from_signal(signal), firing.ring[returned], firing.time_s[returned], azimuth]
    return np.column_stack(columns).astype(np.float32)


def _fire(
    sensor: Sensor, cameras: list[ScanCamera], T_scene_lidar: np.ndarray, rng: np.random.Generator, motion
) -> tuple[Firing, Firing, SweepMotion | None]:
    """One frame of `sensor`: (the firing in the LiDAR's own frame at each ray's time, the
    firing as cast: moved into the trigger-time frame when the LiDAR moves, the motion with
    the trigger time of the first camera, looking along its optical axis)."""
    firing = sensor.fire(rng)
    if motion is None:
        return firing, firing, None
    first = cameras[0]
    axis_scene = np.array([0.0, 0.0, 1.0]) if first.T_cam_scene is None else first.T_cam_scene[2, :3]
    axis_lidar = T_scene_lidar[:3, :3].T @ axis_scene
    motion = dataclasses.replace(motion, trigger_time_s=sensor.trigger_time_s(firing, axis_lidar))
    return firing, motion.firing_as_cast(firing), motion


def _returns(
    hits: Hits,
    origins_scene: np.ndarray,
    directions_scene: np.ndarray,
    beam_ring: np.ndarray,
    cameras: list[ScanCamera],
    sensor: Sensor,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, HitFeatures, int]:
    """Which of B beams return, from the hits of their B x K sub-rays (origins_scene and
    directions_scene (B * K, 3), beam-major) and the beams' rings (B,): the return effects,
    then the sensor's fitted ray drop where it has one (in place of the weak-return drop).

    Returns (returned beams (R,) indices, their range (R,) m, signal (R,), HitFeatures of
    their first sub-ray hit, beams with a hit in range)."""
    beams = len(beam_ring)
    sub_rays = sensor.effects.active_sub_rays
    in_range = np.isfinite(hits.t) & (hits.t >= sensor.min_range_m) & (hits.t <= sensor.max_range_m)
    range_m = np.where(in_range, hits.t, np.inf)
    hit_points_scene = origins_scene[in_range] + directions_scene[in_range] * hits.t[in_range, None]
    cos_incidence, reflectance, green = np.zeros((3, len(directions_scene)))
    cos_incidence[in_range] = np.abs(np.einsum("ij,ij->i", hits.normals[in_range], directions_scene[in_range]))
    reflectance[in_range] = sample_reflectance(hit_points_scene, cameras)
    green[in_range] = sample_reflectance(hit_points_scene, cameras, "greenness", 0.0)
    signal = np.zeros(len(directions_scene))
    signal[in_range] = signal_strength(reflectance[in_range], cos_incidence[in_range], hits.t[in_range])
    effects = sensor.effects if sensor.ray_drop is None else dataclasses.replace(sensor.effects, detection_range_m=0.0)
    returns = resolve_returns(range_m.reshape(beams, sub_rays), signal.reshape(beams, sub_rays), effects, rng)
    kept = np.isfinite(returns.range_m)
    first_hit = (np.arange(beams), np.argmax(in_range.reshape(beams, sub_rays), axis=1))
    beam_hits = HitFeatures(
        beam_ring,
        returns.range_m,
        *(values.reshape(beams, sub_rays)[first_hit] for values in (cos_incidence, reflectance, green)),
    )
    if sensor.ray_drop is not None:
        candidates = np.flatnonzero(kept)
        chance = sensor.ray_drop.return_probability(beam_hits.subset(candidates))
        kept[candidates] = rng.random(len(candidates)) < chance
    returned = np.flatnonzero(kept)
    beams_hit = int(in_range.reshape(beams, sub_rays).any(axis=1).sum())
    return returned, returns.range_m[returned], returns.signal[returned], beam_hits.subset(returned), beams_hit


def simulate_rig_scan(
    target: RayTarget,
    cameras: list[ScanCamera],
    sensor: Sensor,
    T_scene_lidar: np.ndarray,
    rng: np.random.Generator,
    times: StageTimes | None = None,
    threads: int = 0,
    motion: SweepMotion | None = None,
) -> Scan:
    """One frame of `sensor` placed at `T_scene_lidar` (4, 4) in `target` (any frame, m)
    serving several cameras: only beams that can reach one of the cameras' images are
    cast; a hit's reflectance comes from the first camera that sees it. sparse_depth_m is
    the first camera's; the others project points_scene themselves (own z-buffer). With a
    `motion`, T_scene_lidar is the LiDAR at the first camera's trigger time and each ray
    leaves from where the LiDAR is at its firing time (sensors/sweep.py)."""
    times = times or StageTimes()
    with times.stage("rays"):
        firing, cast_firing, motion = _fire(sensor, cameras, T_scene_lidar, rng, motion)
        directions_scene = transform_directions(T_scene_lidar, cast_firing.directions_lidar)
        origins_scene = transform_points(T_scene_lidar, cast_firing.origins_lidar)
        toward_image = _toward_images(origins_scene, directions_scene, cameras, sensor)
        beams_scene = directions_scene[toward_image]
        beam_origins_scene = origins_scene[toward_image]
        effects = sensor.effects
        sub_rays_scene = sub_ray_directions(beams_scene, effects.divergence_mrad * 1e-3, effects.active_sub_rays)
        beams, sub_rays = sub_rays_scene.shape[:2]
        flat_scene = sub_rays_scene.reshape(-1, 3)
        flat_origins_scene = np.repeat(beam_origins_scene, sub_rays, axis=0)
    with times.stage("cast"):
        hits = target.cast(flat_origins_scene, flat_scene, threads=threads)
    with times.stage("project"):
        beam_ring = cast_firing.ring[toward_image]
        returned, distance, signal, beam_hits, beams_hit = _returns(
            hits, flat_origins_scene, flat_scene, beam_ring, cameras, sensor, rng
        )
        # A sensor reports every return along its beam's axis.
        points_scene = beam_origins_scene[returned] + beams_scene[returned] * distance[:, None]
        fired = np.flatnonzero(toward_image)[returned]
        recorded = cast_firing if motion is None or motion.deskew else firing
        points_lidar = _points_lidar(recorded, firing, fired, distance, signal)
        if recorded is not cast_firing:
            points_scene = transform_points(T_scene_lidar, points_lidar[:, :3].astype(np.float64))
        first = cameras[0]
        sparse_depth_m, _ = sparse_depth_image(first.from_scene(points_scene), first.K, first.width, first.height)
    counts = {
        "rays": int(len(firing.directions_lidar)),
        "rays_toward_image": int(toward_image.sum()),
        "rays_cast": int(len(flat_scene)),
        "hits": beams_hit,
        "points": int(len(fired)),
        "sparse_pixels": int(np.count_nonzero(sparse_depth_m)),
    }
    motion_record = None if motion is None else motion.record()
    return Scan(sparse_depth_m, points_lidar, counts, firing.phase, points_scene, beam_hits, motion_record)


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

"""Fitting a sensor's ray drop to real scans (`simlidar sensors fit-drop`).

For each real frame (a scan, its camera image and their calibration): the real scan,
densified, is the scene's geometry (as in `fidelity`); an ideal scan of the sensor into it
(no range noise, no drop: every beam that hits returns) gives each beam's laser, range,
incidence and colour (sensors/ray_drop.py's HitFeatures); the real scan says which of
those beams came back: a beam returned when the real scan has a point of its laser within
half an azimuth step of it. The FittedRayDrop is fitted on every frame's beams at once.

Beams that hit nothing in the densified geometry tell nothing (the geometry ends where the
real scan does) and are left out; so are the lasers the camera never sees, which keep the
shared logit.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tomllib
from simlidar.sensors import ReturnEffects, SpinningLidar
from simlidar.sensors.camera import transform_points
from simlidar.sensors.catalog import CATALOG_DIR, SensorSpecError, sensor_from_dict
from simlidar.sensors.files import read_text_file
from simlidar.sensors.ray_drop import FittedRayDrop, HitFeatures, fit_ray_drop
from simlidar.sensors.targets import RayTarget

from ..errors import PipelineError
from ..stages.mesh import MeshOptions
from ..stages.scan import ScanCamera, photo_scan_camera, simulate_rig_scan
from .fidelity import RealFrame, real_geometry
from .scan_metrics import points_in_image

# Consecutive returns of one laser this many azimuth steps apart or closer had no firing
# dropped between them (real units fire at an uneven pace: steps vary by about 10%).
GAP_STEPS = 1.5


@dataclass(frozen=True)
class DropObservations:
    """The beams of an ideal scan that hit the geometry (`hits`) and which of them the real
    scan returned (returned (N,) bool), for one or more frames."""

    hits: HitFeatures
    returned: np.ndarray


def real_returns(points_lidar: np.ndarray, ring: np.ndarray, real_points_lidar: np.ndarray, sensor: SpinningLidar):
    """(N,) bool: for each point (N, 3, LiDAR frame, m) of laser ring (N,), whether the real
    scan (M, 3) returned the firing it stands for. Between two consecutive real points of
    the laser (its nearest one) less than GAP_STEPS azimuth steps apart nothing was dropped;
    across a wider gap, only a point within half a step of either end stands for a return."""
    step = np.deg2rad(sensor.azimuth_step_deg)
    real_ring = sensor.nearest_laser(real_points_lidar)
    # One sorted key per (laser, azimuth): lasers 8 pi apart, so that no gap spans two.
    spacing = 8 * np.pi
    real_keys = np.sort(spacing * real_ring + np.arctan2(real_points_lidar[:, 1], real_points_lidar[:, 0]))
    keys = spacing * ring + np.arctan2(points_lidar[:, 1], points_lidar[:, 0])
    if len(real_keys) == 0:
        return np.zeros(len(keys), dtype=bool)
    after = np.minimum(np.searchsorted(real_keys, keys), len(real_keys) - 1)
    before = np.maximum(after - 1, 0)
    to_before, to_after = np.abs(keys - real_keys[before]), np.abs(real_keys[after] - keys)
    near_end = np.minimum(to_before, to_after) <= 0.5 * step
    inside_run = (real_keys[after] >= keys) & (real_keys[before] <= keys) & (to_before + to_after <= GAP_STEPS * step)
    return near_end | inside_run


def drop_observations(
    frame: RealFrame, sensor: SpinningLidar, rng: np.random.Generator, mesh_options: MeshOptions | None = None
) -> DropObservations:
    """The beams of an ideal `sensor` scan from the frame's own calibration into its
    densified geometry, with which of them its real scan returned."""
    _, _, target = real_geometry(frame, mesh_options)
    camera = photo_scan_camera(frame.calibration.K, frame.rgb)
    return observe_drop(target, camera, sensor, frame.calibration.T_cam_lidar, frame.points_lidar, rng)


def observe_drop(
    target: RayTarget,
    camera: ScanCamera,
    sensor: SpinningLidar,
    T_cam_lidar: np.ndarray,
    real_points_lidar: np.ndarray,
    rng: np.random.Generator,
) -> DropObservations:
    """The beams of an ideal `sensor` scan at T_cam_lidar (4, 4) into `target` (camera frame,
    m) that hit, each with whether the real scan real_points_lidar (M, 3, m) returned it."""
    check_fittable(sensor)
    ideal = dataclasses.replace(sensor, effects=ReturnEffects(), ray_drop=None)
    scan = simulate_rig_scan(target, [camera], ideal, T_cam_lidar, rng)
    points_lidar = scan.points_lidar[:, :3].astype(np.float64)
    return DropObservations(scan.hits, real_returns(points_lidar, scan.hits.ring, real_points_lidar, sensor))


def check_fittable(sensor) -> None:
    """PipelineError unless a ray drop can be fitted for `sensor`: a spinning one."""
    if not isinstance(sensor, SpinningLidar):
        raise PipelineError(
            f"fit-drop needs a spinning sensor (lasers x azimuth cells); {sensor.name} is {sensor.kind}"
        )


def fit_drop(
    frames: list[RealFrame], sensor: SpinningLidar, seed: int = 0, match_count: bool = True
) -> tuple[FittedRayDrop, list[dict]]:
    """The FittedRayDrop of `sensor` on every frame's beams, and per frame its figures:
    beams, real returns among them, real points in the image, the model's expected returns.

    match_count: then shift every laser's logit alike so that the expected returns over all
    frames equal the real scans' points in the image. The geometry cannot hold every real
    return (a point on a thin structure or a surface's edge has no mesh triangle), so a model
    of which beams that hit return would leave the simulation that many points short."""
    observations = [drop_observations(frame, sensor, np.random.default_rng(seed)) for frame in frames]
    hits = HitFeatures.concatenate([seen.hits for seen in observations])
    returned = np.concatenate([seen.returned for seen in observations])
    real_points = [real_points_in_image(frame) for frame in frames]
    if returned.all() or not returned.any():
        raise PipelineError(
            f"fit-drop: of the {len(returned)} beams that hit the frames' densified scans, the real scans returned "
            f"{'every one' if len(returned) and returned.all() else 'none'}: nothing tells a drop apart (are the "
            "frames' scans, images and calibrations of one recording?)"
        )
    names = ", ".join(frame.name for frame in frames)
    source = (
        f"fitted by `simlidar sensors fit-drop` on {len(frames)} real frame(s) ({names}): {len(hits)} beams of an "
        f"ideal scan into each frame's densified scan, {int(returned.sum())} of them returned in the real scan"
    )
    if match_count:
        source += f"; logits shifted to expect the real scans' {sum(real_points)} points in view"
    model = fit_ray_drop(hits, returned, sensor.channels, source)
    if match_count:
        model = model.matching_count(hits, min(sum(real_points), len(hits) - 0.5))
    figures = [
        {
            "frame": frame.name,
            "beams": len(seen.hits),
            "returned": int(seen.returned.sum()),
            "real_points": count,
            "expected": float(model.return_probability(seen.hits).sum()),
        }
        for frame, seen, count in zip(frames, observations, real_points, strict=True)
    ]
    return model, figures


def real_points_in_image(frame: RealFrame) -> int:
    """How many of a real frame's points land in its image."""
    height, width = frame.rgb.shape[:2]
    points_cam = transform_points(frame.calibration.T_cam_lidar, frame.points_lidar)
    return int(points_in_image(points_cam, frame.calibration.K, width, height).sum())


def ray_drop_table(model: FittedRayDrop) -> str:
    """The sensor file's [ray_drop] table of `model` (TOML)."""
    rows = [model.laser_logit[start : start + 8] for start in range(0, len(model.laser_logit), 8)]
    logits = "".join("    " + ", ".join(f"{value:.4f}" for value in row) + ",\n" for row in rows)
    return (
        "[ray_drop]\n"
        "# Which beams that hit come back (sensors/ray_drop.py): p = sigmoid(laser_logit[laser]\n"
        "# + range_coefficient * ln(range / 10 m) + incidence_coefficient * cos(incidence)\n"
        "# + luma_coefficient * luma + greenness_coefficient * greenness); by `simlidar sensors fit-drop`.\n"
        "# Bounded: range_coefficient <= 0 and incidence_coefficient >= 0, since at a fixed material the\n"
        "# signal falls with range and grows with cos(incidence). On few frames geometry is confounded\n"
        "# with material (a road seen grazing returns, facing car bodies and foliage drop), and a weight\n"
        "# the data would push across its bound is held at 0 (see sensors/ray_drop.py).\n"
        f"source = {json.dumps(model.source)}\n"
        f"rays = {model.rays}\n"
        f"returns = {model.returns}\n"
        f"laser_logit = [\n{logits}]\n"
        f"range_coefficient = {model.range_coefficient:.4f}\n"
        f"incidence_coefficient = {model.incidence_coefficient:.4f}\n"
        f"luma_coefficient = {model.luma_coefficient:.4f}\n"
        f"greenness_coefficient = {model.greenness_coefficient:.4f}\n"
    )


def sensor_to_fit(sensor_name_or_path: str) -> tuple[SpinningLidar, str]:
    """fit-drop's sensor (catalog name or .toml path) and its file's text. The sensor is read
    without the file's [ray_drop] table: the fit replaces it, so a table the loader refuses
    (one fitted before the weights were bounded) does not stop its refit."""
    path = Path(sensor_name_or_path)
    if path.suffix != ".toml":
        path = CATALOG_DIR / f"{sensor_name_or_path}.toml"
        if not path.is_file():
            raise PipelineError(
                f"`sensor` {sensor_name_or_path}: no such catalog sensor (see `simlidar sensors list`) nor a .toml file"
            )
    text = read_text_file(path, "sensor file", SensorSpecError)
    try:
        sensor = sensor_from_dict(tomllib.loads(with_ray_drop(text, None)), path)
    except tomllib.TOMLDecodeError as error:
        raise SensorSpecError(f"{path}: not valid TOML ({error})") from None
    check_fittable(sensor)
    return sensor, text


def with_ray_drop(text: str, model: FittedRayDrop | None) -> str:
    """A sensor file's text with its [ray_drop] table (if any, up to the next table) replaced
    by `model`'s at the end (None: left out); everything else kept as written."""
    lines = text.splitlines(keepends=True)
    kept, inside = [], False
    for line in lines:
        header = line.strip().startswith("[") and not line.strip().startswith("[[")
        if header:
            inside = line.strip() == "[ray_drop]"
        if not inside:
            kept.append(line)
    body = "".join(kept).rstrip("\n")
    return f"{body}\n" if model is None else f"{body}\n\n{ray_drop_table(model)}"

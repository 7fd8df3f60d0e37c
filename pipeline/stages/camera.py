"""From the teacher to a scene's camera: the prediction made metric depth, checked to hold
enough depth the run's sensor can return from, and given its intrinsics K. Every kind of
input whose LiDAR is simulated takes this step between the teacher and the scene."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from simlidar.teachers import DepthPrediction, TeacherError, resolve_intrinsics, to_metric

from ..sources.photos import LoadedImage
from .mesh import check_depth_usable
from .scene import SceneCamera, image_rng
from .timing import StageTimes

if TYPE_CHECKING:
    from ..config import RunPlan
    from ..sources.calibrated_rig import Calibration


def metric_depth(
    prediction: DepthPrediction | TeacherError, plan: RunPlan, key: str, times: StageTimes
) -> DepthPrediction:
    """The teacher's prediction for one camera of scene `key` as metric depth (H, W, m):
    relative output is converted with the draw of the key's generator, so every camera of
    one scene draws alike (one scale for the scene). Raises the TeacherError the teacher
    gave instead of a prediction, and UnusableDepth when too few pixels lie within the
    sensor's range."""
    if isinstance(prediction, TeacherError):
        raise prediction
    with times.stage("teacher"):
        metric = to_metric(prediction, plan.conversion, image_rng(plan.config.seed, key))
    check_depth_usable(metric.depth, plan.sensor.min_range_m, plan.sensor.max_range_m)
    return metric


def photo_camera(
    path: Path,
    image: LoadedImage,
    prediction: DepthPrediction | TeacherError,
    plan: RunPlan,
    key: str,
    times: StageTimes,
    source_path: str,
    source_meta: dict | None = None,
) -> SceneCamera:
    """A photo (`path`, its sidecars beside it; source_path: what the samples' json name) as
    a scene's one camera: metric depth, and K
    by the run's intrinsics policy (--intrinsics, the photo's json, EXIF, the teacher's
    focal length, a field of view; the random one drawn from the key's own generator).
    IntrinsicsError when no policy gives a usable K."""
    metric = metric_depth(prediction, plan, key, times)
    height, width = image.rgb.shape[:2]
    config = plan.config
    K, intrinsics_source = resolve_intrinsics(
        path,
        width,
        height,
        config.intrinsics,
        config.fov_deg,
        policy=plan.intrinsics_policy,
        fov_range_deg=plan.fov_range_deg,
        teacher_focal_px=metric.focal_px,
        rng=image_rng(config.seed, key, "intrinsics"),
    )
    return SceneCamera(image, K, intrinsics_source, metric, source_path, source_meta=source_meta)


def calibrated_cameras(
    images: list[LoadedImage],
    predictions: list[DepthPrediction | TeacherError],
    calibration: Calibration,
    plan: RunPlan,
    key: str,
    times: StageTimes,
    source_paths: tuple[str, ...],
) -> tuple[SceneCamera, ...]:
    """A calibrated rig's frame as its cameras, in the calibration's order: each camera's
    image (source_paths: what the samples' json name) with its metric depth, K and pose
    T_rig_cam from the calibration (the scene's frame is the rig's)."""
    metric = [metric_depth(prediction, plan, key, times) for prediction in predictions]
    return tuple(
        SceneCamera(image, camera.K, "calibration", depth, source_path, camera.name, camera.T_rig_cam)
        for camera, image, depth, source_path in zip(calibration.cameras, images, metric, source_paths, strict=True)
    )

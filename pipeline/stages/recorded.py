"""Samples of recorded LiDAR: nothing is simulated, the ground truth is what a real sensor
measured. KITTI's depth-completion frames keep their projected scan (`sparse.png`), the
annotated ground truth (`dense.png`) and the image's own bytes; a calibrated rig's sweep is
projected into each camera with a z-buffer (nearest point per pixel) and is both `sparse.png`
and `dense.png`. With a teacher, its relative disparity is stored as `teacher.png`."""

from __future__ import annotations

import json

import numpy as np
from simlidar.sensors.camera import invert_pose, sparse_depth_image, transform_points
from simlidar.teachers import DepthPrediction

from .. import schema
from ..sources.calibrated_rig import Calibration, RigFrame, rig_record
from ..sources.calibrated_rig_lidar import Sweep
from ..sources.kitti import KittiFrame, KittiRecording
from ..sources.photos import LoadedImage
from .sample import sparse_counts

# What a sample's json and the manifest say of the LiDAR: a real one, not a simulation.
RECORDED_SENSOR = {"name": "recorded", "kind": "recorded"}


def teacher_disparity(depth: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """A teacher's (H, W) output -> (relative disparity, valid). Metric and relative
    depth are inverted (relative depth's unknown shift is taken as 0); disparity is kept."""
    depth = np.asarray(depth, dtype=np.float64)
    valid = np.isfinite(depth) & (depth > 0)
    if kind == "disparity":
        return depth, valid
    disparity = np.zeros_like(depth)
    disparity[valid] = 1.0 / depth[valid]
    return disparity, valid


def teacher_member(prediction: DepthPrediction) -> tuple[bytes, dict]:
    """A teacher's prediction -> (teacher.png bytes, the json's "teacher_relative" record)."""
    disparity, valid = teacher_disparity(prediction.depth, prediction.kind)
    png, low, high = schema.encode_relative_png(disparity, valid)
    record = {
        "teacher": prediction.teacher,
        "kind": prediction.kind,
        "stored": "disparity",
        "normalisation": "min-max per image, 1..65535 = 0..1, 0 = none",
        "min": low,
        "max": high,
    }
    return png, record


def kitti_sample(
    frame: KittiFrame, split: str, recording: KittiRecording, prediction: DepthPrediction | None
) -> tuple[dict[str, bytes], dict]:
    """The members of a KITTI frame's sample and its counts (every scan pixel is a point)."""
    sparse_pixels = int(np.count_nonzero(recording.sparse_m))
    counts = {
        "points": sparse_pixels,
        "sparse_pixels": sparse_pixels,
        "dense_pixels": int(np.count_nonzero(recording.groundtruth_m)),
    }
    height, width = recording.rgb.shape[:2]
    meta = {
        "key": frame.key,
        "source": "kitti_depth_completion",
        "split": split,
        "source_path": str(frame.image),
        "image_size": [width, height],
        "K": recording.K.tolist() if recording.K is not None else None,
        "image_encoding": "original bytes",
        "sensor": RECORDED_SENSOR,
        "sparse": "velodyne_raw",
        "dense": "groundtruth (semi-dense, annotated)",
        "counts": counts,
    }
    members = {
        recording.image_member: recording.image,
        schema.SPARSE: recording.sparse_png,
        schema.DENSE: recording.groundtruth_png,
    }
    if prediction is not None:
        members[schema.TEACHER], meta["teacher_relative"] = teacher_member(prediction)
    members[schema.META] = json.dumps(meta, sort_keys=True).encode()
    return members, counts


def sweep_sample(
    frame: RigFrame,
    index: int,
    calibration: Calibration,
    image: LoadedImage,
    sweep: Sweep,
    prediction: DepthPrediction | None,
) -> tuple[str, dict[str, bytes], dict]:
    """(key, members, counts) of camera `index` of a rig's frame: the sweep (points_lidar
    (N, 3) m) projected into the camera through T_cam_lidar = inv(T_rig_cam) @ T_rig_lidar."""
    camera = calibration.cameras[index]
    T_cam_lidar = invert_pose(camera.T_rig_cam) @ calibration.T_rig_lidar
    points_cam = transform_points(T_cam_lidar, sweep.points_lidar)
    sparse_m, in_image = sparse_depth_image(points_cam, camera.K, camera.width, camera.height)
    sparse_png = schema.encode_depth_png(sparse_m)
    key = f"{frame.key}-r{index}"
    counts = {
        "points": len(sweep.points_lidar),
        "points_in_image": int(in_image.sum()),
        **sparse_counts(sparse_m),
    }
    meta = {
        "key": key,
        "scene": frame.key,
        "source": "real_rig",
        "source_path": frame.images[index],
        "image_size": [camera.width, camera.height],
        "K": camera.K.tolist(),
        "intrinsics_source": "calibration",
        "rig": rig_record(calibration, index, calibration.T_rig_lidar),
        "T_cam_lidar": T_cam_lidar.tolist(),
        "sensor": RECORDED_SENSOR,
        "lidar": {
            "path": sweep.relpath,
            "columns": sweep.columns,
            "points": len(sweep.points_lidar),
            "points_dropped": sweep.dropped,
        },
        "sparse": "real LiDAR sweep, z-buffer projection",
        "dense": "the same real projection (ground truth; nothing simulated)",
        "image_reencoded": image.reencoded,
        "counts": counts,
    }
    members = {schema.IMAGE: image.jpeg, schema.SPARSE: sparse_png, schema.DENSE: sparse_png}
    if prediction is not None:
        members[schema.TEACHER], meta["teacher_relative"] = teacher_member(prediction)
        meta["teacher"] = prediction.teacher
    members[schema.META] = json.dumps(meta, sort_keys=True).encode()
    return key, members, counts

"""The one sample builder: a view of a scan -> its json and members, written in one place
for photos, virtual rigs and calibrated rigs alike."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field

import numpy as np
from simlidar.teachers import DepthPrediction

from .. import schema
from .scan import Scan


@dataclass
class View:
    """One camera of one scan, as a sample shows it.

    key: the sample key; source_path: the input it comes from; K (3, 3) pixels and its
    (width x height); jpeg: the image bytes (image_reencoded: whether they are not the
    original file's); intrinsics_source: where K came from; prediction: the teacher's
    output it was made from; mesh: the summary of its camera's mesh; T_cam_lidar (4, 4);
    dense_m, sparse_m: (height, width) float32 camera z (m), 0 = none; fields: what only
    this kind of view records (scene, rig, photo, T_cam_lidar_true); dense_png: dense_m
    already encoded (None: encode it); teacher_relative: also store the teacher's relative
    disparity in the view (teacher.png, for distillation); source_meta: what the input's
    source said about it (a WebDataset input's json and txt), recorded when there is one."""

    key: str
    source_path: str
    K: np.ndarray
    width: int
    height: int
    jpeg: bytes
    image_reencoded: bool
    intrinsics_source: str
    prediction: DepthPrediction
    mesh: dict
    T_cam_lidar: np.ndarray
    dense_m: np.ndarray
    sparse_m: np.ndarray
    fields: dict = field(default_factory=dict)
    dense_png: bytes | None = None
    teacher_relative: bool = False
    source_meta: dict | None = None


@dataclass(frozen=True)
class ScanRecord:
    """What every view of one scan records: the scan's index among its scene's scans
    (the json's "view"), the sensor and mount records and the run's seed."""

    index: int
    sensor: dict
    mount: dict
    seed: int


def build_sample(view: View, scan: Scan, record: ScanRecord, save_points: bool) -> tuple[dict[str, bytes], dict]:
    """The members of `view`'s sample (image, sparse, dense, json; teacher.png and the
    scan's points when asked) and its counts (the scan's, with the view's sparse pixels: those
    sparse.png holds, and those beyond its range, not written)."""
    counts = {**scan.counts, **sparse_counts(view.sparse_m)}
    meta = {
        "key": view.key,
        "source_path": view.source_path,
        "image_size": [view.width, view.height],
        "K": view.K.tolist(),
        "intrinsics_source": view.intrinsics_source,
        "T_cam_lidar": view.T_cam_lidar.tolist(),
        "sensor": record.sensor,
        "mount": record.mount,
        **scan.phase,
        "teacher": view.prediction.describe(),
        "seed": record.seed,
        "view": record.index,
        "mesh": view.mesh,
        "counts": counts,
        "image_reencoded": view.image_reencoded,
        **view.fields,
        **({"source_meta": view.source_meta} if view.source_meta is not None else {}),
        **({"ego_motion": scan.ego_motion} if scan.ego_motion is not None else {}),
        **({"points_layout": schema.points_layout()} if save_points else {}),
    }
    members = {
        schema.IMAGE: view.jpeg,
        schema.SPARSE: schema.encode_depth_png(view.sparse_m),
        schema.DENSE: view.dense_png or schema.encode_depth_png(view.dense_m),
    }
    if view.teacher_relative:
        members[schema.TEACHER], meta["teacher_relative"] = _teacher_relative(view)
    members[schema.META] = json.dumps(meta, sort_keys=True).encode()
    if save_points:
        members[schema.POINTS] = npy_bytes(scan.points_lidar)
    return members, counts


def sparse_counts(sparse_m: np.ndarray) -> dict[str, int]:
    """The json's count of the pixels sparse.png holds of an (H, W) map in metres, and of those
    with a return it cannot hold (beyond the encoding's 255.996 m), dropped and counted."""
    kept, beyond = schema.encoded_pixels(sparse_m)
    return {"sparse_pixels": kept, "sparse_pixels_beyond_encoding": beyond}


def _teacher_relative(view: View) -> tuple[bytes, dict]:
    """teacher.png (the teacher's depth in the view as min-max normalised disparity) and
    its json record."""
    valid = view.dense_m > 0
    disparity = np.where(valid, 1.0 / np.where(valid, view.dense_m, 1.0), 0.0)
    png, low, high = schema.encode_relative_png(disparity, valid)
    return png, {
        "teacher": view.prediction.teacher,
        "stored": "disparity",
        "from": "1 / dense: the teacher's depth in the view after the edge rule (see edges)",
        "normalisation": "min-max per image, 1..65535 = 0..1, 0 = none",
        "min": low,
        "max": high,
    }


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()

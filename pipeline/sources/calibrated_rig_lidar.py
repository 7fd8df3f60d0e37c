"""A calibrated rig with real LiDAR sweeps as shards of the simlidar schema
(`simlidar convert rig ROOT --rig ROOT/calibration.json`).

The layout is the real-rig one of `generate --rig` (see calibrated_rig.py) plus one sweep per
frame in a LiDAR folder:

    ROOT/calibration.json
    ROOT/CAMERA/FRAME.jpg
    ROOT/LIDAR/FRAME.bin | FRAME.pcd      (any folder name: --lidar-folder)

Sweep formats, points in the LiDAR frame (x forward, y left, z up), metres:
- `.bin`: float32 rows of N x 4 (x, y, z, reflectance; KITTI) or N x 5 (x, y, z,
  intensity, ring; nuScenes), little-endian, no header. --lidar-columns says which;
  auto takes 5 when the fifth column of a 5-wide reading holds ring numbers (whole
  numbers 0-255) and the file size allows it, else 4.
- `.pcd`: a point cloud file (ascii, binary or binary_compressed); x, y, z are read.

Per frame and camera a sample `<frame key>-r<index>`: the camera's image (original
bytes), `sparse.png` = the sweep projected into the camera with a z-buffer (nearest
point per pixel), `dense.png` = the same real projection (the ground truth: nothing
is simulated), the teacher's relative disparity as `teacher.png` with --teacher, and
a json with scene, rig view and neighbours as `generate --rig` writes them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from simlidar.sensors.camera import invert_pose, sparse_depth_image, transform_points
from simlidar.teachers import TeacherInput
from tqdm import tqdm

from .. import schema
from ..errors import PipelineError
from ..output.store import LocalStore
from ..writer import ShardWriter
from .calibrated_rig import Calibration, RigFrame, list_frames, load_calibration, load_frame, rig_record
from .kitti import teacher_member
from .photos import BadImage

LIDAR_SUFFIXES = (".bin", ".pcd")
LIDAR_COLUMNS = ("auto", "4", "5")
# Images are kept as they are; this is only the quality of a re-encode (non-JPEG input).
JPEG_QUALITY = 95


@dataclass(frozen=True)
class Sweep:
    """points_lidar (N, 3) float64 metres in the LiDAR frame; columns: how the file was
    read; relpath: the file under ROOT."""

    points_lidar: np.ndarray
    columns: int
    relpath: str = ""


def read_bin_sweep(path: Path, columns: str = "auto") -> Sweep:
    """A .bin sweep (module doc) -> Sweep; PipelineError naming the file when it is empty
    or its size fits neither layout."""
    raw = path.read_bytes()
    fits = [width for width in (4, 5) if len(raw) % (4 * width) == 0]
    if columns != "auto":
        width = int(columns)
        if width not in fits:
            raise PipelineError(f"{path}: {len(raw)} bytes is not a whole number of {width}-float32 rows")
    elif not fits:
        raise PipelineError(f"{path}: {len(raw)} bytes is neither N x 4 nor N x 5 float32 (x, y, z, ...)")
    else:
        width = 5 if 5 in fits and _looks_like_rings(np.frombuffer(raw, "<f4").reshape(-1, 5)[:, 4]) else 4
    if not raw:
        raise PipelineError(f"{path}: an empty sweep (no points)")
    values = np.frombuffer(raw, "<f4").reshape(-1, width)
    return Sweep(values[:, :3].astype(np.float64), width)


def _looks_like_rings(column: np.ndarray) -> bool:
    return bool(len(column)) and bool(np.all((column == np.round(column)) & (column >= 0) & (column <= 255)))


def read_pcd_sweep(path: Path) -> Sweep:
    """A .pcd sweep -> Sweep (x, y, z only); PipelineError when it holds no points."""
    import open3d as o3d

    cloud = o3d.io.read_point_cloud(str(path), format="pcd")
    points = np.asarray(cloud.points, dtype=np.float64)
    if len(points) == 0:
        raise PipelineError(f"{path}: no points could be read (not a PCD file, or an empty one)")
    return Sweep(points, 3)


def read_sweep(path: Path, columns: str = "auto") -> Sweep:
    if path.suffix == ".pcd":
        return read_pcd_sweep(path)
    return read_bin_sweep(path, columns)


def find_lidar_folder(root: Path, calibration: Calibration, name: str | None) -> Path:
    """ROOT/name, or the one folder of ROOT that is no camera's and holds .bin or .pcd files."""
    if name is not None:
        folder = root / name
        if not folder.is_dir():
            raise PipelineError(f"{root} has no LiDAR folder {name}/ (--lidar-folder)")
        return folder
    cameras = {camera.name for camera in calibration.cameras}
    candidates = [
        folder
        for folder in sorted(root.iterdir())
        if folder.is_dir()
        and folder.name not in cameras
        and any(file.suffix in LIDAR_SUFFIXES for file in folder.iterdir())
    ]
    if len(candidates) != 1:
        found = ", ".join(folder.name for folder in candidates) or "none"
        raise PipelineError(
            f"{root}: cannot tell the LiDAR folder (folders with .bin or .pcd sweeps: {found}); pass --lidar-folder"
        )
    return candidates[0]


def sweep_path(folder: Path, frame: RigFrame) -> Path:
    """The frame's sweep file; BadImage (recorded, the frame skipped) when there is none."""
    for suffix in LIDAR_SUFFIXES:
        path = folder / f"{frame.relpath}{suffix}"
        if path.is_file():
            return path
    raise BadImage(f"no LiDAR sweep {folder.name}/{frame.relpath}.bin or .pcd for this frame")


def view_members(
    frame: RigFrame, index: int, calibration: Calibration, image, sweep: Sweep, prediction=None, teacher_name: str = ""
) -> dict:
    """The shard members of camera `index` of one frame (module doc)."""
    camera = calibration.cameras[index]
    T_cam_lidar = invert_pose(camera.T_rig_cam) @ calibration.T_rig_lidar
    points_cam = transform_points(T_cam_lidar, sweep.points_lidar)
    sparse_m, in_image = sparse_depth_image(points_cam, camera.K, camera.width, camera.height)
    sparse_png = schema.encode_depth_png(sparse_m)
    meta = {
        "key": f"{frame.key}-r{index}",
        "scene": frame.key,
        "source": "real_rig",
        "source_path": frame.images[index],
        "image_size": [camera.width, camera.height],
        "K": camera.K.tolist(),
        "intrinsics_source": "calibration",
        "rig": rig_record(calibration, index, calibration.T_rig_lidar),
        "T_cam_lidar": T_cam_lidar.tolist(),
        "lidar": {"path": sweep.relpath, "columns": sweep.columns, "points": len(sweep.points_lidar)},
        "sparse": "real LiDAR sweep, z-buffer projection",
        "dense": "the same real projection (ground truth; nothing simulated)",
        "image_reencoded": image.reencoded,
        "counts": {"points_in_image": int(in_image.sum()), "sparse_pixels": int(np.count_nonzero(sparse_m))},
    }
    members = {schema.IMAGE: image.jpeg, schema.SPARSE: sparse_png, schema.DENSE: sparse_png}
    if prediction is not None:
        members[schema.TEACHER], meta["teacher_relative"] = teacher_member(prediction, teacher_name)
        meta["teacher"] = teacher_name
    members[schema.META] = json.dumps(meta, sort_keys=True).encode()
    return members


def convert_frame(frame: RigFrame, root: Path, calibration: Calibration, lidar_folder: Path, columns: str, teacher):
    """Every camera's members of one frame, in camera order; BadImage for a frame that
    lacks an image or a readable sweep (the caller records it and goes on)."""
    images = load_frame(frame, calibration, JPEG_QUALITY)
    path = sweep_path(lidar_folder, frame)
    try:
        sweep = read_sweep(path, columns)
    except (PipelineError, OSError) as error:
        raise BadImage(str(error)) from None
    sweep = Sweep(sweep.points_lidar, sweep.columns, path.relative_to(root).as_posix())
    predictions = [None] * len(images)
    if teacher is not None:
        predictions = teacher.predict([TeacherInput(image_path, image.rgb) for image_path, image in images])
        for (image_path, _), prediction in zip(images, predictions, strict=True):
            if isinstance(prediction, Exception):
                raise BadImage(f"teacher {teacher.name} failed on {image_path.name}: {prediction}")
    teacher_name = teacher.name if teacher is not None else ""
    return [
        view_members(frame, index, calibration, image, sweep, prediction, teacher_name)
        for index, ((_, image), prediction) in enumerate(zip(images, predictions, strict=True))
    ]


def _prepare_out(out: Path, overwrite: bool) -> None:
    if any(out.glob("shard-*.tar")) and not overwrite:
        raise PipelineError(f"{out} already holds shards: pass --overwrite or another --out")
    out.mkdir(parents=True, exist_ok=True)
    for old in (*out.glob("shard-*.tar"), out / "errors.jsonl"):
        old.unlink(missing_ok=True)


def convert_rig(
    root: Path,
    rig: str,
    out: Path,
    teacher=None,
    lidar_folder: str | None = None,
    columns: str = "auto",
    shard_size: int = 100,
    progress: bool = True,
    overwrite: bool = False,
) -> dict:
    """Write OUT/shard-NNNNNN.tar (shard_size frames each, a frame's cameras together),
    OUT/manifest.json and OUT/errors.jsonl (one line per frame skipped, with why)."""
    if columns not in LIDAR_COLUMNS:
        raise PipelineError(f"lidar columns must be one of {', '.join(LIDAR_COLUMNS)}, got {columns!r}")
    if shard_size < 1:
        raise PipelineError(f"shard size must be at least 1 frame, got {shard_size}")
    root, out = Path(root), Path(out)
    calibration = load_calibration(rig)
    frames = list_frames(root, calibration)
    if not frames:
        raise PipelineError(f"{root} holds no frames: put images in ROOT/CAMERA/FRAME.jpg, one folder per camera")
    folder = find_lidar_folder(root, calibration, lidar_folder)
    _prepare_out(out, overwrite)
    shards, samples, errors = [], 0, []
    with tqdm(total=len(frames), disable=not progress, unit="frame") as bar:
        for start in range(0, len(frames), shard_size):
            with ShardWriter(LocalStore(out), f"shard-{len(shards):06d}.tar") as writer:
                for frame in frames[start : start + shard_size]:
                    try:
                        views = convert_frame(frame, root, calibration, folder, columns, teacher)
                    except BadImage as error:
                        errors.append({"frame": frame.relpath, "error": str(error)})
                        views = []
                    for index, members in enumerate(views):
                        writer.write(f"{frame.key}-r{index}", members)
                    samples += len(views)
                    bar.update(1)
            if writer.samples:
                shards.append({"name": writer.name, "samples": writer.samples, "sha256": writer.sha256})
            else:
                (out / writer.name).unlink()
    (out / "errors.jsonl").write_text("".join(json.dumps(error) + "\n" for error in errors))
    if not samples:
        raise PipelineError(f"no frame of {root} could be converted: {out}/errors.jsonl says why for each")
    manifest = {
        "source": "real_rig",
        "root": str(root.resolve()),
        "calibration": str(Path(rig).resolve()),
        "lidar_folder": folder.name,
        "teacher": teacher.name if teacher is not None else None,
        "frames": len(frames) - len(errors),
        "samples": samples,
        "skipped": len(errors),
        "shards": shards,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest

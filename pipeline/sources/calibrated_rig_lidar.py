"""A calibrated rig's real LiDAR sweeps as input (`simlidar convert rig ROOT --rig
ROOT/calibration.json`): the LiDAR folder found and each frame's sweep read.

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

Per frame and camera a sample `<frame key>-r<index>` (stages/recorded.py): the camera's image
(original bytes), `sparse.png` = the sweep projected into the camera with a z-buffer (nearest
point per pixel), `dense.png` = the same real projection (the ground truth: nothing is
simulated), the teacher's relative disparity as `teacher.png` with --teacher, and a json with
scene, rig view and neighbours as `generate --rig` writes them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..errors import PipelineError
from .calibrated_rig import Calibration, RigFrame
from .photos import BadImage

LIDAR_SUFFIXES = (".bin", ".pcd")
LIDAR_COLUMNS = ("auto", "4", "5")


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
            raise PipelineError(f"{root} has no LiDAR folder {name}/ (`lidar_folder`)")
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
            f"{root}: cannot tell the LiDAR folder (folders with .bin or .pcd sweeps: {found}); pass `lidar_folder`"
        )
    return candidates[0]


def sweep_path(folder: Path, frame: RigFrame) -> Path:
    """The frame's sweep file; BadImage (recorded, the frame skipped) when there is none."""
    for suffix in LIDAR_SUFFIXES:
        path = folder / f"{frame.relpath}{suffix}"
        if path.is_file():
            return path
    raise BadImage(f"no LiDAR sweep {folder.name}/{frame.relpath}.bin or .pcd for this frame")


def read_frame_sweep(root: Path, folder: Path, frame: RigFrame, columns: str) -> Sweep:
    """The frame's sweep in the LiDAR `folder` of `root`; BadImage (recorded, the frame
    skipped) when there is none or it cannot be read."""
    path = sweep_path(folder, frame)
    try:
        sweep = read_sweep(path, columns)
    except (PipelineError, OSError) as error:
        raise BadImage(str(error)) from None
    return replace(sweep, relpath=path.relative_to(root).as_posix())

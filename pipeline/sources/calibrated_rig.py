"""Real camera rigs: synchronised cameras with a calibration
(`simlidar generate --images ROOT --rig ROOT/calibration.json`).

The folder layout, DDAD- or nuScenes-like and kept simple:

    ROOT/calibration.json
    ROOT/CAMERA/FRAME.jpg          # one folder per camera of the calibration
    ROOT/CAMERA/FRAME.depth.png    # optional metric depth sidecar (as for photos)

Images of one instant share their FRAME name across the camera folders. The calibration:

    {
      "name": "front3",                       # optional, defaults to ROOT's name
      "rig_frame": "...", "lidar": {...}, "note": "...",   # optional notes for people
      "T_rig_lidar": [[...4 x 4...]],         # LiDAR (x forward, y left, z up) -> rig frame
      "cameras": [
        {"name": "CAM_FRONT", "K": [[fx, 0, cx], [0, fy, cy], [0, 0, 1]],
         "image_size": [width, height], "T_rig_cam": [[...4 x 4...]]},
        ...
      ]
    }

T_rig_cam maps a camera's OpenCV frame (x right, y down, z forward) into the rig's
frame, whatever that is (a vehicle frame, one camera's). Per frame, every camera's
teacher depth becomes a mesh in the rig frame; the meshes form one scene; one LiDAR
scan from T_rig_lidar is cast into it and re-projected into every camera.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from simlidar.sensors.camera import project
from simlidar.sensors.files import read_text_file
from simlidar.teachers import DEPTH_SIDECAR_SUFFIXES, find_depth_sidecar

from ..errors import OptionError, PipelineError
from .image_shards import is_shard_source
from .photos import BadImage, LoadedImage, beside, is_image_name, load_image, unique_keys
from .urls import is_url

# Pixels per side of the grid whose rays test whether two cameras' fields of view overlap.
OVERLAP_GRID = 33
_ROTATION_TOLERANCE = 1e-6
CAMERA_KEYS = {"name", "K", "image_size", "T_rig_cam"}
# Keys a calibration may carry for people (what the rig frame is, the LiDAR's record,
# when each camera fired); they are read by no code.
RIG_NOTES = {"rig_frame", "lidar", "note"}
CAMERA_NOTES = {"timestamp"}


def is_calibration(spec: str) -> bool:
    """Whether a --rig value names a real rig's calibration file (else a virtual rig)."""
    return spec.endswith(".json")


@dataclass(frozen=True)
class CalibratedCamera:
    """name: its image folder; K (3, 3) pixels; image size; T_rig_cam (4, 4) camera -> rig."""

    name: str
    K: np.ndarray
    width: int
    height: int
    T_rig_cam: np.ndarray


@dataclass(frozen=True)
class Calibration:
    """A real rig: its cameras in index order, the LiDAR mount T_rig_lidar (4, 4) and,
    per camera, the indices of the cameras whose fields of view overlap its own."""

    name: str
    cameras: tuple[CalibratedCamera, ...]
    T_rig_lidar: np.ndarray
    neighbours: tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class RigFrame:
    """One instant of a real rig: relpath, its FRAME name; key, the sample key stem;
    images, per camera its image file (None where that camera has none)."""

    root: str
    relpath: str
    key: str
    images: tuple[str | None, ...]

    def has_depth_sidecar(self) -> bool:
        """Whether its first camera's image has depth beside it."""
        return find_depth_sidecar(Path(self.root, next(image for image in self.images if image))) is not None

    def files(self) -> dict[str, None]:
        """What this frame is read from: every camera's image and the depth that may lie beside
        it, their state to be looked up (sources/fingerprint.py)."""
        images = [str(Path(self.root, image)) for image in self.images if image]
        return dict.fromkeys(file for image in images for file in (image, *beside(image, DEPTH_SIDECAR_SUFFIXES)))


def _matrix(value, shape: tuple[int, int], where: str) -> np.ndarray:
    try:
        matrix = np.array(value, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        matrix = None
    if matrix is None or matrix.shape != shape or not np.isfinite(matrix).all():
        raise PipelineError(f"{where} must be a {shape[0]}x{shape[1]} list of numbers (rows)")
    return matrix


def _pose(value, where: str) -> np.ndarray:
    T = _matrix(value, (4, 4), where)
    R = T[:3, :3]
    rigid = np.allclose(R.T @ R, np.eye(3), atol=_ROTATION_TOLERANCE) and np.linalg.det(R) > 0
    if not rigid or not np.allclose(T[3], [0, 0, 0, 1]):
        raise PipelineError(f"{where} must be rigid: a rotation (orthonormal, det +1) and a last row 0 0 0 1")
    return T


def _camera(entry, index: int, path: Path) -> CalibratedCamera:
    where = f"{path}: camera {index}"
    if not isinstance(entry, dict) or not CAMERA_KEYS <= set(entry) <= CAMERA_KEYS | CAMERA_NOTES:
        raise PipelineError(f"{where} needs name, K, image_size and T_rig_cam (and may have a timestamp), nothing else")
    name = entry["name"]
    if not isinstance(name, str) or not name or name.startswith(".") or "/" in name or "\\" in name:
        raise PipelineError(f"{where}: name must be the camera's folder name, got {name!r}")
    where = f"{path}: camera {name!r}"
    K = _matrix(entry["K"], (3, 3), f"{where}: K")
    if K[0, 0] <= 0 or K[1, 1] <= 0 or K[0, 1] or K[1, 0] or not np.array_equal(K[2], [0, 0, 1]):
        raise PipelineError(f"{where}: K must be [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] with fx, fy > 0")
    size = entry["image_size"]
    if not (isinstance(size, list) and len(size) == 2 and all(isinstance(side, int) and side >= 8 for side in size)):
        raise PipelineError(f"{where}: image_size must be [width, height] in pixels (integers, at least 8)")
    return CalibratedCamera(name, K, size[0], size[1], _pose(entry["T_rig_cam"], f"{where}: T_rig_cam"))


def load_calibration(spec: str) -> Calibration:
    """Read and check a rig calibration .json (see the module doc); PipelineError (one
    line) on a bad field or a camera that overlaps no other."""
    path = Path(spec)
    text = read_text_file(path, "rig calibration", PipelineError)
    try:
        record = json.loads(text)
    except json.JSONDecodeError as error:
        raise PipelineError(f"rig calibration {path} is not valid JSON: {error}") from None
    except RecursionError:
        raise PipelineError(f"rig calibration {path} is nested deeper than a calibration is") from None
    if not isinstance(record, dict):
        raise PipelineError(f"rig calibration {path} must be a JSON object with cameras and T_rig_lidar")
    unknown = sorted(set(record) - {"name", "cameras", "T_rig_lidar"} - RIG_NOTES)
    if unknown:
        raise PipelineError(
            f"{path}: unknown keys {', '.join(unknown)}; use name, cameras and T_rig_lidar "
            f"(and notes: {', '.join(sorted(RIG_NOTES))})"
        )
    if "T_rig_lidar" not in record:
        raise PipelineError(f"{path}: T_rig_lidar (the LiDAR mount, 4x4, LiDAR -> rig frame) is missing")
    T_rig_lidar = _pose(record["T_rig_lidar"], f"{path}: T_rig_lidar")
    entries = record.get("cameras")
    if not isinstance(entries, list) or len(entries) < 2:
        raise PipelineError(f"{path}: cameras must list at least 2 cameras (name, K, image_size, T_rig_cam)")
    cameras = tuple(_camera(entry, index, path) for index, entry in enumerate(entries))
    names = [camera.name for camera in cameras]
    if len(set(names)) < len(names):
        raise PipelineError(f"{path}: camera names must be unique, got {', '.join(names)}")
    neighbours = overlapping_cameras(cameras)
    for camera, others in zip(cameras, neighbours, strict=True):
        if not others:
            raise PipelineError(
                f"{path}: camera {camera.name!r} overlaps no other camera's field of view; "
                "check its T_rig_cam, or leave it out of the rig"
            )
    name = record.get("name", path.parent.name or path.stem)
    return Calibration(str(name), cameras, T_rig_lidar, neighbours)


def _R_a_b(a: CalibratedCamera, b: CalibratedCamera) -> np.ndarray:
    """(3, 3) the rotation taking directions in camera b's frame into camera a's."""
    return a.T_rig_cam[:3, :3].T @ b.T_rig_cam[:3, :3]


def _sees(camera: CalibratedCamera, other: CalibratedCamera) -> bool:
    """Whether a ray through some pixel of `camera` (a grid of them) lands in `other`'s
    image, treating both as looking from one point (far field: translations ignored)."""
    u = np.linspace(-0.5, camera.width - 0.5, OVERLAP_GRID)
    v = np.linspace(-0.5, camera.height - 0.5, OVERLAP_GRID)
    x_over_z = ((u - camera.K[0, 2]) / camera.K[0, 0])[None, :]
    y_over_z = ((v - camera.K[1, 2]) / camera.K[1, 1])[:, None]
    rays_cam = np.stack(np.broadcast_arrays(x_over_z, y_over_z, 1.0), axis=-1).reshape(-1, 3)
    R_other_cam = _R_a_b(other, camera)
    rays_other = rays_cam @ R_other_cam.T
    u_other, v_other, ahead = project(rays_other, other.K)
    inside = (u_other > -0.5) & (u_other < other.width - 0.5) & (v_other > -0.5) & (v_other < other.height - 0.5)
    return bool((ahead & inside).any())


def overlapping_cameras(cameras: tuple[CalibratedCamera, ...]) -> tuple[tuple[int, ...], ...]:
    """Per camera, the indices of the others whose fields of view share a direction with its own."""
    return tuple(
        tuple(
            other
            for other in range(len(cameras))
            if other != index and (_sees(cameras[index], cameras[other]) or _sees(cameras[other], cameras[index]))
        )
        for index in range(len(cameras))
    )


def rig_record(calibration: Calibration, index: int, T_rig_lidar: np.ndarray) -> dict:
    """The json's "rig" entry of camera `index` (the LiDAR at T_rig_lidar (4, 4), the
    calibration's or a jittered one)."""
    camera = calibration.cameras[index]
    neighbours = calibration.neighbours[index]
    return {
        "name": calibration.name,
        "camera": camera.name,
        "view": index,
        "views": len(calibration.cameras),
        "T_rig_cam": camera.T_rig_cam.tolist(),
        "T_rig_lidar": T_rig_lidar.tolist(),
        "neighbours": list(neighbours),
        # Directions of each neighbour's frame in this camera's, in the order of neighbours.
        "R_cam_neighbours": [_R_a_b(camera, calibration.cameras[other]).tolist() for other in neighbours],
    }


def rig_folder(root: str | Path) -> Path:
    """`root` as the local folder of a calibrated rig; PipelineError when it is a URL, shards or no folder."""
    if is_url(str(root)) or is_shard_source(str(root)):
        raise OptionError(f"{root}: a calibrated rig's images must be a local folder (ROOT/CAMERA/FRAME.jpg)")
    if not Path(root).is_dir():
        raise PipelineError(f"{root} must be the rig's folder (ROOT/CAMERA/FRAME.jpg) for a calibration `rig`")
    return Path(root)


def list_frames(root: str | Path, calibration: Calibration) -> list[RigFrame]:
    """The frames under `root` (ROOT/CAMERA/FRAME.ext), a local folder, sorted by FRAME:
    every FRAME name found in any camera's folder, with that camera's image or None;
    PipelineError when there is none."""
    root = rig_folder(root)
    per_camera: list[dict[str, str]] = []
    for camera in calibration.cameras:
        folder = root / camera.name
        if not folder.is_dir():
            raise PipelineError(
                f"{root} has no folder {camera.name}/ for camera {camera.name!r} of the calibration; "
                "lay the images out as ROOT/CAMERA/FRAME.jpg"
            )
        images: dict[str, str] = {}
        for file in sorted(path.name for path in folder.iterdir() if path.is_file() and is_image_name(path.name)):
            frame = Path(file).stem
            if frame in images:
                raise PipelineError(
                    f"{folder} has two images of frame {frame!r} ({images[frame].split('/')[-1]}, {file}); keep one"
                )
            images[frame] = f"{camera.name}/{file}"
        per_camera.append(images)
    frames = sorted(set().union(*per_camera))
    if not frames:
        raise PipelineError(f"{root} holds no frames: put images in ROOT/CAMERA/FRAME.jpg, one folder per camera")
    return [
        RigFrame(str(root), frame, key, tuple(images.get(frame) for images in per_camera))
        for frame, key in zip(frames, unique_keys(frames), strict=True)
    ]


def load_frame(
    frame: RigFrame, calibration: Calibration, jpeg_quality: int, max_pixels: int = 0
) -> list[tuple[Path, LoadedImage]]:
    """Every camera's (path, image) of `frame`; BadImage (recorded, the frame skipped)
    when a camera has no image of it, or one whose size is not the calibration's."""
    loaded = []
    for camera, image_relpath in zip(calibration.cameras, frame.images, strict=True):
        if image_relpath is None:
            raise BadImage(f"camera {camera.name} has no image of this frame (no {camera.name}/{frame.relpath}.jpg)")
        path = Path(frame.root, image_relpath)
        try:
            image = load_image(path, jpeg_quality, max_pixels)
        except BadImage as error:
            raise BadImage(f"{image_relpath}: {error}") from None
        height, width = image.rgb.shape[:2]
        if (width, height) != (camera.width, camera.height):
            raise BadImage(
                f"{image_relpath} is {width}x{height} but the calibration gives camera {camera.name} "
                f"{camera.width}x{camera.height}"
            )
        loaded.append((path, image))
    return loaded

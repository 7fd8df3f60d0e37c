"""Mounts from real calibrations: KITTI's calibration files and 4x4 `T_cam_lidar` files.

A calibration says where the LiDAR is in the frame of the camera whose image is used
(`T_cam_lidar`, 4x4) and, where the file has them, that camera's intrinsics K (3x3).
KITTI's rectified camera i is rectified camera 0 moved by P_i's fourth column: P_i =
K [I | t_i], so a point x_rect0 lands at x_rect0 + t_i in camera i, with t_i = K^-1 P_i[:, 3].

Readers (`read_calibration` picks by content):
- KITTI object `calib.txt`: P0-P3, R0_rect, Tr_velo_to_cam: T_cam_lidar = [I | t_i] R0_rect
  Tr_velo_to_cam into image camera i (2, the left colour camera, by default).
- KITTI raw `calib_velo_to_cam.txt` (R, T): into rectified camera i with R_rect_00 and
  P_rect_0i of the `calib_cam_to_cam.txt` beside it; without that file, into camera 0
  before rectification, as the file states it.
- `.json` / `.toml` with `T_cam_lidar` = 4 rows of 4 numbers (a rigid transform) and,
  optionally, the camera's `K` = 3 rows of 3 numbers (pixels).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tomllib

from .files import read_text_file
from .mount import Mount, mount_from_T_cam_lidar

KITTI_CAMERAS = (0, 1, 2, 3)
# How far a stated rotation may be from orthonormal (rounding in a text file), max |R^T R - I|.
ROTATION_TOLERANCE = 1e-4


class CalibrationError(ValueError):
    """A calibration file that cannot be read or does not hold a rigid T_cam_lidar."""


@dataclass(frozen=True)
class Calibration:
    """T_cam_lidar (4, 4) into the image camera; K (3, 3) of that camera in pixels, None
    where the file has no intrinsics; source: what was read, for the sample's json."""

    T_cam_lidar: np.ndarray
    K: np.ndarray | None
    source: str


def read_calibration(path: str | Path, camera: int = 2) -> Calibration:
    """Read a calibration file (see the module docstring); `camera` picks KITTI's image
    camera (0-3; 2 = left colour). Raises CalibrationError naming the file and field."""
    path = Path(path)
    if camera not in KITTI_CAMERAS:
        raise CalibrationError(f"camera must be one of {KITTI_CAMERAS} (KITTI's cameras), got {camera!r}")
    text = read_text_file(path, "calibration file", CalibrationError)
    if path.suffix in (".json", ".toml"):
        return _matrix_calibration(path, text)
    fields = parse_kitti_fields(text, path)
    if "Tr_velo_to_cam" in fields:
        return kitti_object_calibration(fields, camera, path)
    if "R" in fields and "T" in fields:
        beside = path.with_name("calib_cam_to_cam.txt")
        cam_to_cam = None
        if os.path.lexists(beside):
            cam_to_cam = parse_kitti_fields(read_text_file(beside, "calibration file", CalibrationError), beside)
        return kitti_raw_calibration(fields, cam_to_cam, camera, path)
    raise CalibrationError(
        f"{path}: not a calibration this reader knows: expected a KITTI object calib.txt (Tr_velo_to_cam), "
        "a KITTI calib_velo_to_cam.txt (R, T), or a .json/.toml file with T_cam_lidar"
    )


def mount_from_calibration(path: str | Path, camera: int = 2) -> Mount:
    """The Mount a calibration file states (see read_calibration), named after the file."""
    calibration = read_calibration(path, camera)
    return mount_from_T_cam_lidar(str(path), calibration.source, calibration.T_cam_lidar)


def parse_kitti_fields(text: str, path: Path) -> dict[str, np.ndarray]:
    """'KEY: n n n ...' lines -> {KEY: (n,) float64}; lines whose values are not all
    numbers (KITTI's calib_time) are left out."""
    fields = {}
    for line in text.splitlines():
        key, colon, values = line.partition(":")
        if not colon or not key.strip():
            continue
        try:
            numbers = np.array([float(value) for value in values.split()])
        except ValueError:
            continue
        if not np.isfinite(numbers).all():
            raise CalibrationError(f"{path}: field '{key.strip()}' holds a value that is not finite")
        fields[key.strip()] = numbers
    return fields


def kitti_object_calibration(fields: dict[str, np.ndarray], camera: int, path: Path) -> Calibration:
    """T_cam_lidar into KITTI object image camera `camera` from P0-P3, R0_rect and Tr_velo_to_cam."""
    P = _matrix(fields, f"P{camera}", (3, 4), path)
    K, T_cam_rect0 = rectified_camera(P, path, f"P{camera}")
    T_rect0_cam0 = _homogeneous(_rotation(_matrix(fields, "R0_rect", (3, 3), path), path, "R0_rect"))
    T_cam0_lidar = _rigid(_matrix(fields, "Tr_velo_to_cam", (3, 4), path), path, "Tr_velo_to_cam")
    source = f"KITTI object calibration {path.name}, camera {camera} (P{camera}, R0_rect, Tr_velo_to_cam)"
    return Calibration(T_cam_rect0 @ T_rect0_cam0 @ T_cam0_lidar, K, source)


def kitti_raw_calibration(
    velo_to_cam: dict[str, np.ndarray], cam_to_cam: dict[str, np.ndarray] | None, camera: int, path: Path
) -> Calibration:
    """T_cam_lidar from a KITTI raw calib_velo_to_cam.txt (R, T), into rectified camera
    `camera` when calib_cam_to_cam.txt's fields (R_rect_00, P_rect_0i) are given, else into
    camera 0 before rectification."""
    rotation = _rotation(_matrix(velo_to_cam, "R", (3, 3), path), path, "R")
    translation = _matrix(velo_to_cam, "T", (3,), path)
    T_cam0_lidar = _homogeneous(rotation, translation)
    if cam_to_cam is None:
        return Calibration(T_cam0_lidar, None, f"KITTI raw {path.name}, camera 0 before rectification")
    beside = path.with_name("calib_cam_to_cam.txt")
    T_rect0_cam0 = _homogeneous(_rotation(_matrix(cam_to_cam, "R_rect_00", (3, 3), beside), beside, "R_rect_00"))
    K, T_cam_rect0 = rectified_camera(_matrix(cam_to_cam, f"P_rect_0{camera}", (3, 4), beside), beside, "P_rect")
    source = f"KITTI raw {path.name} with {beside.name}, rectified camera {camera}"
    return Calibration(T_cam_rect0 @ T_rect0_cam0 @ T_cam0_lidar, K, source)


def rectified_camera(P: np.ndarray, path: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """A rectified projection P (3, 4) = K [I | t] -> (K (3, 3), T_cami_rect0 (4, 4) = [I | t])."""
    K = P[:, :3]
    if abs(np.linalg.det(K)) < 1e-9 or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise CalibrationError(f"{path}: field '{name}' is not a projection K [I | t] with positive focal lengths")
    return K.copy(), _homogeneous(np.eye(3), np.linalg.solve(K, P[:, 3]))


def check_T_cam_lidar(T_cam_lidar, where: str) -> np.ndarray:
    """A (4, 4) rigid transform as float64, or CalibrationError naming `where`."""
    matrix = np.asarray(T_cam_lidar, dtype=np.float64) if _is_numeric(T_cam_lidar) else None
    if matrix is None or matrix.shape != (4, 4) or not np.isfinite(matrix).all():
        raise CalibrationError(f"{where}: T_cam_lidar must be 4 rows of 4 finite numbers")
    if not np.allclose(matrix[3], [0.0, 0.0, 0.0, 1.0]):
        raise CalibrationError(f"{where}: T_cam_lidar's last row must be 0 0 0 1, got {matrix[3].tolist()}")
    return _rigid(matrix[:3], Path(where), "T_cam_lidar")


def _is_numeric(value) -> bool:
    try:
        np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        return False
    return True


def _matrix_calibration(path: Path, text: str) -> Calibration:
    try:
        document = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as error:
        raise CalibrationError(f"{path}: not valid {path.suffix[1:].upper()} ({error})") from None
    except RecursionError:
        raise CalibrationError(f"{path}: nested deeper than a calibration is") from None
    if not isinstance(document, dict) or "T_cam_lidar" not in document:
        raise CalibrationError(f"{path}: missing field 'T_cam_lidar' (4 rows of 4 numbers mapping LiDAR into camera)")
    K = None
    if "K" in document:
        K = np.asarray(document["K"], dtype=np.float64) if _is_numeric(document["K"]) else None
        if K is None or K.shape != (3, 3) or not np.isfinite(K).all() or K[0, 0] <= 0 or K[1, 1] <= 0:
            raise CalibrationError(f"{path}: field 'K' must be 3 rows of 3 finite numbers with positive focal lengths")
    return Calibration(check_T_cam_lidar(document["T_cam_lidar"], str(path)), K, f"T_cam_lidar from {path.name}")


def _matrix(fields: dict[str, np.ndarray], name: str, shape: tuple[int, ...], path: Path) -> np.ndarray:
    if name not in fields:
        raise CalibrationError(f"{path}: missing field '{name}'")
    values = fields[name]
    if values.size != int(np.prod(shape)):
        raise CalibrationError(f"{path}: field '{name}' must hold {int(np.prod(shape))} numbers, got {values.size}")
    return values.reshape(shape)


def _rotation(rotation: np.ndarray, path: Path, name: str) -> np.ndarray:
    error = np.abs(rotation.T @ rotation - np.eye(3)).max()
    if error > ROTATION_TOLERANCE or np.linalg.det(rotation) < 0:
        raise CalibrationError(f"{path}: field '{name}' is not a rotation (|R^T R - I| = {error:.2g}, or a mirror)")
    return rotation


def _rigid(matrix_3x4: np.ndarray, path: Path, name: str) -> np.ndarray:
    return _homogeneous(_rotation(matrix_3x4[:, :3], path, name), matrix_3x4[:, 3])


def _homogeneous(rotation: np.ndarray, translation: np.ndarray | None = None) -> np.ndarray:
    transform = np.eye(4)
    transform[:3, :3] = rotation
    if translation is not None:
        transform[:3, 3] = translation
    return transform

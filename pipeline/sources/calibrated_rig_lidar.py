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
from .photos import BadImage, read_input_file

LIDAR_SUFFIXES = (".bin", ".pcd")
LIDAR_COLUMNS = ("auto", "4", "5")
# A point farther than this (m) is a format's no-return marker, not a return.
MAX_POINT_RANGE_M = 1e4
_PCD_KEYS = ("VERSION", "FIELDS", "SIZE", "TYPE", "COUNT", "WIDTH", "HEIGHT", "VIEWPOINT", "POINTS", "DATA")
_PCD_TYPES = {("F", 4): "<f4", ("F", 8): "<f8", ("I", 1): "i1", ("I", 2): "<i2", ("I", 4): "<i4", ("I", 8): "<i8",
              ("U", 1): "u1", ("U", 2): "<u2", ("U", 4): "<u4", ("U", 8): "<u8"}  # fmt: skip


class SweepWidthError(PipelineError):
    """A .bin sweep whose values do not fit the width it is read with (or fit both)."""


@dataclass(frozen=True)
class Sweep:
    """points_lidar (N, 3) float64 metres in the LiDAR frame; columns: how the file was
    read; relpath: the file under ROOT; dropped: points left out as not finite or beyond
    MAX_POINT_RANGE_M (a no-return marker)."""

    points_lidar: np.ndarray
    columns: int
    relpath: str = ""
    dropped: int = 0


def read_bin_sweep(path: Path, columns: str = "auto") -> Sweep:
    """A .bin sweep (module doc) -> Sweep; PipelineError naming the file when it is empty, its
    size fits neither layout, or the layout it is read with gives an intensity column that no
    sensor writes (negative or not finite: the rows are misaligned, the file has the other
    width). auto picks the one width that reads so; one that fits both widths is refused."""
    raw = read_input_file(path)
    if not raw:
        raise PipelineError(f"{path}: an empty sweep (no points)")
    fits = [width for width in (4, 5) if len(raw) % (4 * width) == 0]
    if columns != "auto" and int(columns) not in fits:
        raise PipelineError(f"{path}: {len(raw)} bytes is not a whole number of {columns}-float32 rows")
    if not fits:
        raise PipelineError(f"{path}: {len(raw)} bytes is neither N x 4 nor N x 5 float32 (x, y, z, ...)")
    readings = {width: np.frombuffer(raw, "<f4").reshape(-1, width) for width in fits}
    readable = [width for width, values in readings.items() if _intensities_hold(values[:, 3])]
    if columns != "auto":
        width = int(columns)
        if width not in readable:
            other = 9 - width
            raise SweepWidthError(
                f"{path}: read as N x {width} float32 its intensity column holds negative or non-finite values: "
                f"the rows do not line up (is it N x {other}?)"
            )
    else:
        width = _auto_width(path, readings, readable)
    return _finite_points(readings[width][:, :3].astype(np.float64), width, path)


def _intensities_hold(column: np.ndarray) -> bool:
    """Whether a column read as intensity is one: finite and never negative."""
    return bool(np.all(np.isfinite(column) & (column >= 0)))


def _auto_width(path: Path, readings: dict[int, np.ndarray], readable: list[int]) -> int:
    if len(readable) == 1:
        return readable[0]
    if not readable:
        raise SweepWidthError(
            f"{path}: reads as neither N x 4 nor N x 5 float32 (x, y, z, intensity[, ring or time]): the intensity "
            "column holds negative or non-finite values either way"
        )
    if _looks_like_rings(readings[5][:, 4]):
        return 5
    raise SweepWidthError(f"{path}: reads as N x 4 and as N x 5 float32 alike")


def _looks_like_rings(column: np.ndarray) -> bool:
    return bool(len(column)) and bool(np.all((column == np.round(column)) & (column >= 0) & (column <= 255)))


def _finite_points(points_lidar: np.ndarray, columns: int, path: Path) -> Sweep:
    """The sweep of points_lidar (N, 3) m without those that are not finite or beyond
    MAX_POINT_RANGE_M (formats mark no return so); PipelineError when none is left."""
    with np.errstate(invalid="ignore", over="ignore"):
        kept = np.isfinite(points_lidar).all(axis=1) & (np.linalg.norm(points_lidar, axis=1) <= MAX_POINT_RANGE_M)
    if not kept.any():
        raise PipelineError(
            f"{path}: none of its {len(points_lidar)} points is finite and within {MAX_POINT_RANGE_M:g} m"
        )
    return Sweep(points_lidar[kept], columns, dropped=int((~kept).sum()))


def read_pcd_sweep(path: Path) -> Sweep:
    """A .pcd sweep -> Sweep (x, y, z only). Its header is checked against its data: every
    point it declares must be there, whole (PipelineError naming the file otherwise)."""
    header, body = _pcd_header(read_input_file(path), path)
    fields, sizes, types, counts = (header[name] for name in ("FIELDS", "SIZE", "TYPE", "COUNT"))
    points = int(header["POINTS"][0])
    if header["DATA"][0] == "ascii":
        table = _pcd_ascii(body, points, sum(int(count) for count in counts), path)
        starts = np.cumsum([0, *(int(count) for count in counts)])
        xyz = table[:, [starts[fields.index(axis)] for axis in "xyz"]]
    elif header["DATA"][0] == "binary":
        dtype = np.dtype([(f"f{index}", _pcd_type(size, kind, path), (int(count),)) for index, (size, kind, count)
                          in enumerate(zip(sizes, types, counts, strict=True))])  # fmt: skip
        if len(body) < points * dtype.itemsize:
            raise PipelineError(f"{path}: truncated: {len(body)} bytes of data for {points} points")
        records = np.frombuffer(body[: points * dtype.itemsize], dtype)
        xyz = np.column_stack([records[f"f{fields.index(axis)}"][:, 0] for axis in "xyz"])
    else:
        xyz = _pcd_open3d(path, points)
    return _finite_points(np.asarray(xyz, dtype=np.float64), 3, path)


def _pcd_header(data: bytes, path: Path) -> tuple[dict[str, list[str]], bytes]:
    """A PCD file's header fields (name -> values) and its data; PipelineError when the header
    is not one, or does not say where x, y and z are."""
    header: dict[str, list[str]] = {}
    offset = 0
    while "DATA" not in header and offset < len(data):
        end = data.find(b"\n", offset)
        end = len(data) if end < 0 else end
        line = data[offset:end].decode("ascii", errors="replace").split()
        offset = end + 1
        if line and not line[0].startswith("#"):
            header[line[0].upper()] = line[1:]
    if not {"FIELDS", "SIZE", "TYPE", "DATA"} <= set(header) or not header["DATA"]:
        raise PipelineError(f"{path}: no points could be read (not a PCD file: no FIELDS, SIZE, TYPE and DATA)")
    header.setdefault("COUNT", ["1"] * len(header["FIELDS"]))
    width, height = (header.get(name, ["0"])[0] for name in ("WIDTH", "HEIGHT"))
    if "POINTS" not in header and width.isdigit() and height.isdigit():
        header["POINTS"] = [str(int(width) * int(height))]
    lengths = {len(header[name]) for name in ("FIELDS", "SIZE", "TYPE", "COUNT")}
    points = header.get("POINTS", [""])[:1]
    if len(lengths) != 1 or not {"x", "y", "z"} <= set(header["FIELDS"]) or not (points and points[0].isdigit()):
        raise PipelineError(f"{path}: its header must give x, y, z in FIELDS, one SIZE, TYPE, COUNT each, and POINTS")
    if not all(count.isdigit() for count in header["COUNT"]):
        raise PipelineError(f"{path}: COUNT must be whole numbers, got {' '.join(header['COUNT'])}")
    if header["DATA"][0] not in ("ascii", "binary", "binary_compressed"):
        raise PipelineError(f"{path}: DATA {header['DATA'][0]} is none of ascii, binary, binary_compressed")
    return header, data[offset:]


def _pcd_ascii(body: bytes, points: int, values_per_point: int, path: Path) -> np.ndarray:
    """(points, values_per_point) float64 of an ascii PCD's data, every row whole."""
    rows = [line.split() for line in body.decode("ascii", errors="replace").splitlines() if line.strip()]
    if len(rows) != points:
        raise PipelineError(f"{path}: {len(rows)} data lines, but its header declares {points} points (truncated?)")
    short = next((index for index, row in enumerate(rows) if len(row) != values_per_point), None)
    if short is not None:
        raise PipelineError(
            f"{path}: data line {short + 1} holds {len(rows[short])} values, its header {values_per_point} (truncated?)"
        )
    try:
        return np.array(rows, dtype=np.float64).reshape(points, values_per_point)
    except ValueError:
        raise PipelineError(f"{path}: its data lines hold values that are not numbers") from None


def _pcd_type(size: str, kind: str, path: Path) -> str:
    dtype = _PCD_TYPES.get((kind.upper(), int(size) if size.isdigit() else 0))
    if dtype is None:
        raise PipelineError(f"{path}: field type {kind} of {size} bytes is not a PCD type")
    return dtype


def _pcd_open3d(path: Path, points: int) -> np.ndarray:
    """x, y, z (points, 3) of a binary_compressed PCD, through Open3D; every declared point there."""
    import open3d as o3d

    xyz = np.asarray(o3d.io.read_point_cloud(str(path), format="pcd").points, dtype=np.float64)
    if len(xyz) != points:
        raise PipelineError(f"{path}: {len(xyz)} points could be read, its header declares {points}")
    return xyz


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


def sweep_candidates(folder: Path, frame: RigFrame) -> list[Path]:
    """Where the frame's sweep may be, in the order they are tried."""
    return [folder / f"{frame.relpath}{suffix}" for suffix in LIDAR_SUFFIXES]


def sweep_path(folder: Path, frame: RigFrame) -> Path:
    """The frame's sweep file; BadImage (recorded, the frame skipped) when there is none."""
    for path in sweep_candidates(folder, frame):
        if path.is_file():
            return path
    raise BadImage(f"no LiDAR sweep {folder.name}/{frame.relpath}.bin or .pcd for this frame")


def read_frame_sweep(root: Path, folder: Path, frame: RigFrame, columns: str) -> Sweep:
    """The frame's sweep in the LiDAR `folder` of `root`; BadImage (recorded, the frame
    skipped) when there is none or it cannot be read."""
    path = sweep_path(folder, frame)
    try:
        sweep = read_sweep(path, columns)
    except SweepWidthError as error:
        raise BadImage(f"{error}; say its width with --lidar-columns 4 or 5") from None
    except PipelineError as error:
        raise BadImage(str(error)) from None
    except BadImage as error:
        raise BadImage(f"{path}: {error}") from None
    return replace(sweep, relpath=path.relative_to(root).as_posix())

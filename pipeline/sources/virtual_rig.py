"""Virtual camera rigs cut out of one photo (`simlidar generate --rig NAME|FILE.toml`).

A rig is K cameras that share the photo's optical centre and differ from it by a yaw,
each seeing a share of the photo's horizontal field of view. A pure rotation needs no
depth to resample, so each view's RGB and depth are exact resamplings of the photo;
view pixels that fall outside the photo (the outer corners of turned views) get black
RGB and no depth. One LiDAR scan of the photo serves every view: its points are
re-projected into each view with that view's own z-buffer.

Views are given as fractions of the photo's horizontal field of view (so one rig fits
photos of any intrinsics), measured from the centre of that field of view:

    name = "front3"          # optional, defaults to the file name
    [[views]]
    yaw = -0.25              # centre of the view; negative = left
    fov = 0.5                # horizontal field of view
    [[views]]
    ...

Views are ordered left to right; neighbours (adjacent in that order) must overlap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tomllib
from simlidar.sensors.camera import sparse_depth_image, transform_points
from simlidar.sensors.files import read_text_file
from simlidar.sensors.rig_geometry import horizontal_fov, view_pixels_in_photo, yaw_rotation

from ..errors import PipelineError

# Bilinear interpolation of disparity (exact on planes) only where the four photo pixels
# around a sample agree within this depth ratio; across a depth edge, the nearest pixel
# (no blend of foreground and background).
DEPTH_EDGE_RATIO = 1.05
# Views within this share of the photo's field of view of its edge still count as inside.
_FOV_TOLERANCE = 1e-9


@dataclass(frozen=True)
class RigView:
    """yaw: centre of the view, fov: its horizontal field of view, both as fractions of
    the photo's horizontal field of view (yaw from the centre of it, negative = left)."""

    yaw: float
    fov: float


@dataclass(frozen=True)
class Rig:
    name: str
    views: tuple[RigView, ...]

    def neighbours(self, index: int) -> list[int]:
        return [other for other in (index - 1, index + 1) if 0 <= other < len(self.views)]

    def to_dict(self) -> dict:
        return {"name": self.name, "views": [{"yaw": view.yaw, "fov": view.fov} for view in self.views]}


def _halves(count: int) -> tuple[RigView, ...]:
    """`count` views of 2 / (count + 1) of the photo each, neighbours overlapping by half
    a view, together spanning the whole photo."""
    fov = 2.0 / (count + 1)
    return tuple(RigView(yaw=round(-0.5 + fov / 2 + index * fov / 2, 12), fov=fov) for index in range(count))


PRESETS = {
    "virtual": Rig("virtual", _halves(3)),
    "virtual2": Rig("virtual2", _halves(2)),
    "virtual5": Rig("virtual5", _halves(5)),
}


def check_rig(rig: Rig) -> Rig:
    """The rig with its views sorted left to right, or PipelineError (one line) when a
    view leaves the photo or two neighbours do not overlap."""
    if not rig.views:
        raise PipelineError(f"rig {rig.name!r} has no views: add [[views]] entries with yaw and fov")
    views = tuple(sorted(rig.views, key=lambda view: view.yaw))
    for index, view in enumerate(views):
        if not 0 < view.fov <= 1:
            raise PipelineError(
                f"rig {rig.name!r}: view {index} has fov {view.fov}; it must be in (0, 1] of the photo's"
            )
        if abs(view.yaw) + view.fov / 2 > 0.5 + _FOV_TOLERANCE:
            raise PipelineError(
                f"rig {rig.name!r}: view {index} (yaw {view.yaw}, fov {view.fov}) leaves the photo; "
                "keep |yaw| + fov / 2 <= 0.5"
            )
    for index, (left, right) in enumerate(zip(views, views[1:], strict=False)):
        overlap = (left.fov + right.fov) / 2 - (right.yaw - left.yaw)
        if overlap <= _FOV_TOLERANCE:
            raise PipelineError(
                f"rig {rig.name!r}: views {index} and {index + 1} do not overlap (yaw {left.yaw} and {right.yaw}, "
                f"fov {left.fov} and {right.fov}); move them closer or widen them"
            )
    return Rig(rig.name, views)


def load_rig(spec: str) -> Rig:
    """A preset name (see PRESETS) or a path to a rig .toml file (see the module doc)."""
    if spec in PRESETS:
        return check_rig(PRESETS[spec])
    path = Path(spec)
    if path.suffix != ".toml":
        raise PipelineError(
            f"unknown rig {spec!r}; presets: {', '.join(PRESETS)} (or a rig .toml, or a real rig's calibration .json)"
        )
    text = read_text_file(path, "rig file", PipelineError)
    try:
        record = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise PipelineError(f"rig file {path} is not valid TOML: {error}") from None
    unknown = sorted(set(record) - {"name", "views"})
    if unknown:
        raise PipelineError(f"rig file {path}: unknown keys {', '.join(unknown)}; use name and [[views]]")
    entries = record.get("views", [])
    if not isinstance(entries, list):
        raise PipelineError(f"rig file {path}: views must be [[views]] tables (yaw, fov), got {entries!r}")
    views = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or set(entry) != {"yaw", "fov"}:
            raise PipelineError(f"rig file {path}: view {index} needs exactly yaw and fov (fractions of the photo's)")
        values = [entry["yaw"], entry["fov"]]
        if not all(type(value) in (int, float) and math.isfinite(value) for value in values):
            raise PipelineError(f"rig file {path}: view {index} has a yaw or fov that is not a finite number")
        views.append(RigView(float(entry["yaw"]), float(entry["fov"])))
    name = record.get("name", path.stem)
    if not isinstance(name, str) or not name:
        raise PipelineError(f"rig file {path}: name must be a string, got {name!r}")
    return check_rig(Rig(name, tuple(views)))


@dataclass(frozen=True)
class RigCamera:
    """One view of a rig placed on a photo: K (3, 3) pixels, size, R_photo_view (3, 3),
    its yaw (rad) from the photo's optical axis and its neighbours' indices."""

    index: int
    K: np.ndarray
    width: int
    height: int
    R_photo_view: np.ndarray
    yaw_rad: float
    neighbours: tuple[int, ...]


def rig_cameras(rig: Rig, K_photo: np.ndarray, width: int, height: int) -> list[RigCamera]:
    """The rig's cameras on a (width x height) photo K_photo (3, 3): the photo's focal
    lengths (so a view has the photo's pixel density at its centre), the photo's height
    and principal row, and a width that spans the view's field of view."""
    left, right = horizontal_fov(K_photo, width)
    total = left + right
    middle = (right - left) / 2
    cameras = []
    for index, view in enumerate(rig.views):
        half = view.fov * total / 2
        view_width = max(1, int(round(2 * K_photo[0, 0] * np.tan(half))))
        K = np.array(K_photo, dtype=np.float64)
        K[0, 2] = (view_width - 1) / 2
        yaw = middle + view.yaw * total
        cameras.append(
            RigCamera(index, K, view_width, height, yaw_rotation(yaw), float(yaw), tuple(rig.neighbours(index)))
        )
    return cameras


def _inside(u: np.ndarray, v: np.ndarray, width: int, height: int) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.isfinite(u) & (u >= -0.5) & (u < width - 0.5) & (v >= -0.5) & (v < height - 0.5)


def _corners(u: np.ndarray, v: np.ndarray, width: int, height: int):
    """Top-left integer corner (x0, y0) of the 2 x 2 neighbourhood and the fractions."""
    uc = np.clip(np.nan_to_num(u), 0, width - 1)
    vc = np.clip(np.nan_to_num(v), 0, height - 1)
    x0 = np.minimum(np.floor(uc).astype(np.int64), max(width - 2, 0))
    y0 = np.minimum(np.floor(vc).astype(np.int64), max(height - 2, 0))
    x1, y1 = np.minimum(x0 + 1, width - 1), np.minimum(y0 + 1, height - 1)
    return x0, y0, x1, y1, uc - x0, vc - y0


def resample_rgb(rgb: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 photo sampled bilinearly at (h, w) photo coordinates -> (h, w, 3)
    uint8; black where the coordinates leave the photo."""
    height, width = rgb.shape[:2]
    x0, y0, x1, y1, fx, fy = _corners(u, v, width, height)
    image = rgb.astype(np.float32)
    fx, fy = fx[..., None], fy[..., None]
    top = image[y0, x0] * (1 - fx) + image[y0, x1] * fx
    bottom = image[y1, x0] * (1 - fx) + image[y1, x1] * fx
    out = np.round(top * (1 - fy) + bottom * fy).clip(0, 255).astype(np.uint8)
    out[~_inside(u, v, width, height)] = 0
    return out


def resample_depth(depth_m: np.ndarray, u: np.ndarray, v: np.ndarray, z_ratio: np.ndarray) -> np.ndarray:
    """(H, W) photo depth (camera z, m, 0 = none) -> (h, w) view depth (m, 0 = none) at
    (h, w) photo coordinates; z_ratio: photo z per view z along each view ray (see
    view_pixels_in_photo). Disparity is interpolated bilinearly where the four photo
    pixels have depth and no edge between them (exact on planes), else the nearest
    pixel's depth is taken."""
    height, width = depth_m.shape
    x0, y0, x1, y1, fx, fy = _corners(u, v, width, height)
    corners = np.stack([depth_m[y0, x0], depth_m[y0, x1], depth_m[y1, x0], depth_m[y1, x1]]).astype(np.float64)
    smooth = (corners.min(0) > 0) & (corners.max(0) <= corners.min(0) * DEPTH_EDGE_RATIO)
    with np.errstate(divide="ignore"):
        disparity = np.where(corners > 0, 1.0 / np.where(corners > 0, corners, 1.0), 0.0)
    blended = (disparity[0] * (1 - fx) + disparity[1] * fx) * (1 - fy) + (
        disparity[2] * (1 - fx) + disparity[3] * fx
    ) * fy
    nearest_x = np.clip(np.floor(np.nan_to_num(u) + 0.5), 0, width - 1).astype(np.int64)
    nearest_y = np.clip(np.floor(np.nan_to_num(v) + 0.5), 0, height - 1).astype(np.int64)
    photo_z = np.where(smooth, 1.0 / np.where(smooth, blended, 1.0), depth_m[nearest_y, nearest_x])
    inside = _inside(u, v, width, height)
    view_z = np.where(inside & (photo_z > 0), photo_z / np.where(inside, z_ratio, 1.0), 0.0)
    return view_z.astype(np.float32)


@dataclass
class RigImage:
    """One view's maps: rgb (h, w, 3) uint8, dense and sparse (h, w) float32 m (0 = none),
    the number of view pixels outside the photo."""

    rgb: np.ndarray
    dense_m: np.ndarray
    sparse_m: np.ndarray
    outside_pixels: int


def render_view(
    camera: RigCamera, K_photo: np.ndarray, rgb: np.ndarray, dense_m: np.ndarray, points_cam: np.ndarray
) -> RigImage:
    """A view of the photo (rgb (H, W, 3), dense (H, W) m, K_photo) and of the LiDAR
    points (N, 3) in the photo's camera frame (m), z-buffered in the view."""
    u, v, z_ratio = view_pixels_in_photo(camera.K, camera.width, camera.height, camera.R_photo_view, K_photo)
    height, width = dense_m.shape
    T_view_photo = np.eye(4)
    T_view_photo[:3, :3] = camera.R_photo_view.T
    points_view = transform_points(T_view_photo, points_cam)
    sparse_m, _ = sparse_depth_image(points_view, camera.K, camera.width, camera.height)
    return RigImage(
        rgb=resample_rgb(rgb, u, v),
        dense_m=resample_depth(dense_m, u, v, z_ratio),
        sparse_m=sparse_m,
        outside_pixels=int((~_inside(u, v, width, height)).sum()),
    )

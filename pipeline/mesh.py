"""A triangle mesh from a depth map: one vertex per pixel, two triangles per pixel quad.

Triangles that straddle a depth discontinuity are dropped, so no "rubber sheet"
joins a foreground object to the background. Behind each occluding edge the
background is extended for a few pixels as a hidden layer: the camera cannot see
it, but a LiDAR mounted elsewhere can, which gives the see-through points that
real KITTI scans have behind object edges.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from simlidar.sensors.camera import backproject_depth


@dataclass(frozen=True)
class MeshOptions:
    """How a depth map becomes a mesh.

    max_depth_jump: drop a triangle whose (max - min) / min vertex depth exceeds this.
    max_grazing_deg: drop a triangle seen at more than this angle from its normal.
    occlusion_fill_px: how far (pixels) the background extends behind occluding edges;
        0 disables the hidden layer.
    """

    max_depth_jump: float = 0.1
    max_grazing_deg: float = 89.0
    occlusion_fill_px: int = 16


@dataclass
class Mesh:
    """vertices_cam: (V, 3) float32 metres, camera frame; triangles: (T, 3) int32."""

    vertices_cam: np.ndarray
    triangles: np.ndarray
    visible_triangles: int
    hidden_triangles: int


def depth_to_mesh(depth_m: np.ndarray, K: np.ndarray, options: MeshOptions = MeshOptions()) -> Mesh:
    """Mesh an (H, W) camera-z depth map (metres; 0, NaN or inf = no value) with intrinsics K (3, 3).

    Vertex v * W + u is pixel (u, v) back-projected; quad (u, v) is split into the
    triangles (tl, bl, tr) and (tr, bl, br). Returns a mesh in the camera frame;
    an all-invalid depth map gives an empty mesh.
    """
    height, width = depth_m.shape
    valid = np.isfinite(depth_m) & (depth_m > 0)
    depth_visible = np.where(valid, depth_m, 0.0).astype(np.float32)
    points_visible = backproject_depth(depth_visible, K).astype(np.float32)
    keep_visible = _continuous_triangles(points_visible, valid, options)

    depth_hidden, hidden = _background_behind_edges(depth_visible, valid, options)
    keep_hidden = keep_visible & _quad_corners_all(hidden)
    if keep_hidden.any():
        points_hidden = backproject_depth(depth_hidden, K).astype(np.float32)
        # Few quads have a hidden layer: test only those instead of the whole grid.
        which, rows, cols = np.nonzero(keep_hidden)
        apex = np.where((which == 0)[:, None], points_hidden[rows, cols], points_hidden[rows + 1, cols + 1])
        keep_hidden[which, rows, cols] = _continuous(
            apex, points_hidden[rows, cols + 1], points_hidden[rows + 1, cols], options
        )
        vertices = np.concatenate([points_visible.reshape(-1, 3), points_hidden.reshape(-1, 3)])
    else:
        vertices = points_visible.reshape(-1, 3)

    visible_triangles = _kept_triangles(keep_visible, width)
    hidden_triangles = _kept_triangles(keep_hidden, width) + height * width
    return Mesh(
        vertices_cam=vertices,
        triangles=np.concatenate([visible_triangles, hidden_triangles]),
        visible_triangles=len(visible_triangles),
        hidden_triangles=len(hidden_triangles),
    )


def _corners(grid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Views of the top-left, top-right, bottom-left and bottom-right corner of every quad."""
    return grid[:-1, :-1], grid[:-1, 1:], grid[1:, :-1], grid[1:, 1:]


def _quad_corners_all(mask: np.ndarray) -> np.ndarray:
    """(2, H - 1, W - 1) bool: all three corners of each triangle set in `mask` (H, W)."""
    top_left, top_right, bottom_left, bottom_right = _corners(mask)
    shared = top_right & bottom_left
    return np.stack([shared & top_left, shared & bottom_right])


def _continuous_triangles(points_cam: np.ndarray, valid: np.ndarray, options: MeshOptions) -> np.ndarray:
    """(2, H - 1, W - 1) bool: triangles whose corners are valid and that cross no
    discontinuity. points_cam: (H, W, 3) back-projected pixels (m); valid: (H, W)."""
    keep = _quad_corners_all(valid)
    top_left, top_right, bottom_left, bottom_right = _corners(points_cam)
    for index, apex in enumerate((top_left, bottom_right)):
        keep[index] &= _continuous(apex, top_right, bottom_left, options)
    return keep


def _continuous(apex: np.ndarray, corner_a: np.ndarray, corner_b: np.ndarray, options: MeshOptions) -> np.ndarray:
    """(...) bool for triangles given by their corners (..., 3) in metres: the depth
    range stays within max_depth_jump of the nearest corner and the surface is seen
    within max_grazing_deg of its normal."""
    z_apex, z_a, z_b = apex[..., 2], corner_a[..., 2], corner_b[..., 2]
    nearest = np.minimum(np.minimum(z_apex, z_a), z_b)
    farthest = np.maximum(np.maximum(z_apex, z_a), z_b)
    ok = (farthest - nearest) <= np.float32(options.max_depth_jump) * nearest
    ax, ay, az = (corner_a[..., i] - apex[..., i] for i in range(3))
    bx, by, bz = (corner_b[..., i] - apex[..., i] for i in range(3))
    nx, ny, nz = ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx
    vx, vy, vz = (apex[..., i] + corner_a[..., i] + corner_b[..., i] for i in range(3))
    dot = nx * vx + ny * vy + nz * vz
    cos_limit = np.float32(np.cos(np.deg2rad(options.max_grazing_deg)))
    ok &= dot * dot >= cos_limit * cos_limit * (nx * nx + ny * ny + nz * nz) * (vx * vx + vy * vy + vz * vz)
    return ok


def _kept_triangles(keep: np.ndarray, width: int) -> np.ndarray:
    """(T, 3) int32 vertex indices of the triangles set in keep (2, H - 1, W - 1)."""
    first_rows, first_cols = np.nonzero(keep[0])
    second_rows, second_cols = np.nonzero(keep[1])
    first_top_left = first_rows * width + first_cols
    second_top_left = second_rows * width + second_cols
    first = np.stack([first_top_left, first_top_left + width, first_top_left + 1], axis=1)
    second = np.stack([second_top_left + 1, second_top_left + width, second_top_left + width + 1], axis=1)
    return np.concatenate([first, second]).astype(np.int32)


def _background_behind_edges(
    depth_visible: np.ndarray, valid: np.ndarray, options: MeshOptions
) -> tuple[np.ndarray, np.ndarray]:
    """The hidden background layer: for foreground pixels within `occlusion_fill_px`
    of a markedly deeper neighbour, that neighbour's depth (constant extension).

    Returns (H, W) depth of the layer and the (H, W) bool mask of pixels that have one.
    """
    if options.occlusion_fill_px <= 0:
        return depth_visible, np.zeros_like(valid)
    deepest_nearby = _max_filter(depth_visible, options.occlusion_fill_px)
    hidden = valid & (deepest_nearby > depth_visible * (1.0 + options.max_depth_jump))
    return np.where(hidden, deepest_nearby, depth_visible), hidden


def _max_filter(image: np.ndarray, radius: int) -> np.ndarray:
    """Maximum over a (2r + 1) x (2r + 1) window, computed separably."""
    result = image.copy()
    for axis in (0, 1):
        source = result.copy()
        length = image.shape[axis]
        for shift in range(1, min(radius, length - 1) + 1):
            ahead = [slice(None)] * 2
            behind = [slice(None)] * 2
            ahead[axis], behind[axis] = slice(shift, None), slice(None, -shift)
            np.maximum(result[tuple(ahead)], source[tuple(behind)], out=result[tuple(ahead)])
            np.maximum(result[tuple(behind)], source[tuple(ahead)], out=result[tuple(behind)])
    return result

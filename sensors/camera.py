"""Pinhole camera geometry (OpenCV frame: x right, y down, z forward).

Pixel (u, v) has its centre at integer coordinates and covers [u - 0.5, u + 0.5);
a point lands on pixel (floor(u + 0.5), floor(v + 0.5)). K is the (3, 3)
intrinsic matrix in pixels.
"""

from __future__ import annotations

import numpy as np

# Points nearer the image plane than this (m) count as behind the camera.
MIN_Z_M = 1e-6


def _check_shape(array: np.ndarray, shape: tuple[int | None, ...], name: str) -> None:
    """ValueError naming `name` unless `array` has `shape` (None: any size there)."""
    ok = array.ndim == len(shape) and all(
        want is None or got == want for got, want in zip(array.shape, shape, strict=True)
    )
    if not ok:
        wanted = ", ".join("N" if want is None else str(want) for want in shape)
        raise ValueError(f"{name} must have shape ({wanted}), got {tuple(array.shape)}")


def transform_points(T_b_a: np.ndarray, points_a: np.ndarray) -> np.ndarray:
    """Points in frame a -> frame b with the rigid transform T_b_a.

    Args:
        T_b_a: (4, 4) maps frame a into frame b.
        points_a: (N, 3) points (or directions, with T_b_a's translation zero) in frame a.

    Returns:
        (N, 3) the points in frame b, in the dtype numpy gives points_a @ float64.
    """
    _check_shape(T_b_a, (4, 4), "T_b_a")
    _check_shape(points_a, (None, 3), "points_a")
    return points_a @ T_b_a[:3, :3].T + T_b_a[:3, 3]


def transform_directions(T_b_a: np.ndarray, directions_a: np.ndarray) -> np.ndarray:
    """(N, 3) directions in frame a -> (N, 3) in frame b: T_b_a's (4, 4) rotation only."""
    _check_shape(T_b_a, (4, 4), "T_b_a")
    _check_shape(directions_a, (None, 3), "directions_a")
    return directions_a @ T_b_a[:3, :3].T


def invert_pose(T_b_a: np.ndarray) -> np.ndarray:
    """(4, 4) T_a_b, the inverse of the rigid transform T_b_a (4, 4)."""
    _check_shape(T_b_a, (4, 4), "T_b_a")
    T_a_b = np.eye(4)
    T_a_b[:3, :3] = T_b_a[:3, :3].T
    T_a_b[:3, 3] = -T_b_a[:3, :3].T @ T_b_a[:3, 3]
    return T_a_b


def project(points_cam: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pinhole projection of camera-frame points.

    Args:
        points_cam: (N, 3) points in the camera frame (m).
        K: (3, 3) intrinsics in pixels.

    Returns:
        u, v: (N,) float pixel coordinates (meaningless where not in_front).
        in_front: (N,) bool, z > MIN_Z_M.
    """
    _check_shape(points_cam, (None, 3), "points_cam")
    _check_shape(K, (3, 3), "K")
    z = points_cam[:, 2]
    in_front = z > MIN_Z_M
    safe_z = np.where(in_front, z, 1.0)
    return K[0, 0] * points_cam[:, 0] / safe_z + K[0, 2], K[1, 1] * points_cam[:, 1] / safe_z + K[1, 2], in_front


def pixels_in_image(
    points_cam: np.ndarray, K: np.ndarray, width: int, height: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pixel each camera-frame point (N, 3, m) lands on: column and row (N,) float
    (whole numbers), and which points land in the (width x height) image in front."""
    u, v, in_front = project(points_cam, K)
    column, row = np.floor(u + 0.5), np.floor(v + 0.5)
    return column, row, in_front & (column >= 0) & (column < width) & (row >= 0) & (row < height)


def backproject(depth_m: np.ndarray, K: np.ndarray) -> np.ndarray:
    """(H, W) camera-z depth in metres -> (H, W, 3) points in the camera frame (m)."""
    _check_shape(depth_m, (None, None), "depth_m")
    _check_shape(K, (3, 3), "K")
    height, width = depth_m.shape
    u = np.arange(width, dtype=np.float64)
    v = np.arange(height, dtype=np.float64)
    x_over_z = (u - K[0, 2]) / K[0, 0]
    y_over_z = (v - K[1, 2]) / K[1, 1]
    z = depth_m.astype(np.float64)
    return np.stack([z * x_over_z[None, :], z * y_over_z[:, None], z], axis=-1)


def pixel_ray_directions(K: np.ndarray, width: int, height: int) -> np.ndarray:
    """(H * W, 3) unit ray directions through pixel centres, row-major, camera frame."""
    on_plane = backproject(np.ones((height, width)), K).reshape(-1, 3)
    return on_plane / np.linalg.norm(on_plane, axis=1, keepdims=True)


def rays_reaching_frustum(
    origin_cam: np.ndarray,
    directions_cam: np.ndarray,
    K: np.ndarray,
    width: int,
    height: int,
    min_range_m: float,
    max_range_m: float,
) -> np.ndarray:
    """Which ray segments [min_range, max_range] pass through the camera frustum.

    The frustum is the cone of the image's pixel area in front of the camera;
    a ray that misses it cannot produce a point in the image, so it need not be
    cast. Exact for the segment (clipped against the four side planes and z > 0).

    Args:
        origin_cam: (3,) origin of every ray, or (N, 3) one per ray, in the camera frame (m).
        directions_cam: (N, 3) unit ray directions in the camera frame.

    Returns:
        (N,) bool.
    """
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    u_min, u_max, v_min, v_max = -0.5, width - 0.5, -0.5, height - 0.5
    # Inward normals of the half-spaces through the optical centre: n . p >= 0 inside.
    normals = np.array(
        [
            [fx, 0.0, cx - u_min],
            [-fx, 0.0, u_max - cx],
            [0.0, fy, cy - v_min],
            [0.0, -fy, v_max - cy],
            [0.0, 0.0, 1.0],
        ]
    )
    offset = np.atleast_2d(origin_cam) @ normals.T
    rate = directions_cam @ normals.T
    t_low = np.full(len(directions_cam), float(min_range_m))
    t_high = np.full(len(directions_cam), float(max_range_m))
    with np.errstate(divide="ignore", invalid="ignore"):
        crossing = -offset / rate
    entering = rate > 0
    leaving = rate < 0
    t_low = np.maximum(t_low, np.where(entering, crossing, -np.inf).max(axis=1))
    t_high = np.minimum(t_high, np.where(leaving, crossing, np.inf).min(axis=1))
    parallel_outside = ((rate == 0) & (offset < 0)).any(axis=1)
    return (t_low < t_high) & ~parallel_outside


def sparse_depth_image(points_cam: np.ndarray, K: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Project points into the image, keeping the nearest per pixel (z-buffer).

    Only LiDAR points compete in the z-buffer: a point the LiDAR sees but the
    camera cannot (parallax behind an object edge) stays in, as in real scans.

    Args:
        points_cam: (N, 3) points in the camera frame (m).

    Returns:
        depth: (H, W) float32 camera z in metres, 0 where no point landed.
        in_image: (N,) bool, the points that fall inside the image in front of the camera.
    """
    u, v, in_image = pixels_in_image(points_cam, K, width, height)
    pixel = (v[in_image] * width + u[in_image]).astype(np.int64)
    depth_in_image = points_cam[:, 2][in_image]
    order = np.lexsort((depth_in_image, pixel))
    first_of_pixel = np.ones(len(order), dtype=bool)
    first_of_pixel[1:] = pixel[order][1:] != pixel[order][:-1]
    nearest = order[first_of_pixel]
    depth = np.zeros(height * width, dtype=np.float32)
    depth[pixel[nearest]] = depth_in_image[nearest]
    return depth.reshape(height, width), in_image

"""Pinhole camera geometry (OpenCV frame: x right, y down, z forward).

Pixel (u, v) has its centre at integer coordinates and covers [u - 0.5, u + 0.5);
a point lands on pixel (floor(u + 0.5), floor(v + 0.5)). K is the (3, 3)
intrinsic matrix in pixels.
"""

from __future__ import annotations

import numpy as np


def backproject_depth(depth_m: np.ndarray, K: np.ndarray) -> np.ndarray:
    """(H, W) camera-z depth in metres -> (H, W, 3) points in the camera frame (m)."""
    height, width = depth_m.shape
    u = np.arange(width, dtype=np.float64)
    v = np.arange(height, dtype=np.float64)
    x_over_z = (u - K[0, 2]) / K[0, 0]
    y_over_z = (v - K[1, 2]) / K[1, 1]
    z = depth_m.astype(np.float64)
    return np.stack([z * x_over_z[None, :], z * y_over_z[:, None], z], axis=-1)


def pixel_ray_directions(K: np.ndarray, width: int, height: int) -> np.ndarray:
    """(H * W, 3) unit ray directions through pixel centres, row-major, camera frame."""
    on_plane = backproject_depth(np.ones((height, width)), K).reshape(-1, 3)
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
    z = points_cam[:, 2]
    in_front = z > 1e-6
    safe_z = np.where(in_front, z, 1.0)
    u = np.floor(K[0, 0] * points_cam[:, 0] / safe_z + K[0, 2] + 0.5)
    v = np.floor(K[1, 1] * points_cam[:, 1] / safe_z + K[1, 2] + 0.5)
    in_image = in_front & (u >= 0) & (u < width) & (v >= 0) & (v < height)
    pixel = (v[in_image] * width + u[in_image]).astype(np.int64)
    depth_in_image = z[in_image]
    order = np.lexsort((depth_in_image, pixel))
    first_of_pixel = np.ones(len(order), dtype=bool)
    first_of_pixel[1:] = pixel[order][1:] != pixel[order][:-1]
    nearest = order[first_of_pixel]
    depth = np.zeros(height * width, dtype=np.float32)
    depth[pixel[nearest]] = depth_in_image[nearest]
    return depth.reshape(height, width), in_image

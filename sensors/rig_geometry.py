"""Cameras that share an optical centre and differ by a rotation (a virtual rig cut
out of one photo): the rotation and where each of a view's pixels looks in the photo.

Frames are OpenCV camera frames; R_photo_view (3, 3) maps a direction in the view's
frame into the photo's. Pixel centres are at integer coordinates (as in camera.py).
"""

from __future__ import annotations

import numpy as np


def yaw_rotation(yaw_rad: float) -> np.ndarray:
    """(3, 3) R_photo_view of a camera turned by yaw_rad about the photo's y axis
    (y points down, so a positive yaw turns the view to the right, toward +x)."""
    c, s = np.cos(yaw_rad), np.sin(yaw_rad)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def horizontal_fov(K: np.ndarray, width: int) -> tuple[float, float]:
    """(left, right) angles (rad, both >= 0) from the optical axis to the outer edges
    of the first and last pixel columns."""
    return float(np.arctan((K[0, 2] + 0.5) / K[0, 0])), float(np.arctan((width - 0.5 - K[0, 2]) / K[0, 0]))


def view_pixels_in_photo(
    K_view: np.ndarray, width: int, height: int, R_photo_view: np.ndarray, K_photo: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where each pixel of a (width x height) view K_view looks in the photo K_photo.

    Returns:
        u_photo, v_photo: (H, W) float photo pixel coordinates (NaN behind the photo camera).
        z_ratio: (H, W) photo z of the view's unit-z ray: a point at view depth z_view
            has photo depth z_view * z_ratio (NaN behind the photo camera).
    """
    u = np.arange(width, dtype=np.float64)
    v = np.arange(height, dtype=np.float64)
    rays_view = np.stack(
        np.broadcast_arrays(
            ((u - K_view[0, 2]) / K_view[0, 0])[None, :], ((v - K_view[1, 2]) / K_view[1, 1])[:, None], 1.0
        ),
        axis=-1,
    )
    rays_photo = rays_view @ R_photo_view.T
    z_ratio = rays_photo[..., 2]
    ahead = z_ratio > 1e-9
    safe = np.where(ahead, z_ratio, 1.0)
    u_photo = np.where(ahead, K_photo[0, 0] * rays_photo[..., 0] / safe + K_photo[0, 2], np.nan)
    v_photo = np.where(ahead, K_photo[1, 1] * rays_photo[..., 1] / safe + K_photo[1, 2], np.nan)
    return u_photo, v_photo, np.where(ahead, z_ratio, np.nan)

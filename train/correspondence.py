"""Corresponding pixels of adjacent views, from the LiDAR points both of them see.

A view's sparse map holds the LiDAR points that landed in it (camera z, metres). Back-
projected with the view's K and moved through the LiDAR frame (its json's
T_cam_lidar) into a neighbour, each point that lands inside the neighbour's image is
one 3D point seen at a known pixel of both views. Occlusion between the two cameras'
viewpoints is not tested: rig cameras sit centimetres to a metre apart, and a point
hidden from one of them is rare against the points they share.

Camera z is not the same for one point in two rotated cameras (20% apart at the edges
of nuScenes' back cameras), so each match also carries, per view, the camera's centre
and the pixel's ray in the LiDAR frame: a depth z along that ray is the point
origin + z * ray, whose distance from the LiDAR is one number for both views.

Training crops (and flips) each view; the crop of a map of pixel indices tells where
every full-size pixel went, so matches follow any crop without knowing how it was drawn.
"""

from __future__ import annotations

import numpy as np

# Matches kept per pair of adjacent views (drawn at random when there are more).
MATCHES_PER_PAIR = 256


def has_geometry(meta: dict) -> bool:
    """Whether a view's json places it (K and T_cam_lidar): views without give no matches."""
    return meta.get("K") is not None and meta.get("T_cam_lidar") is not None


def _pose(meta: dict, name: str) -> np.ndarray:
    return np.asarray(meta[name], dtype=np.float64)


def rays_in_lidar(pixels: np.ndarray, meta: dict) -> np.ndarray:
    """pixels (M, 2) full-size (u, v) of a view with json `meta` (K, T_cam_lidar) ->
    (M, 6) the camera centre and the pixel's ray (z = 1 in the camera) in the LiDAR frame."""
    K = _pose(meta, "K")
    T_lidar_cam = np.linalg.inv(_pose(meta, "T_cam_lidar"))
    rays_cam = np.stack([(pixels[:, 0] - K[0, 2]) / K[0, 0], (pixels[:, 1] - K[1, 2]) / K[1, 1]], 1)
    rays_cam = np.concatenate([rays_cam, np.ones((len(pixels), 1))], 1)
    centre = np.broadcast_to(T_lidar_cam[:3, 3], (len(pixels), 3))
    return np.concatenate([centre, rays_cam @ T_lidar_cam[:3, :3].T], 1)


def corresponding_pixels(sparse_a: np.ndarray, meta_a: dict, meta_b: dict, size_b: tuple[int, int]) -> np.ndarray:
    """sparse_a (H, W) metres (0 = none) of view a; the json of views a and b (K,
    T_cam_lidar); size_b (H_b, W_b) -> (M, 4) int64 pixels (u_a, v_a, u_b, v_b) of the
    points of view a that land inside view b, in front of it (nearest pixel)."""
    v_a, u_a = np.nonzero(sparse_a > 0)
    z = sparse_a[v_a, u_a].astype(np.float64)
    K_a, K_b = _pose(meta_a, "K"), _pose(meta_b, "K")
    points_a = np.stack([(u_a - K_a[0, 2]) / K_a[0, 0] * z, (v_a - K_a[1, 2]) / K_a[1, 1] * z, z], 1)
    T_b_a = _pose(meta_b, "T_cam_lidar") @ np.linalg.inv(_pose(meta_a, "T_cam_lidar"))
    points_b = points_a @ T_b_a[:3, :3].T + T_b_a[:3, 3]
    in_front = points_b[:, 2] > 1e-6
    safe_z = np.where(in_front, points_b[:, 2], 1.0)
    u_b = np.floor(K_b[0, 0] * points_b[:, 0] / safe_z + K_b[0, 2] + 0.5)
    v_b = np.floor(K_b[1, 1] * points_b[:, 1] / safe_z + K_b[1, 2] + 0.5)
    inside = in_front & (u_b >= 0) & (u_b < size_b[1]) & (v_b >= 0) & (v_b < size_b[0])
    return np.stack([u_a, v_a, u_b, v_b], 1)[inside].astype(np.int64)


def match_offsets(sparse: list[np.ndarray], metas: list[dict], neighbours: np.ndarray) -> np.ndarray:
    """One scene's V views (full-size sparse maps (H, W) metres, jsons), neighbours (V, V)
    0/1 -> (M, 2) int64 |u_a - u_b|, |v_a - v_b|: how far apart, in columns and rows, the
    pixels lie at which two adjacent views see one LiDAR point (a crop narrower than
    every such distance holds no match)."""
    offsets = [np.zeros((0, 2), np.int64)]
    for a in range(len(sparse)):
        for b in range(a + 1, len(sparse)):
            if neighbours[a, b] and has_geometry(metas[a]) and has_geometry(metas[b]):
                pairs = corresponding_pixels(sparse[a], metas[a], metas[b], sparse[b].shape)
                offsets.append(np.abs(pairs[:, :2] - pairs[:, 2:]))
    return np.concatenate(offsets)


def pixel_index_map(height: int, width: int) -> np.ndarray:
    """(H, W) int64: 1 + each pixel's row-major index (0 is left for crop padding)."""
    return np.arange(1, height * width + 1, dtype=np.int64).reshape(height, width)


def crop_positions(cropped_index: np.ndarray, full_pixels: int) -> np.ndarray:
    """cropped_index (h, w), a cropped (and maybe flipped) pixel_index_map of an image
    of full_pixels pixels -> (full_pixels,) int64: each full-size pixel's row-major
    position in the crop, -1 where it was cropped away."""
    positions = np.full(full_pixels + 1, -1, dtype=np.int64)
    positions[cropped_index.ravel()] = np.arange(cropped_index.size)
    positions[0] = -1
    return positions[1:]


def _positions_in_crop(pixels: np.ndarray, full_hw: tuple[int, int], cropped_index: np.ndarray) -> np.ndarray:
    """pixels (M, 2) full-size (u, v) -> (M,) their row-major positions in the crop, -1 if cut."""
    return crop_positions(cropped_index, full_hw[0] * full_hw[1])[pixels[:, 1] * full_hw[1] + pixels[:, 0]]


def scene_matches(
    sparse: list[np.ndarray],
    metas: list[dict],
    cropped_indices: list[np.ndarray],
    neighbours: np.ndarray,
    rng: np.random.Generator,
    count: int = MATCHES_PER_PAIR,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One scene's V views: full-size sparse maps, jsons and cropped pixel_index_maps;
    neighbours (V, V) 0/1 -> (matches (V, V, count, 4) float32 crop pixels (u_a, v_a,
    u_b, v_b) of pairs a < b; rays (V, V, count, 2, 6) float32 per side rays_in_lidar;
    valid (V, V, count) float32 0/1)."""
    views = len(sparse)
    matches = np.zeros((views, views, count, 4), np.float32)
    rays = np.zeros((views, views, count, 2, 6), np.float32)
    valid = np.zeros((views, views, count), np.float32)
    for a in range(views):
        for b in range(a + 1, views):
            if not (neighbours[a, b] and has_geometry(metas[a]) and has_geometry(metas[b])):
                continue
            pairs = corresponding_pixels(sparse[a], metas[a], metas[b], sparse[b].shape)
            in_a = _positions_in_crop(pairs[:, :2], sparse[a].shape, cropped_indices[a])
            in_b = _positions_in_crop(pairs[:, 2:], sparse[b].shape, cropped_indices[b])
            kept = np.nonzero((in_a >= 0) & (in_b >= 0))[0]
            if len(kept) > count:
                kept = np.sort(rng.choice(kept, count, replace=False))
            width_a, width_b = cropped_indices[a].shape[1], cropped_indices[b].shape[1]
            matches[a, b, : len(kept)] = np.stack(
                [in_a[kept] % width_a, in_a[kept] // width_a, in_b[kept] % width_b, in_b[kept] // width_b], 1
            )
            rays[a, b, : len(kept), 0] = rays_in_lidar(pairs[kept, :2], metas[a])
            rays[a, b, : len(kept), 1] = rays_in_lidar(pairs[kept, 2:], metas[b])
            valid[a, b, : len(kept)] = 1
    return matches, rays, valid

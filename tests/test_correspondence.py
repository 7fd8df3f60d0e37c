"""Corresponding pixels of adjacent views from the LiDAR points both see, through crops."""

import numpy as np
import torch
from simlidar.train.correspondence import (
    corresponding_pixels,
    crop_positions,
    pixel_index_map,
    rays_in_lidar,
    scene_matches,
)
from simlidar.train.data import crop_and_flip
from simlidar.train.distill import distance_from_lidar

K = np.array([[50.0, 0, 31.5], [0, 50.0, 23.5], [0, 0, 1]])


def yaw_pose(yaw_rad, x_m=0.0):
    """T_cam_lidar of a camera turned by yaw about the LiDAR's z, x_m to its right."""
    c, s = np.cos(yaw_rad), np.sin(yaw_rad)
    # LiDAR x forward, y left, z up -> camera x right, y down, z forward, then the yaw.
    R_cam_lidar = np.array([[0.0, -1, 0], [0, 0, -1], [1, 0, 0]])
    R_yaw = np.array([[c, 0, -s], [0, 1, 0], [s, 0, c]])
    T = np.eye(4)
    T[:3, :3] = R_yaw @ R_cam_lidar
    T[:3, 3] = [-x_m, 0, 0]
    return T


def project(points_lidar, T_cam_lidar):
    points = points_lidar @ T_cam_lidar[:3, :3].T + T_cam_lidar[:3, 3]
    u = np.floor(K[0, 0] * points[:, 0] / points[:, 2] + K[0, 2] + 0.5).astype(int)
    v = np.floor(K[1, 1] * points[:, 1] / points[:, 2] + K[1, 2] + 0.5).astype(int)
    return u, v, points[:, 2]


def two_views():
    """Two 48 x 64 cameras 20 degrees apart, 0.5 m apart, and points 20 m ahead of both."""
    rng = np.random.default_rng(0)
    yaw = np.deg2rad(rng.uniform(-10, 30, 300))
    pitch = np.deg2rad(rng.uniform(-15, 15, 300))
    points = 20 * np.stack([np.cos(yaw) * np.cos(pitch), np.sin(-yaw) * np.cos(pitch), np.sin(pitch)], 1)
    metas = [{"K": K.tolist(), "T_cam_lidar": yaw_pose(y, x).tolist()} for y, x in ((0.0, 0.0), (np.deg2rad(20), 0.5))]
    sparse = []
    for meta in metas:
        u, v, z = project(points, np.array(meta["T_cam_lidar"]))
        depth = np.zeros((48, 64), np.float32)
        inside = (u >= 0) & (u < 64) & (v >= 0) & (v < 48) & (z > 0)
        depth[v[inside], u[inside]] = z[inside]
        sparse.append(depth)
    return points, metas, sparse


def test_each_match_is_one_lidar_point_seen_at_its_pixel_in_both_views():
    points, metas, sparse = two_views()
    u_a, v_a, z_a = project(points, np.array(metas[0]["T_cam_lidar"]))
    u_b, v_b, _ = project(points, np.array(metas[1]["T_cam_lidar"]))
    # Per pixel of view a, where its nearest point (the one in the sparse map) is in view b.
    in_b = {}
    for index in np.argsort(-z_a):
        if 0 <= u_a[index] < 64 and 0 <= v_a[index] < 48:
            in_b[u_a[index], v_a[index]] = (u_b[index], v_b[index])
    shared = [pixel for pixel, (u, v) in in_b.items() if 0 <= u < 64 and 0 <= v < 48]
    matches = corresponding_pixels(sparse[0], metas[0], metas[1], (48, 64))
    assert len(shared) >= 40 and abs(len(matches) - len(shared)) <= 0.05 * len(shared)
    for a_u, a_v, b_u, b_v in matches:
        # The sparse map keeps the pixel, not the exact projection: within a pixel in b.
        expected_u, expected_v = in_b[a_u, a_v]
        assert abs(b_u - expected_u) <= 1 and abs(b_v - expected_v) <= 1


def test_crop_positions_follow_a_flipped_crop():
    index = pixel_index_map(6, 10)
    cropped = None
    for seed in range(20):
        cropped = crop_and_flip({"pixel_index": index}, (4, 5), np.random.default_rng(seed))["pixel_index"]
        if cropped[0, 0] > cropped[0, 1]:
            break
    positions = crop_positions(cropped, 60)
    top, left_flipped = divmod(int(cropped[0, 0]) - 1, 10)
    for v in range(6):
        for u in range(10):
            row, column = v - top, left_flipped - u
            expected = row * 5 + column if 0 <= row < 4 and 0 <= column < 5 else -1
            assert positions[v * 10 + u] == expected


def test_scene_matches_land_on_the_same_point_in_the_crops():
    points, metas, sparse = two_views()
    rng = np.random.default_rng(3)
    crops = [
        crop_and_flip({"sparse": depth, "pixel_index": pixel_index_map(48, 64)}, (40, 48), np.random.default_rng(7))
        for depth in sparse
    ]
    neighbours = np.array([[0, 1], [1, 0]])
    cropped_indices = [crop["pixel_index"] for crop in crops]
    matches, rays, valid = scene_matches(sparse, metas, cropped_indices, neighbours, rng, count=16)
    assert (
        matches.shape == (2, 2, 16, 4) and valid[0, 1].sum() == 16 and valid[1, 0].sum() == 0 and valid[0, 0].sum() == 0
    )
    for u_a, v_a, u_b, v_b in matches[0, 1].astype(int):
        depth_a = crops[0]["sparse"][v_a, u_a]
        assert depth_a > 0  # view a's match is one of its LiDAR pixels
        assert crops[1]["pixel_index"][v_b, u_b] > 0
    none, _, none_valid = scene_matches(sparse, metas, cropped_indices, neighbours * 0, rng)
    assert none_valid.sum() == 0 and not none.any()
    unplaced = [metas[0], {"K": metas[1]["K"]}]  # a view whose json has no T_cam_lidar
    assert scene_matches(sparse, unplaced, cropped_indices, neighbours, rng)[2].sum() == 0


def test_the_distance_from_the_lidar_is_one_number_for_a_point_seen_by_two_rotated_cameras():
    points, metas, sparse = two_views()
    pairs = corresponding_pixels(sparse[0], metas[0], metas[1], (48, 64))
    z_a = sparse[0][pairs[:, 1], pairs[:, 0]].astype(np.float64)
    T_b_a = np.array(metas[1]["T_cam_lidar"]) @ np.linalg.inv(np.array(metas[0]["T_cam_lidar"]))
    ray_a = np.stack([(pairs[:, 0] - K[0, 2]) / K[0, 0], (pairs[:, 1] - K[1, 2]) / K[1, 1], np.ones(len(pairs))], 1)
    z_b = ((z_a[:, None] * ray_a) @ T_b_a[:3, :3].T + T_b_a[:3, 3])[:, 2]
    assert np.abs(z_a / z_b - 1).max() > 0.05  # camera z is not shared
    distances = [
        distance_from_lidar(torch.from_numpy(z), torch.from_numpy(rays_in_lidar(pixels, meta)))
        for z, pixels, meta in ((z_a, pairs[:, :2], metas[0]), (z_b, pairs[:, 2:], metas[1]))
    ]
    # Rays pass through pixel centres, up to half a pixel (0.01 rad at f = 50 px) off the
    # point's own: distances within 1% of each other and of the points' 20 m.
    assert torch.allclose(distances[0], distances[1], rtol=1e-2)
    assert torch.allclose(distances[0], torch.full_like(distances[0], 20.0), rtol=1e-2)
    assert torch.allclose(distances[0], torch.from_numpy(z_a * np.linalg.norm(ray_a, axis=1)), rtol=1e-6)

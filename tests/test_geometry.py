"""Scans of scenes whose answer can be computed by hand."""

from dataclasses import replace

import numpy as np
import pytest
from numpy.random import default_rng
from simlidar.pipeline.stages.mesh import MeshOptions, depth_to_mesh
from simlidar.pipeline.stages.scan import simulate_scan
from simlidar.sensors import MOUNTS, ReturnEffects, load_sensor, mount_pose
from simlidar.sensors.camera import backproject, invert_pose, pixels_in_image, project, transform_points
from simlidar.sensors.mount import Mount
from simlidar.sensors.raycast import MeshScene, render_depth

from .helpers import KITTI_K

WIDTH, HEIGHT = 1242, 375
# KITTI's LiDAR position without its small rotation: the hand geometry below needs axes
# aligned with the camera's.
KITTI_TRANSLATION_ONLY = Mount("kitti-translation", "KITTI's offsets, axes aligned", (0.06, -0.08, -0.27))


def scan_of(depth, mount=KITTI_TRANSLATION_ONLY, options=MeshOptions(), seed=0, T_cam_lidar=None):
    """An HDL-64 scan with every return effect off (exact geometry); `seed` sets its azimuth
    phase; `mount` is a Mount or a named mount."""
    mesh = depth_to_mesh(depth, KITTI_K, options)
    if T_cam_lidar is None:
        T_cam_lidar = mount_pose(MOUNTS[mount] if isinstance(mount, str) else mount)
    ideal = replace(load_sensor("hdl64"), effects=ReturnEffects())
    return simulate_scan(
        MeshScene(mesh.vertices_cam, mesh.triangles), KITTI_K, WIDTH, HEIGHT, ideal, T_cam_lidar, default_rng(seed)
    )


def predicted_plane_pixels(T_cam_lidar, plane_z, phase):
    """Where each HDL-64 ray meets the plane z = plane_z, worked out analytically."""
    sensor = load_sensor("hdl64")
    directions_lidar, _ = sensor.ray_directions(phase)
    directions_cam = directions_lidar @ T_cam_lidar[:3, :3].T
    origin = T_cam_lidar[:3, 3]
    forward = directions_cam[:, 2] > 1e-9
    t = (plane_z - origin[2]) / directions_cam[forward, 2]
    points = origin + directions_cam[forward] * t[:, None]
    u = np.floor(KITTI_K[0, 0] * points[:, 0] / plane_z + KITTI_K[0, 2] + 0.5).astype(int)
    v = np.floor(KITTI_K[1, 1] * points[:, 1] / plane_z + KITTI_K[1, 2] + 0.5).astype(int)
    # The mesh spans pixel centres only, so stay one pixel inside the border.
    inside = (u >= 1) & (u < WIDTH - 1) & (v >= 1) & (v < HEIGHT - 1) & (t <= sensor.max_range_m)
    return set(zip(v[inside], u[inside], strict=False))


def test_plane_at_10m_returns_10m_on_the_predicted_rows():
    T_cam_lidar = mount_pose(KITTI_TRANSLATION_ONLY)
    scan = scan_of(np.full((HEIGHT, WIDTH), 10.0, np.float32), T_cam_lidar=T_cam_lidar)
    phase = np.deg2rad(scan.phase["azimuth_phase_deg"])
    sparse = scan.sparse_depth_m
    rows, cols = np.nonzero(sparse[1:-1, 1:-1])
    measured = set(zip(rows + 1, cols + 1, strict=False))
    predicted = predicted_plane_pixels(T_cam_lidar, 10.0, phase)
    assert np.abs(sparse[sparse > 0] - 10.0).max() < 1e-4
    assert {v for v, _ in measured} == {v for v, _ in predicted}
    assert len(measured ^ predicted) <= 0.001 * len(predicted)
    # Straight ahead, the top beam (+2 deg) from 0.08 m above the camera meets the plane
    # 10.27 m ahead at y = -0.08 - 10.27 tan(2 deg), in the column of x = 0.06 m.
    top_row = KITTI_K[1, 2] + KITTI_K[1, 1] * (-0.08 - 10.27 * np.tan(np.deg2rad(2.0))) / 10.0
    ahead_column = KITTI_K[0, 2] + KITTI_K[0, 0] * 0.06 / 10.0
    rows_ahead = [v for v, u in measured if abs(u - ahead_column) <= 3]
    assert min(rows_ahead) == int(np.floor(top_row + 0.5))


def box_in_front_of_wall():
    depth = np.full((HEIGHT, WIDTH), 20.0, np.float32)
    depth[100:300, 400:800] = 5.0
    return depth


def test_offset_lidar_sees_behind_the_box_edge_and_a_centred_one_does_not():
    depth = box_in_front_of_wall()
    offset = scan_of(depth).sparse_depth_m
    centred = scan_of(depth, mount="camera").sparse_depth_m
    see_through_offset = offset > depth + 0.3
    assert see_through_offset.sum() > 20
    assert (centred > depth + 0.3).sum() == 0
    rows, cols = np.nonzero(see_through_offset)
    # The see-through points lie on the box's pixels, near its edges, at the wall's depth.
    assert (rows >= 100).all() and (rows < 300).all() and (cols >= 400).all() and (cols < 800).all()
    edge_distance = np.minimum.reduce([rows - 100, 299 - rows, cols - 400, 799 - cols])
    assert edge_distance.max() <= MeshOptions.occlusion_fill_px
    assert np.allclose(offset[see_through_offset], 20.0, atol=0.01)


def test_no_rubber_sheet_between_box_and_wall():
    sparse = scan_of(box_in_front_of_wall()).sparse_depth_m
    values = sparse[sparse > 0]
    assert ((values > 5.05) & (values < 19.95)).sum() == 0
    assert (np.abs(values - 5.0) < 0.01).sum() > 100 and (np.abs(values - 20.0) < 0.01).sum() > 100


def test_mesh_renders_back_the_depth_it_was_built_from():
    depth = box_in_front_of_wall()
    mesh = depth_to_mesh(depth, KITTI_K, MeshOptions(occlusion_fill_px=0))
    assert mesh.visible_triangles < 2 * (HEIGHT - 1) * (WIDTH - 1)
    rendered = render_depth(MeshScene(mesh.vertices_cam, mesh.triangles), KITTI_K, WIDTH, HEIGHT)
    interior = rendered[1:-1, 1:-1] > 0
    assert interior.mean() > 0.99
    assert np.abs(rendered[1:-1, 1:-1][interior] - depth[1:-1, 1:-1][interior]).max() < 1e-3


def test_plane_mesh_keeps_every_triangle():
    mesh = depth_to_mesh(np.full((20, 30), 3.0), KITTI_K)
    assert mesh.visible_triangles == 2 * 19 * 29 and mesh.hidden_triangles == 0
    assert np.allclose(mesh.vertices_cam[:, 2], 3.0)
    assert np.allclose(mesh.vertices_cam.reshape(20, 30, 3), backproject(np.full((20, 30), 3.0), KITTI_K))


@pytest.mark.parametrize("fill", [0.0, np.nan, np.inf])
def test_all_invalid_depth_gives_an_empty_mesh_and_an_empty_scan(fill):
    depth = np.full((HEIGHT, WIDTH), fill, np.float32)
    mesh = depth_to_mesh(depth, KITTI_K)
    assert len(mesh.triangles) == 0
    scan = scan_of(depth)
    assert scan.counts["points"] == 0 and not scan.sparse_depth_m.any()


def test_nan_holes_are_cut_out_of_the_mesh():
    depth = np.full((HEIGHT, WIDTH), 10.0, np.float32)
    depth[150:200, 500:600] = np.nan
    scan = scan_of(depth)
    assert not scan.sparse_depth_m[151:199, 501:599].any()
    assert np.allclose(scan.sparse_depth_m[scan.sparse_depth_m > 0], 10.0, atol=1e-3)


def test_points_are_returned_in_the_lidar_frame_with_their_ring():
    scan = scan_of(np.full((HEIGHT, WIDTH), 10.0, np.float32))
    x, y, z, intensity, ring, _, azimuth = scan.points_lidar.T
    # The plane z_cam = 10 is x_lidar = 10.27 in front of the LiDAR.
    assert np.allclose(x, 10.27, atol=1e-3)
    elevation = np.rad2deg(np.arctan2(z, np.hypot(x, y)))
    assert np.allclose(elevation, np.asarray(load_sensor("hdl64").elevations_deg)[ring.astype(int)], atol=1e-3)
    assert np.allclose(azimuth, np.arctan2(y, x), atol=1e-6)
    # Intensity is reflectance (0.5 without a photo) x cos(incidence) x (10 m / range)^2, and
    # cos(incidence) on the plane is the forward distance over the range.
    distance = np.linalg.norm(scan.points_lidar[:, :3], axis=1)
    assert np.allclose(intensity, 0.5 * (10.27 / distance) * (10.0 / distance) ** 2, atol=1e-3)


def test_camera_building_blocks_agree_with_a_hand_worked_point():
    """A point 10 m ahead and 2 m right of a camera yawed 90 deg left: known pixel and inverse."""
    T_world_cam = np.eye(4)
    T_world_cam[:3, :3] = [[0.0, 0.0, -1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]
    T_world_cam[:3, 3] = [1.0, 0.0, 0.0]
    point_cam = np.array([[2.0, 0.0, 10.0]])
    point_world = transform_points(T_world_cam, point_cam)
    assert np.allclose(point_world, [[-9.0, 0.0, 2.0]])
    assert np.allclose(transform_points(invert_pose(T_world_cam), point_world), point_cam)
    u, v, in_front = project(point_cam, KITTI_K)
    assert np.allclose([u[0], v[0]], [721.5377 * 0.2 + 609.5593, 172.854]) and in_front.all()
    depth = np.zeros((375, 1242))
    column, row, inside = pixels_in_image(point_cam, KITTI_K, 1242, 375)
    depth[int(row[0]), int(column[0])] = 10.0
    back = backproject(depth, KITTI_K)[int(row[0]), int(column[0])]
    assert inside.all() and np.allclose(
        back, [(column[0] - 609.5593) / 721.5377 * 10.0, (row[0] - 172.854) / 721.5377 * 10.0, 10.0]
    )


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: transform_points(np.eye(3), np.zeros((2, 3))), r"T_b_a must have shape \(4, 4\), got \(3, 3\)"),
        (lambda: transform_points(np.eye(4), np.zeros((2, 4))), r"points_a must have shape \(N, 3\), got \(2, 4\)"),
        (lambda: project(np.zeros(3), KITTI_K), r"points_cam must have shape \(N, 3\), got \(3,\)"),
    ],
)
def test_camera_building_blocks_name_the_parameter_of_a_wrong_shape(call, message):
    with pytest.raises(ValueError, match=message):
        call()

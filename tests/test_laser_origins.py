"""Per-laser origins: each laser of a spinning sensor fires from its own point, which turns
with the head; the cast, the frustum culling and points.npy all start rays there."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from simlidar.pipeline.stages.scan import simulate_scan
from simlidar.sensors import MOUNTS, ReturnEffects, SensorSpecError, SpinningLidar, load_sensor, mount_pose
from simlidar.sensors.camera import rays_reaching_frustum
from simlidar.sensors.catalog import sensor_from_dict
from simlidar.sensors.raycast import MeshScene

from .helpers import KITTI_K

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
WALL_X = 10.0
# Two lasers: one ahead of, left of and above the axis, one below it.
ORIGINS = ((0.10, 0.05, 0.30), (0.0, 0.0, -0.20))


def two_laser_sensor() -> SpinningLidar:
    return SpinningLidar(
        name="two-lasers",
        description="two lasers with origin offsets",
        source="test",
        elevations_deg=(3.0, -4.0),
        azimuth_step_deg=1.0,
        horizontal_fov_deg=4.0,
        min_range_m=0.1,
        max_range_m=100.0,
        default_mount="camera",
        laser_origins_m=ORIGINS,
    )


def wall_scene() -> MeshScene:
    """A wall at LiDAR x = WALL_X, i.e. camera z = WALL_X on the `camera` mount."""
    corners = np.array([[-50.0, -50.0, WALL_X], [50.0, -50.0, WALL_X], [50.0, 50.0, WALL_X], [-50.0, 50.0, WALL_X]])
    return MeshScene(corners, np.array([[0, 1, 2], [0, 2, 3]]))


def test_a_laser_with_an_origin_offset_hits_the_wall_where_hand_geometry_says():
    sensor = two_laser_sensor()
    scan = simulate_scan(
        wall_scene(), KITTI_K, 1242, 375, sensor, mount_pose(MOUNTS["camera"]), np.random.default_rng(3)
    )
    phase = np.deg2rad(scan.phase["azimuth_phase_deg"])
    expected = []
    for ring, (elevation_deg, (forward, left, up)) in enumerate(zip(sensor.elevations_deg, ORIGINS, strict=True)):
        for column in range(4):
            azimuth = np.deg2rad(-2.0 + column) + phase
            origin = np.array(
                [
                    forward * np.cos(azimuth) - left * np.sin(azimuth),
                    forward * np.sin(azimuth) + left * np.cos(azimuth),
                    up,
                ]
            )
            elevation = np.deg2rad(elevation_deg)
            direction = np.array(
                [np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth), np.sin(elevation)]
            )
            distance = (WALL_X - origin[0]) / direction[0]
            expected.append([*(origin + distance * direction), ring])
    expected = np.array(sorted(map(tuple, expected), key=lambda row: (row[3], row[1])))
    points = scan.points_lidar[:, [0, 1, 2, 4]].astype(np.float64)
    points = points[np.lexsort((points[:, 1], points[:, 3]))]
    assert points.shape == (8, 4)
    np.testing.assert_allclose(points, expected, atol=2e-5)
    # The top laser's points sit 0.30 m + 9.9 m tan(3 deg) above the axis: 0.819 m.
    assert points[:4, 2] == pytest.approx(
        0.30 + (WALL_X - 0.10 * np.cos(np.deg2rad(-2.0) + phase)) * np.tan(np.deg2rad(3.0)), abs=0.01
    )
    # On the camera mount the camera looks along LiDAR x: the wall's depth is 10 m everywhere.
    assert np.allclose(scan.sparse_depth_m[scan.sparse_depth_m > 0], WALL_X, atol=1e-4)


def test_origins_turn_with_the_head():
    sensor = replace(two_laser_sensor(), horizontal_fov_deg=360.0)
    origins = sensor.ray_origins(0.0).reshape(2, sensor.columns, 3)
    radius = np.hypot(0.10, 0.05)
    assert np.allclose(np.linalg.norm(origins[0, :, :2], axis=1), radius)
    assert np.allclose(origins[0, :, 2], 0.30) and np.allclose(origins[1], [0.0, 0.0, -0.20])
    # Half a turn later the forward offset points backward.
    assert origins[0, 180, :2] == pytest.approx([0.10, 0.05]) and origins[0, 0, :2] == pytest.approx([-0.10, -0.05])


def test_frustum_culling_starts_each_ray_at_its_own_origin():
    rng = np.random.default_rng(0)
    directions = rng.normal(size=(300, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    origins = rng.uniform(-3.0, 3.0, size=(300, 3))
    together = rays_reaching_frustum(origins, directions, KITTI_K, 1242, 375, 0.5, 50.0)
    one_by_one = [
        rays_reaching_frustum(origin, direction[None], KITTI_K, 1242, 375, 0.5, 50.0)[0]
        for origin, direction in zip(origins, directions, strict=True)
    ]
    assert together.tolist() == one_by_one and 0 < together.sum() < 300


def beams_spec(**beams) -> dict:
    return {
        "name": "x",
        "kind": "spinning",
        "description": "x",
        "source": "x",
        "default_mount": "roof",
        "range": {"min_m": 0.5, "max_m": 100.0},
        "scan": {"columns": 360, "horizontal_fov_deg": 360.0},
        "beams": {"elevation_deg": [2.0, 0.0, -2.0], **beams},
        "returns": {"range_noise_m": 0.0, "divergence_mrad": 0.0, "mode": "strongest"},
    }


def test_origin_fields_are_validated_like_every_other():
    sensor = sensor_from_dict(beams_spec(origin_up_m=[0.2, 0.1, 0.0]), Path("x.toml"))
    assert sensor.laser_origins_m == ((0.0, 0.0, 0.2), (0.0, 0.0, 0.1), (0.0, 0.0, 0.0))
    with pytest.raises(SensorSpecError, match=r"x.toml: field 'beams.origin_up_m' must have 3 entries, got 2"):
        sensor_from_dict(beams_spec(origin_up_m=[0.2, 0.1]), Path("x.toml"))
    with pytest.raises(SensorSpecError, match=r"field 'beams.origin_left_m\[1\]' must be a number in \(-1.0, 1.0\)"):
        sensor_from_dict(beams_spec(origin_left_m=[0.0, 15.8, 0.0]), Path("x.toml"))
    with pytest.raises(SensorSpecError, match="unknown field 'beams.origin_z_m'"):
        sensor_from_dict(beams_spec(origin_z_m=[0.0, 0.0, 0.0]), Path("x.toml"))


def test_a_sensor_without_origins_keeps_its_hash_and_fires_from_the_origin():
    hdl64 = load_sensor("hdl64")
    assert hdl64.spec_hash() == "f2cd88512499e501"
    assert not load_sensor("hdl64").fire(np.random.default_rng(0)).origins_lidar.any()
    assert not load_sensor("avia").fire(np.random.default_rng(0)).origins_lidar.any()


@pytest.mark.skipif(
    not (DATA / "kitti_hdl64_beams.json").is_file(), reason="needs ../shared/data/kitti_hdl64_beams.json"
)
def test_hdl64_kitti_carries_kittis_fitted_table():
    figures = json.loads((DATA / "kitti_hdl64_beams.json").read_text())
    sensor = load_sensor("hdl64-kitti")
    assert sensor.elevations_deg == tuple(figures["elevation_deg"])
    assert [origin[2] for origin in sensor.laser_origins_m] == figures["origin_height_m"]
    assert sensor.spec_hash() != load_sensor("hdl64").spec_hash()
    # The top laser fires from 0.21 m above the LiDAR's origin.
    firing = replace(sensor, effects=ReturnEffects()).fire(np.random.default_rng(0))
    assert firing.origins_lidar[firing.ring == 0, 2] == pytest.approx(0.20967)

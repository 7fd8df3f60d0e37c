"""A scan as a real sweep is recorded: each return's ring, firing time and azimuth in
points.npy, and a LiDAR that moves during its sweep (raw or motion-compensated)."""

import dataclasses
import json
import re

import numpy as np
import pytest
from simlidar.pipeline.stages.scan import ScanCamera, simulate_rig_scan, simulate_scan
from simlidar.sensors import MOUNTS, ReturnEffects, SpinningLidar, load_sensor, mount_pose
from simlidar.sensors.raycast import MeshScene
from simlidar.sensors.sweep import EgoMotion, SweepMotion, parse_ego_motion

from .helpers import KITTI_K, generate, tar_members

WALL_X = 10.0
STEP_DEG = 1.0
ROTATION_HZ = 10.0


def three_laser_sensor() -> SpinningLidar:
    """+2, 0 and -2 deg lasers, one firing per degree, 10 turns a second."""
    return SpinningLidar(
        name="three-lasers",
        description="three lasers, 1 deg columns",
        source="test",
        elevations_deg=(2.0, 0.0, -2.0),
        azimuth_step_deg=STEP_DEG,
        horizontal_fov_deg=360.0,
        min_range_m=0.1,
        max_range_m=200.0,
        default_mount="camera",
        rotation_hz=ROTATION_HZ,
    )


def wall_scene() -> MeshScene:
    """A wall across the camera's whole view at camera z = WALL_X (LiDAR x on the `camera` mount)."""
    corners = np.array(
        [[-500.0, -500.0, WALL_X], [500.0, -500.0, WALL_X], [500.0, 500.0, WALL_X], [-500.0, 500.0, WALL_X]]
    )
    return MeshScene(corners, np.array([[0, 1, 2], [0, 2, 3]]))


def wall_scan(motion=None, seed=3):
    camera = ScanCamera(KITTI_K, 1242, 375)
    T_cam_lidar = mount_pose(MOUNTS["camera"])
    return simulate_rig_scan(
        wall_scene(), [camera], three_laser_sensor(), T_cam_lidar, np.random.default_rng(seed), motion=motion
    )


def test_ring_time_and_azimuth_of_a_hand_built_sensors_returns():
    scan = wall_scan()
    x, y, z, _, ring, time_s, azimuth = scan.points_lidar.astype(np.float64).T
    assert len(x) > 100 and np.allclose(x, WALL_X, atol=1e-4)
    # The ring is the laser whose elevation the point lies at; 0 is the top beam.
    elevation = np.rad2deg(np.arctan2(z, np.hypot(x, y)))
    assert set(ring) == {0.0, 1.0, 2.0}
    assert np.allclose(elevation, np.array([2.0, 0.0, -2.0])[ring.astype(int)], atol=1e-3)
    # Columns fire from -180 deg + phase every degree, one turn in 0.1 s: column k at k / 3600 s.
    phase_deg = scan.phase["azimuth_phase_deg"]
    column = np.round((np.rad2deg(azimuth) + 180.0 - phase_deg) / STEP_DEG)
    assert np.allclose(np.rad2deg(azimuth), -180.0 + phase_deg + column * STEP_DEG, atol=1e-4)
    assert np.allclose(time_s, column / (360 * ROTATION_HZ), atol=1e-7)
    assert np.allclose(azimuth, np.arctan2(y, x), atol=1e-5)
    # The camera looks ahead: the columns it sees fire half a turn after the sweep starts.
    assert 0.03 < time_s.min() and time_s.max() < 0.07


def test_ring_and_time_of_a_risley_sensors_returns():
    sensor = load_sensor("avia")
    scan = simulate_scan(
        wall_scene(), KITTI_K, 1242, 375, sensor, mount_pose(MOUNTS["camera"]), np.random.default_rng(0)
    )
    points = scan.points_lidar.astype(np.float64)
    ring, time_s = points[:, 4].astype(int), points[:, 5]
    assert set(ring) == set(range(sensor.channels))
    # Emitters fire together, one firing every channels / point_rate seconds.
    firing = np.round(time_s * sensor.point_rate_hz / sensor.channels)
    assert np.allclose(time_s, firing * sensor.channels / sensor.point_rate_hz, rtol=1e-6)
    assert time_s.max() < sensor.integration_time_s
    # Each point lies along its emitter's direction through the prisms at its firing time.
    directions = sensor.directions_at(scan.phase["start_time_s"] + time_s)[np.arange(len(ring)), ring]
    along = points[:, :3] / np.linalg.norm(points[:, :3], axis=1, keepdims=True)
    assert np.allclose(along, directions, atol=1e-5)
    assert np.allclose(points[:, 6], np.arctan2(directions[:, 1], directions[:, 0]), atol=1e-5)


@pytest.mark.parametrize("deskew", [False, True])
def test_a_wall_scanned_while_driving_toward_it_lands_where_hand_geometry_puts_it(deskew):
    """At 10 m/s toward a wall 10 m ahead (at the trigger time), a ray fired dt seconds
    after the trigger leaves from 10 dt m nearer: measured in its own frame the wall is at
    10 - 10 dt m (raw), in the trigger-time frame it is at 10 m (deskewed)."""
    speed = 10.0
    scan = wall_scan(SweepMotion(speed, 0.0, deskew))
    x, _, _, _, _, time_s, azimuth = scan.points_lidar.astype(np.float64).T
    trigger = scan.ego_motion["trigger_time_s"]
    # The camera is triggered when the sweep passes straight ahead (azimuth 0).
    assert np.abs(azimuth[np.isclose(time_s, trigger, atol=1e-9)]).max() <= np.deg2rad(STEP_DEG / 2) + 1e-6
    elapsed = time_s - trigger
    assert elapsed.min() < -0.01 and elapsed.max() > 0.01
    expected = np.full_like(x, WALL_X) if deskew else WALL_X - speed * elapsed
    assert np.allclose(x, expected, atol=1e-4)
    assert scan.ego_motion["deskewed"] is deskew and scan.ego_motion["speed_mps"] == speed
    # Raw, the sparse map is sheared: the depth changes across the image by the distance driven.
    depth = scan.sparse_depth_m
    ahead = depth[depth > 0]
    assert (np.ptp(ahead) > 0.2) != deskew


def test_a_turning_lidar_sees_the_wall_through_its_own_pose_at_each_firing():
    """Turning left at 30 deg/s while driving at 10 m/s: at dt after the trigger the LiDAR has
    yawed 30 dt deg and sits on the arc of radius 10 / (30 deg/s). A raw return, moved by that
    pose, is on the wall; deskewed returns are on it as written."""
    speed, yaw_rate = 10.0, np.deg2rad(30.0)
    raw = wall_scan(SweepMotion(speed, yaw_rate, False))
    x, y, _, _, _, time_s, _ = raw.points_lidar.astype(np.float64).T
    yaw = yaw_rate * (time_s - raw.ego_motion["trigger_time_s"])
    radius = speed / yaw_rate
    wall_x = np.cos(yaw) * x - np.sin(yaw) * y + radius * np.sin(yaw)
    assert np.allclose(wall_x, WALL_X, atol=1e-4) and not np.allclose(x, WALL_X, atol=0.05)
    deskewed = wall_scan(SweepMotion(speed, yaw_rate, True))
    assert np.allclose(deskewed.points_lidar[:, 0], WALL_X, atol=1e-4)


@pytest.mark.parametrize("deskew", [False, True])
def test_a_risley_sensor_moving_toward_the_wall_is_triggered_mid_frame(deskew):
    """A Livox Avia (no range noise) integrates 0.1 s; its camera is triggered in the middle
    of the frame."""
    speed = 10.0
    camera = ScanCamera(KITTI_K, 1242, 375)
    scan = simulate_rig_scan(
        wall_scene(),
        [camera],
        dataclasses.replace(load_sensor("avia"), effects=ReturnEffects()),
        mount_pose(MOUNTS["camera"]),
        np.random.default_rng(0),
        motion=SweepMotion(speed, 0.0, deskew),
    )
    x, time_s = scan.points_lidar[:, 0].astype(np.float64), scan.points_lidar[:, 5].astype(np.float64)
    trigger = scan.ego_motion["trigger_time_s"]
    assert trigger == pytest.approx(0.5 * (time_s.min() + time_s.max()), abs=1e-3)
    expected = np.full_like(x, WALL_X) if deskew else WALL_X - speed * (time_s - trigger)
    assert np.allclose(x, expected, atol=1e-4)


def test_ego_motion_specs_parse_and_bad_ones_say_why():
    assert parse_ego_motion("none") is None
    assert parse_ego_motion("speed=5:15,yaw_rate=-10:10") == EgoMotion((5.0, 15.0), (-10.0, 10.0))
    assert parse_ego_motion("speed=10") == EgoMotion((10.0, 10.0), (0.0, 0.0))
    assert EgoMotion((5.0, 15.0), (-10.0, 10.0)).describe() == "speed=5:15,yaw_rate=-10:10"
    for bad, why in (
        ("pace=3", "KEY=VALUE"),
        ("speed=fast", "must be a number"),
        ("speed=15:5", "LOW:HIGH"),
        ("speed=100", "within +-70"),
        ("yaw_rate=1:2:3", "LOW:HIGH"),
    ):
        with pytest.raises(ValueError, match=re.escape(why)):
            parse_ego_motion(bad, "--ego-motion")


def test_generate_records_the_motion_and_refuses_a_deskew_without_it(cli, photos, tmp_path):
    code, _, err = generate(cli, photos, tmp_path / "raw", "--ego-motion", "speed=10:20", "--save-points")
    assert code == 0, err
    members = tar_members(tmp_path / "raw" / "shard-000000.tar")
    meta = json.loads(members["img0-v0.json"])
    assert 10 <= meta["ego_motion"]["speed_mps"] <= 20 and meta["ego_motion"]["deskewed"] is False
    assert meta["ego_motion"]["yaw_rate_deg_s"] == 0.0
    code, _, err = generate(cli, photos, tmp_path / "bad", "--deskew")
    assert code == 2 and "--deskew needs --ego-motion" in err and err.count("\n") == 1
    code, _, err = generate(cli, photos, tmp_path / "bad", "--ego-motion", "speed=abc")
    assert code == 2 and "--ego-motion: speed must be a number" in err and err.count("\n") == 1
    rig = tmp_path / "calibration.json"
    rig.write_text("{}")
    code, _, err = generate(cli, photos, tmp_path / "bad", "--ego-motion", "speed=5", "--rig", rig)
    assert code == 2 and "--ego-motion is for one camera's scans" in err and err.count("\n") == 1

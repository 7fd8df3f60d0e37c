import io
import json
import tarfile

import numpy as np
import pytest
from simlidar.pipeline import schema
from simlidar.sensors import (
    DEFAULT_MOUNT_JITTER,
    MOUNTS,
    MountJitter,
    SensorSpecError,
    available_sensors,
    load_sensor,
    mount_pose,
    parse_mount_jitter,
    sample_mount_jitter,
)
from simlidar.sensors.camera import rays_reaching_frustum, sparse_depth_image
from simlidar.sensors.raycast import MeshScene

from .helpers import KITTI_K


def test_catalog_lists_the_presets():
    assert {"hdl64", "vlp16"} <= set(available_sensors())


def test_hdl64_matches_its_published_figures():
    sensor = load_sensor("hdl64")
    assert sensor.channels == 64
    assert sensor.elevations_deg[0] == pytest.approx(2.0)
    assert sensor.elevations_deg[31] == pytest.approx(-8.5)
    assert sensor.elevations_deg[32] == pytest.approx(-8.9)
    assert sensor.elevations_deg[-1] == pytest.approx(-24.7)
    assert sensor.columns == 2083
    assert sensor.max_range_m == 120.0


def test_vlp16_has_16_rings_two_degrees_apart():
    sensor = load_sensor("vlp16")
    assert np.allclose(sensor.elevations_deg, np.arange(15, -16, -2))
    assert sensor.points_per_frame == 16 * 1800


def test_ray_directions_have_the_table_elevations():
    sensor = load_sensor("vlp16")
    directions, ring = sensor.ray_directions(azimuth_phase_rad=0.01)
    assert np.allclose(np.linalg.norm(directions, axis=1), 1.0)
    elevation_deg = np.rad2deg(np.arcsin(directions[:, 2]))
    assert np.allclose(elevation_deg, np.asarray(sensor.elevations_deg)[ring])
    azimuth = np.arctan2(directions[ring == 0, 1], directions[ring == 0, 0])
    assert np.allclose(np.diff(np.unwrap(azimuth)), np.deg2rad(0.2))


def test_unknown_sensor_lists_the_known_ones():
    with pytest.raises(SensorSpecError, match="unknown sensor 'hdl65'.*hdl64.*vlp16"):
        load_sensor("hdl65")


@pytest.mark.parametrize(
    "edit, field",
    [
        (lambda text: text.replace("max_m = 100.0", ""), "range.max_m"),
        (lambda text: text.replace("min_m = 0.5", "min_m = -1.0"), "range.min_m"),
        (lambda text: text.replace("[15.0, 13.0,", "[13.0, 15.0,"), "beams.elevation_deg"),
        (lambda text: text.replace("[15.0, 13.0,", "[95.0, 13.0,"), "beams.elevation_deg[0]"),
        (lambda text: text.replace("azimuth_step_deg = 0.2", 'azimuth_step_deg = "fine"'), "scan.azimuth_step_deg"),
    ],
)
def test_bad_sensor_file_names_file_and_field(tmp_path, edit, field):
    good = (load_sensor.__globals__["CATALOG_DIR"] / "vlp16.toml").read_text()
    path = tmp_path / "mine.toml"
    path.write_text(edit(good))
    with pytest.raises(SensorSpecError) as raised:
        load_sensor(str(path))
    assert str(path) in str(raised.value) and f"'{field}'" in str(raised.value)


def test_kitti_mount_places_the_lidar_behind_above_and_right_of_the_camera():
    T_cam_lidar = mount_pose(MOUNTS["kitti"])
    assert np.allclose(T_cam_lidar[:3, 3], [0.06, -0.08, -0.27], atol=0.006)
    forward, left, up = T_cam_lidar[:3, :3].T
    # KITTI's 2011_09_26 calibration into rectified camera 2: the LiDAR's axes within 1 deg
    # of the nominal ones, its forward axis tipped 0.6 deg down in the image (camera +y).
    for axis, nominal in ((forward, [0, 0, 1]), (left, [-1, 0, 0]), (up, [0, -1, 0])):
        assert 0.1 < np.rad2deg(np.arccos(axis @ nominal)) < 1.0
    assert np.rad2deg(np.arcsin(forward[1])) == pytest.approx(0.60, abs=0.05)


def test_frustum_culling_drops_only_rays_that_cannot_hit_the_image():
    width, height = 1242, 375
    depth = 7.0
    corners = np.array([[-0.5, -0.5], [width - 0.5, -0.5], [-0.5, height - 0.5], [width - 0.5, height - 0.5]])
    far_plane = np.column_stack([(corners - KITTI_K[:2, 2]) / np.diag(KITTI_K)[:2] * depth, np.full(4, depth)])
    scene = MeshScene(far_plane, np.array([[0, 2, 1], [1, 2, 3]]))
    sensor = load_sensor("hdl64")
    directions_lidar, _ = sensor.ray_directions()
    T_cam_lidar = mount_pose(MOUNTS["kitti"])
    directions_cam = directions_lidar @ T_cam_lidar[:3, :3].T
    origin_cam = T_cam_lidar[:3, 3]
    hit_all = np.isfinite(scene.cast(origin_cam, directions_cam).t)
    kept = rays_reaching_frustum(origin_cam, directions_cam, KITTI_K, width, height, 0.9, 120.0)
    assert hit_all.sum() > 1000
    assert (kept >= hit_all).all(), "a ray that hits the image was culled"
    assert kept.sum() < 0.2 * len(kept)


def test_z_buffer_keeps_the_nearest_point_and_points_hidden_from_the_camera():
    K = np.array([[100.0, 0, 50], [0, 100.0, 40], [0, 0, 1]])
    points = np.array([[0.0, 0.0, 10.0], [0.0, 0.0, 4.0], [0.2, 0.0, 10.0], [0.0, 0.0, -3.0]])
    depth, in_image = sparse_depth_image(points, K, 100, 80)
    assert depth[40, 50] == pytest.approx(4.0)
    assert depth[40, 52] == pytest.approx(10.0)
    assert in_image.tolist() == [True, True, True, False]
    assert np.count_nonzero(depth) == 2


def test_mount_jitter_text_is_parsed_and_drawn_within_its_ranges():
    jitter = parse_mount_jitter("height=0.1, pitch=2")
    assert jitter == MountJitter(horizontal_m=0.0, height_m=0.1, roll_deg=0.0, pitch_deg=2.0, yaw_deg=0.0)
    assert parse_mount_jitter(DEFAULT_MOUNT_JITTER) == MountJitter()
    assert parse_mount_jitter("none") == MountJitter(0.0, 0.0, 0.0, 0.0, 0.0)
    rng = np.random.default_rng(0)
    draws = [sample_mount_jitter(jitter, rng) for _ in range(2000)]
    translation = np.array([t for t, _ in draws])
    roll_pitch_yaw = np.rad2deg(np.array([r for _, r in draws]))
    assert np.all(translation[:, [0, 2]] == 0) and np.abs(translation[:, 1]).max() <= 0.1
    assert np.abs(translation[:, 1]).max() > 0.09
    assert np.all(roll_pitch_yaw[:, [0, 2]] == 0) and 1.9 < np.abs(roll_pitch_yaw[:, 1]).max() <= 2.0


@pytest.mark.parametrize("text", ["height=-1", "tilt=1", "pitch", "yaw=lots"])
def test_bad_mount_jitter_says_what_is_expected(text):
    with pytest.raises(ValueError, match="`mount_jitter`"):
        parse_mount_jitter(text)


def test_pitch_jitter_turns_the_lidar_about_its_y_axis():
    T_cam_lidar = mount_pose(MOUNTS["camera"], np.zeros(3), np.deg2rad([0.0, 1.0, 0.0]))
    forward_cam = T_cam_lidar[:3, :3] @ [1.0, 0.0, 0.0]
    # Positive pitch about LiDAR y (left) tips the forward axis down: camera +y is down.
    assert np.rad2deg(np.arcsin(forward_cam[1])) == pytest.approx(1.0)


def test_spinning_phase_is_drawn_within_one_azimuth_step():
    sensor = load_sensor("hdl64")
    phases = [sensor.fire(np.random.default_rng(seed)).phase["azimuth_phase_deg"] for seed in range(50)]
    assert 0.0 <= min(phases) and max(phases) < sensor.azimuth_step_deg and len(set(phases)) == 50


def test_generate_with_effects_off_gives_exact_depth_and_records_the_sensor(cli, tmp_path):
    from .helpers import write_photo

    photos = tmp_path / "photos"
    write_photo(photos, "wall.jpg", np.full((96, 160), 8.0, np.float32))
    out = tmp_path / "out"
    options = ["--fov", "90", "--teacher", "sidecar", "--quiet", "--workers", "1", "--save-points"]
    off = ["--range-noise", "0", "--detection-range", "0", "--mount-jitter", "none", "--sensor", "vlp16"]
    code, _, err = cli("generate", "--images", photos, "--out", out, *options, *off)
    assert code == 0, err
    with tarfile.open(out / "shard-000000.tar") as tar:
        members = {member.name: tar.extractfile(member).read() for member in tar.getmembers()}
    sparse = schema.decode_depth_png(members["wall-v0.sparse.png"])
    assert np.count_nonzero(sparse) > 100 and np.allclose(sparse[sparse > 0], 8.0, atol=1 / 256)
    meta = json.loads(members["wall-v0.json"])
    assert meta["sensor"]["effects"]["range_noise_m"] == 0.0 and meta["sensor"]["effects"]["divergence_mrad"] == 3.0
    assert meta["sensor"]["kind"] == "spinning" and "azimuth_phase_deg" in meta
    assert meta["mount"]["jitter_translation_m"] == [0.0, 0.0, 0.0]
    points = np.load(io.BytesIO(members["wall-v0.points.npy"]))
    assert 0 < points[:, 3].min() and points[:, 3].max() <= 1.0

    code, _, err = cli("generate", "--images", photos, "--out", tmp_path / "livox", *options, "--sensor", "mid40")
    assert code == 0, err
    with tarfile.open(tmp_path / "livox" / "shard-000000.tar") as tar:
        meta = json.loads(tar.extractfile("wall-v0.json").read())
    assert meta["sensor"]["kind"] == "risley" and 0 <= meta["start_time_s"] < 60 and meta["counts"]["points"] > 1000


def test_generate_refuses_effect_options_that_do_not_apply(cli, tmp_path):
    base = ["generate", "--images", tmp_path, "--out", tmp_path / "out", "--quiet"]
    code, _, err = cli(*base, "--integration-time", "0.5")
    assert code == 2 and "--integration-time applies to non-repetitive" in err and err.count("\n") == 1
    code, _, err = cli(*base, "--drop-rate", "1.5")
    assert code == 2 and "--drop-rate must be in [0, 1)" in err
    code, _, err = cli(*base, "--mount-jitter", "tilt=3")
    assert code == 2 and "--mount-jitter" in err and "height" in err


def test_a_yaw_calibration_error_shifts_a_point_ahead_by_f_tan_yaw():
    from simlidar.pipeline.stages.scan import Scan, with_calibration_error
    from simlidar.sensors.mount import jittered_pose

    from .helpers import KITTI_K

    ahead = np.array([[10.0, 0.0, 0.0, 1.0, 0.0]], np.float32)  # 10 m along the LiDAR's x
    scan = Scan(np.zeros((375, 1242), np.float32), ahead, {"sparse_pixels": 0}, {}, np.zeros((1, 3)))
    T_cam_lidar = mount_pose(MOUNTS["camera"])
    T_error = jittered_pose(np.eye(4), np.zeros(3), np.deg2rad([0.0, 0.0, 1.0]))
    recorded, T_recorded = with_calibration_error(scan, T_cam_lidar, KITTI_K, 1242, 375, T_error)
    # Yaw turns toward the LiDAR's +y (left), the camera's -x: the point moves left by f tan(1 deg).
    (v,), (u,) = np.nonzero(recorded.sparse_depth_m)
    assert u == np.floor(KITTI_K[0, 2] - KITTI_K[0, 0] * np.tan(np.deg2rad(1.0)) + 0.5)
    assert v == np.floor(KITTI_K[1, 2] + 0.5)
    assert np.isclose(recorded.sparse_depth_m[v, u], 10 * np.cos(np.deg2rad(1.0)), atol=1e-5)
    assert recorded.counts["sparse_pixels"] == 1 and np.allclose(T_recorded, T_cam_lidar @ T_error)


def test_generate_records_the_erroneous_and_the_true_extrinsics(cli, tmp_path):
    from .helpers import write_photo

    photos = tmp_path / "photos"
    write_photo(photos, "wall.jpg", np.full((96, 160), 8.0, np.float32))
    options = ["--images", photos, "--fov", "90", "--teacher", "sidecar", "--quiet", "--workers", "1"]
    error = ["--calibration-error", "yaw=0.5"]
    assert cli("generate", *options, "--out", tmp_path / "a", *error)[0] == 0
    assert cli("generate", *options, "--out", tmp_path / "b")[0] == 0
    metas = []
    for name in "ab":
        with tarfile.open(tmp_path / name / "shard-000000.tar") as tar:
            metas.append(json.loads(tar.extractfile("wall-v0.json").read()))
    with_error, exact = metas
    assert with_error["T_cam_lidar_true"] == exact["T_cam_lidar"] and "T_cam_lidar_true" not in exact
    R_true, R_recorded = (np.array(with_error[name])[:3, :3] for name in ("T_cam_lidar_true", "T_cam_lidar"))
    angle = np.degrees(np.arccos(np.clip((np.trace(R_true.T @ R_recorded) - 1) / 2, -1, 1)))
    assert 0 < angle <= 0.5 + 1e-9
    code, _, err = cli("generate", *options, "--out", tmp_path / "c", "--calibration-error", "twist=1")
    assert code == 2 and err.count("\n") == 1 and "--calibration-error: 'twist=1' is not KEY=VALUE" in err
    code, _, err = cli(
        "generate", *options, "--out", tmp_path / "c", "--calibration-error", "yaw=1", "--rig", "virtual"
    )
    assert code == 2 and "--calibration-error is for single cameras" in err

"""Mounts from calibration files: KITTI object calib.txt, KITTI raw calib_velo_to_cam.txt
(with calib_cam_to_cam.txt beside it or not), and 4x4 T_cam_lidar in JSON or TOML."""

import json
from pathlib import Path

import numpy as np
import pytest
from simlidar.sensors import MOUNTS, mount_pose
from simlidar.sensors.calibration import CalibrationError, mount_from_calibration, read_calibration
from simlidar.sensors.mount import rotation_from_roll_pitch_yaw

from .helpers import generate, tar_members

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
KITTI_OBJECT = DATA / "kitti_object"
needs_kitti = pytest.mark.skipif(not KITTI_OBJECT.is_dir(), reason="needs ../shared/data/kitti_object/")

VELO_TO_CAM_2011_09_26 = (
    "calib_time: 15-Mar-2012 11:37:16\n"
    "R: 7.533745e-03 -9.999714e-01 -6.166020e-04 1.480249e-02 7.280733e-04 -9.998902e-01 "
    "9.998621e-01 7.523790e-03 1.480755e-02\n"
    "T: -4.069766e-03 -7.631618e-02 -2.717806e-01\n"
    "delta_f: 0.000000e+00 0.000000e+00\n"
)
CAM_TO_CAM_2011_09_26 = (
    "calib_time: 09-Jan-2012 13:57:47\n"
    "R_rect_00: 9.999239e-01 9.837760e-03 -7.445048e-03 -9.869795e-03 9.999421e-01 -4.278459e-03 "
    "7.402527e-03 4.351614e-03 9.999631e-01\n"
    "P_rect_02: 7.215377e+02 0.000000e+00 6.095593e+02 4.485728e+01 0.000000e+00 7.215377e+02 "
    "1.728540e+02 2.163791e-01 0.000000e+00 0.000000e+00 1.000000e+00 2.745884e-03\n"
)


def kitti_fields(path: Path) -> dict:
    return {
        key: np.array(values.split(), dtype=float)
        for key, _, values in (line.partition(":") for line in path.read_text().splitlines())
        if values.strip() and key != "calib_time"
    }


@needs_kitti
@pytest.mark.parametrize("frame", ["000134", "000002"])
def test_object_calib_projects_the_scan_as_kittis_own_formula(frame):
    """x_img ~ P2 R0_rect Tr_velo_to_cam x: the calibration's K and T_cam_lidar put every point
    of the real scan on the same pixel at the same rectified depth."""
    path = KITTI_OBJECT / f"{frame}.calib.txt"
    fields = kitti_fields(path)
    R0 = np.eye(4)
    R0[:3, :3] = fields["R0_rect"].reshape(3, 3)
    Tr = np.vstack([fields["Tr_velo_to_cam"].reshape(3, 4), [0, 0, 0, 1]])
    P2 = fields["P2"].reshape(3, 4)
    points = np.fromfile(KITTI_OBJECT / f"{frame}.bin", dtype=np.float32).reshape(-1, 4)[:, :3].astype(np.float64)
    homogeneous = np.column_stack([points, np.ones(len(points))])
    stated = (P2 @ R0 @ Tr @ homogeneous.T).T
    calibration = read_calibration(path)
    points_cam = points @ calibration.T_cam_lidar[:3, :3].T + calibration.T_cam_lidar[:3, 3]
    ours = points_cam @ calibration.K.T
    np.testing.assert_allclose(ours[:, :2] / ours[:, 2:], stated[:, :2] / stated[:, 2:], atol=1e-6)
    np.testing.assert_allclose(ours[:, 2], stated[:, 2], atol=1e-9)
    # Camera 2 sits about 0.06 m left of camera 0 (the reference of Tr_velo_to_cam).
    camera_0 = read_calibration(path, camera=0).T_cam_lidar
    assert calibration.T_cam_lidar[0, 3] - camera_0[0, 3] == pytest.approx(0.06, abs=0.005)
    np.testing.assert_allclose(mount_pose(mount_from_calibration(path)), calibration.T_cam_lidar, atol=1e-6)


def test_raw_velo_to_cam_with_cam_to_cam_is_the_kitti_mount(tmp_path):
    (tmp_path / "calib_velo_to_cam.txt").write_text(VELO_TO_CAM_2011_09_26)
    (tmp_path / "calib_cam_to_cam.txt").write_text(CAM_TO_CAM_2011_09_26)
    calibration = read_calibration(tmp_path / "calib_velo_to_cam.txt")
    np.testing.assert_allclose(calibration.T_cam_lidar, mount_pose(MOUNTS["kitti"]), atol=1e-6)
    assert calibration.K[0, 0] == 721.5377 and "rectified camera 2" in calibration.source
    # The named mount: 0.27 m behind, 0.08 m above and 0.06 m right of camera 2, rotated.
    assert MOUNTS["kitti"].position_cam_m == pytest.approx((0.057, -0.075, -0.269), abs=0.001)
    assert max(abs(angle) for angle in MOUNTS["kitti"].roll_pitch_yaw_deg) > 0.5


def test_raw_velo_to_cam_alone_is_camera_0_as_stated(tmp_path):
    path = tmp_path / "calib_velo_to_cam.txt"
    path.write_text(VELO_TO_CAM_2011_09_26)
    calibration = read_calibration(path)
    stated = kitti_fields(path)
    np.testing.assert_array_equal(calibration.T_cam_lidar[:3, :3], stated["R"].reshape(3, 3))
    np.testing.assert_array_equal(calibration.T_cam_lidar[:3, 3], stated["T"])
    assert calibration.K is None and "before rectification" in calibration.source


@pytest.mark.parametrize("suffix", [".json", ".toml"])
def test_a_4x4_file_round_trips_through_a_mount(tmp_path, suffix):
    T_cam_lidar = np.eye(4)
    T_cam_lidar[:3, :3] = rotation_from_roll_pitch_yaw(0.3, -1.2, 2.0) @ np.array([[0, -1, 0], [0, 0, -1], [1, 0, 0]])
    T_cam_lidar[:3, 3] = [0.1, -0.5, 1.5]
    path = tmp_path / f"rig{suffix}"
    rows = T_cam_lidar.tolist()
    if suffix == ".json":
        path.write_text(json.dumps({"T_cam_lidar": rows}))
    else:
        path.write_text("T_cam_lidar = [\n" + "".join(f"  {row!r},\n" for row in rows) + "]\n")
    np.testing.assert_array_equal(read_calibration(path).T_cam_lidar, T_cam_lidar)
    np.testing.assert_allclose(mount_pose(mount_from_calibration(path)), T_cam_lidar, atol=1e-12)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("a.json", '{"T_cam_lidar": [[1, 0, 0], [0, 1, 0], [0, 0, 1]]}', "T_cam_lidar must be 4 rows of 4 finite"),
        ("a.json", '{"T_cam_lidar": [[2,0,0,0],[0,1,0,0],[0,0,1,0],[0,0,0,1]]}', "'T_cam_lidar' is not a rotation"),
        ("a.json", '{"T_cam_lidar": [[1,0,0,0],[0,1,0,0],[0,0,1,0],[0,0,1,1]]}', "last row must be 0 0 0 1"),
        ("a.json", '{"T": 1}', "missing field 'T_cam_lidar'"),
        ("a.json", "{", "not valid JSON"),
        ("a.toml", "T_cam_lidar = 'x'", "T_cam_lidar must be 4 rows"),
        ("calib.txt", "R0_rect: 1 0 0 0 1 0 0 0 1\nTr_velo_to_cam: 0 -1 0 0 0 0 -1 0 1 0 0 0\n", "missing field 'P2'"),
        ("calib.txt", "P2: 1 2 3\nR0_rect: 1\nTr_velo_to_cam: 1 2\n", "field 'P2' must hold 12 numbers, got 3"),
        ("calib.txt", "hello: world\n", "not a calibration this reader knows"),
        ("calib_velo_to_cam.txt", "R: 1 0 0 0 1 0 0 0 1\nT: 0 0 nan\n", "'T' holds a value that is not finite"),
    ],
)
def test_bad_calibration_files_are_one_line_errors(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(CalibrationError, match=message) as error:
        read_calibration(path)
    assert "\n" not in str(error.value) and str(path) in str(error.value)


def test_missing_file_and_bad_camera(tmp_path):
    with pytest.raises(CalibrationError, match="does not exist"):
        read_calibration(tmp_path / "nope.txt")
    with pytest.raises(CalibrationError, match=r"camera must be one of \(0, 1, 2, 3\)"):
        read_calibration(tmp_path / "nope.txt", camera=5)


def test_generate_places_the_lidar_by_a_calibration_file(cli, photos, tmp_path):
    """`generate --mount FILE`: the sample records the file's T_cam_lidar (no jitter)."""
    (tmp_path / "calib_velo_to_cam.txt").write_text(VELO_TO_CAM_2011_09_26)
    (tmp_path / "calib_cam_to_cam.txt").write_text(CAM_TO_CAM_2011_09_26)
    code, _, err = generate(
        cli, photos, tmp_path / "out", "--mount", tmp_path / "calib_velo_to_cam.txt", "--mount-jitter", "none"
    )
    assert code == 0, err
    meta = json.loads(tar_members(tmp_path / "out" / "shard-000000.tar")["img0-v0.json"])
    np.testing.assert_allclose(meta["T_cam_lidar"], mount_pose(MOUNTS["kitti"]), atol=1e-6)
    code, _, err = generate(cli, photos, tmp_path / "bad", "--mount", tmp_path / "calib_cam_to_cam.txt")
    assert code == 1 and err.count("\n") == 1 and "--mount: " in err and "not a calibration this reader knows" in err
    code, _, err = generate(cli, photos, tmp_path / "bad", "--mount", tmp_path / "nope.txt")
    assert code == 2 and "unknown mount" in err and "or a calibration file" in err

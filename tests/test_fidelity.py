"""`fidelity`: a real scan against a simulation of it, on a synthetic "real" frame made by
scanning the bundled KITTI-sized street with a known sensor, and on the bundled KITTI frames."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from simlidar.pipeline import schema
from simlidar.pipeline.errors import PipelineError
from simlidar.pipeline.output.fidelity import (
    RealFrame,
    densify,
    fidelity_picture,
    fidelity_report,
    fill_gaps,
    format_table,
    naive_line_sampler,
    profile_correlation,
    read_kitti_object_frame,
)
from simlidar.pipeline.stages.mesh import depth_to_mesh
from simlidar.pipeline.stages.scan import simulate_scan
from simlidar.sensors import MOUNTS, Calibration, ReturnEffects, load_sensor, mount_pose
from simlidar.sensors.mount import Mount
from simlidar.sensors.raycast import MeshScene

from .helpers import KITTI_K, REPO

SCENE = REPO / "examples" / "scenes" / "street_kitti"
KITTI_OBJECT = Path(__file__).resolve().parents[2] / "shared" / "data" / "kitti_object"


@pytest.fixture(scope="module")
def synthetic_frame() -> RealFrame:
    """The street scanned by an ideal hdl64-kitti on the kitti mount: a "real" frame whose
    sensor and calibration are known exactly."""
    depth = schema.decode_depth_png(SCENE.with_suffix(".depth.png").read_bytes())
    rgb = np.asarray(Image.open(SCENE.with_suffix(".jpg")).convert("RGB"))
    mesh = depth_to_mesh(depth, KITTI_K)
    sensor = replace(load_sensor("hdl64-kitti"), effects=ReturnEffects(), ray_drop=None)
    T_cam_lidar = mount_pose(MOUNTS["kitti"])
    scan = simulate_scan(
        MeshScene(mesh.vertices_cam, mesh.triangles), KITTI_K, 1242, 375, sensor, T_cam_lidar, np.random.default_rng(0)
    )
    return RealFrame(
        rgb, scan.points_lidar[:, :3].astype(np.float64), Calibration(T_cam_lidar, KITTI_K, "test"), "street"
    )


def test_fidelity_of_the_known_sensor_on_a_synthetic_frame(synthetic_frame):
    sensor = replace(load_sensor("hdl64-kitti"), effects=ReturnEffects(), ray_drop=None)
    report = fidelity_report(synthetic_frame, sensor, mount_pose(MOUNTS["kitti"]), np.random.default_rng(1))
    real, simulated, naive = (report.figures[name] for name in ("real", "simulated", "naive"))
    assert [real[f"correlation_{rows}"] for rows in (1, 2, 4)] == pytest.approx([1.0, 1.0, 1.0], abs=1e-12)
    # The same sensor from the same pose, another azimuth phase: the rows are the real ones.
    assert simulated["correlation_2"] > 0.95 and simulated["first_crop_row"] == real["first_crop_row"]
    assert simulated["valid_px"] == pytest.approx(real["valid_px"], rel=0.05)
    assert naive["see_through_0.3m"] == 0.0
    # A LiDAR pitched down by 1 deg puts its rings on other rows: the profiles part.
    tilted = mount_pose(Mount("tilted", "", MOUNTS["kitti"].position_cam_m, (-0.6, 1.6, 0.0)))
    worse = fidelity_report(synthetic_frame, sensor, tilted, np.random.default_rng(1)).figures["simulated"]
    assert worse["correlation_1"] < simulated["correlation_1"] - 0.2
    assert worse["first_crop_row"] > real["first_crop_row"] + 5
    # Within the camera's view, the ideal sensor (another phase) is near the "real" points
    # and agrees on nearly every range-image cell; the naive sampler's lines are elsewhere.
    assert real["chamfer_m"] == 0.0 and real["drop_accuracy"] == 1.0 and real["f_score"] == 1.0
    assert simulated["f_score"] > 0.9 > naive["f_score"] and simulated["chamfer_m"] < naive["chamfer_m"]
    assert simulated["drop_accuracy"] > 0.97 > naive["drop_accuracy"]
    assert simulated["range_median_error_m"] < 0.05
    table = format_table(report.figures)
    assert table.splitlines()[0].split() == ["real", "simulated", "naive"] and "see-through > 1 m" in table
    assert "F-score at 0.224 m" in table and "ray-drop accuracy (range image)" in table
    picture = fidelity_picture(report, synthetic_frame.rgb, "street")
    # Three maps (title band 44 px each) with a depth bar beside them, over the profile chart.
    assert picture.size == (1242 + 2 * 90, 3 * (375 + 44) + 300 + 2 * 44)


def test_fill_gaps_is_exact_on_a_plane_and_keeps_edges():
    # A road: inverse depth linear in the row; two rings 6 rows apart at 12 m and 11 m.
    inverse = np.linspace(1 / 12, 1 / 11, 7)
    column = np.zeros(7)
    column[[0, 6]] = 1.0 / inverse[[0, 6]]
    filled = fill_gaps(column[None, :], max_gap=8)[0]
    np.testing.assert_allclose(filled, 1.0 / inverse)
    # An edge (5 m against 20 m): the nearer side fills; a gap over max_gap stays empty.
    assert fill_gaps(np.array([[5.0, 0, 0, 20.0]]), 4).tolist() == [[5.0, 5.0, 5.0, 20.0]]
    assert fill_gaps(np.array([[5.0, 0, 0, 5.0]]), 2).tolist() == [[5.0, 0.0, 0.0, 5.0]]


def test_densify_sets_aside_points_seen_past_an_edge():
    sparse = np.zeros((9, 9))
    sparse[::2, ::2] = 10.0
    sparse[4, 4] = 30.0  # seen past the surface at 10 m
    dense = densify(sparse)
    assert dense[4, 4] == pytest.approx(10.0) and np.allclose(dense[:7, :9][dense[:7, :9] > 0], 10.0)


def test_profile_correlation_bins_rows_and_flat_profiles_are_zero():
    profile = np.array([0, 4, 0, 4, 0, 4, 0, 4])
    assert profile_correlation(profile, profile, 1) == pytest.approx(1.0)
    assert profile_correlation(profile, np.roll(profile, 1), 1) == pytest.approx(-1.0)
    assert profile_correlation(profile, np.roll(profile, 1), 2) == 0.0


def test_naive_sampler_keeps_pixels_on_evenly_spaced_lines():
    sensor = load_sensor("hdl64")
    dense = np.full((375, 1242), 10.0, np.float32)
    sparse = naive_line_sampler(dense, KITTI_K, mount_pose(MOUNTS["camera"]), sensor)
    rows = np.nonzero(sparse[:, 610])[0]
    # Straight ahead of the camera's centre the +2 deg line is 25 rows above the principal
    # point; the next is one even step (26.7 deg / 63 lines) lower, not the table's 0.339 deg.
    line_deg = 2.0 - (2.0 + 24.7) / 63
    assert rows[0] == round(KITTI_K[1, 2] - KITTI_K[1, 1] * np.tan(np.deg2rad(2.0)))
    assert rows[1] == round(KITTI_K[1, 2] - KITTI_K[1, 1] * np.tan(np.deg2rad(line_deg)))
    assert np.all(sparse[sparse > 0] == 10.0)


@pytest.mark.skipif(not KITTI_OBJECT.is_dir(), reason="needs ../shared/data/kitti_object/")
@pytest.mark.parametrize("name", ["000134", "000002"])
def test_hdl64_kitti_follows_the_real_kitti_scan(name):
    """On each shared KITTI frame, with the ray drop it ships (fitted on these two frames):
    points within 3% of the real scan's, the real scan's rows, and ray-drop accuracy in the
    range image above that of the luma-only weak-return drop."""
    frame = read_kitti_object_frame(KITTI_OBJECT / name)
    sensor = load_sensor("hdl64-kitti")
    figures = fidelity_report(frame, sensor, frame.calibration.T_cam_lidar, np.random.default_rng(0)).figures
    real, simulated, naive = (figures[name] for name in ("real", "simulated", "naive"))
    assert simulated["valid_px"] == pytest.approx(real["valid_px"], rel=0.03)
    assert simulated["correlation_2"] >= 0.95 > 0.9 > naive["correlation_2"]
    assert abs(simulated["first_crop_row"] - real["first_crop_row"]) <= 2
    assert simulated["f_score"] > naive["f_score"] and simulated["chamfer_m"] < naive["chamfer_m"]
    weak = replace(sensor, ray_drop=None)
    luma_only = fidelity_report(frame, weak, frame.calibration.T_cam_lidar, np.random.default_rng(0)).figures
    assert simulated["drop_accuracy"] > luma_only["simulated"]["drop_accuracy"] > naive["drop_accuracy"]


def test_missing_kitti_files_are_named(tmp_path):
    with pytest.raises(PipelineError, match=r"000001.bin does not exist"):
        read_kitti_object_frame(tmp_path / "000001")


def test_fidelity_command_on_a_synthetic_kitti_object_frame(cli, synthetic_frame, tmp_path):
    """The synthetic frame written as KITTI writes an object frame: the command prints the
    table (real against itself: 1.000) and draws the picture."""
    stem = tmp_path / "000000"
    np.column_stack([synthetic_frame.points_lidar, np.zeros(len(synthetic_frame.points_lidar))]).astype(
        np.float32
    ).tofile(stem.with_suffix(".bin"))
    Image.fromarray(synthetic_frame.rgb).save(stem.with_suffix(".png"))
    P2 = np.column_stack([KITTI_K, np.zeros(3)])
    rows = {"P2": P2, "R0_rect": np.eye(3), "Tr_velo_to_cam": synthetic_frame.calibration.T_cam_lidar[:3]}
    stem.with_suffix(".calib.txt").write_text(
        "".join(f"{key}: {' '.join(f'{value:.12e}' for value in matrix.ravel())}\n" for key, matrix in rows.items())
    )
    code, out, err = cli("fidelity", "--kitti-object", stem, "--detection-range", "0", "--plot", tmp_path / "f.png")
    assert code == 0, err
    lines = {line[:36].strip(): line[36:].split() for line in out.splitlines()}
    assert lines["row-profile correlation, 1 row(s)"][0] == "1.000"
    assert float(lines["row-profile correlation, 2 row(s)"][1]) > 0.95
    assert Image.open(tmp_path / "f.png").size == (1242 + 2 * 90, 3 * (375 + 44) + 300 + 2 * 44)

"""The figures LiDAR simulators are compared by, on hand-built clouds and range images."""

import numpy as np
import pytest
from simlidar.pipeline.output.scan_metrics import (
    F_SCORE_THRESHOLD_M,
    RangeGrid,
    cells_in_view,
    point_cloud_figures,
    range_image_figures,
)
from simlidar.sensors import MOUNTS, SpinningLidar, mount_pose

from .helpers import KITTI_K


def test_chamfer_and_f_score_of_half_a_cloud_moved_sideways():
    """Ten real points 1 m apart; the simulation has five of them and the other five 0.5 m to
    the side: every distance is 0 or 0.5 m each way."""
    real = np.column_stack([np.arange(10.0), np.zeros(10), np.full(10, 20.0)])
    simulated = real.copy()
    simulated[5:, 1] += 0.5
    figures = point_cloud_figures(simulated, real)
    assert figures["chamfer_m"] == pytest.approx(0.25 + 0.25)
    assert figures["chamfer_squared_m2"] == pytest.approx(0.125 + 0.125)
    # Half of each cloud is within 0.224 m of the other: precision = recall = F = 0.5.
    assert F_SCORE_THRESHOLD_M == pytest.approx(0.2236, abs=1e-4)
    assert figures["f_score"] == pytest.approx(0.5)
    assert point_cloud_figures(real, real) == {"chamfer_m": 0.0, "chamfer_squared_m2": 0.0, "f_score": 1.0}
    assert point_cloud_figures(real[:0], real)["f_score"] == 0.0


def test_range_image_figures_of_a_hand_filled_grid():
    inf = np.inf
    real = np.array([[5.0, inf, 7.0], [inf, inf, 9.0]])
    simulated = np.array([[5.1, inf, inf], [inf, 8.0, 9.3]])
    figures = range_image_figures(simulated, real, np.ones((2, 3), bool))
    # Agree on 4 of 6 cells; 2 dropped in both, 2 disagreements: F1 = 4 / (4 + 2).
    assert figures["cells"] == 6 and figures["drop_accuracy"] == pytest.approx(4 / 6)
    assert figures["drop_f1"] == pytest.approx(4 / 6)
    assert figures["range_rmse_m"] == pytest.approx(np.sqrt((0.1**2 + 0.3**2) / 2))
    assert figures["range_median_error_m"] == pytest.approx(0.2)
    # Only the cells in view count.
    in_view = np.array([[True, True, False], [False, False, True]])
    assert range_image_figures(simulated, real, in_view)["drop_accuracy"] == 1.0


def test_a_cell_keeps_its_nearest_point():
    grid = RangeGrid(channels=2, columns=4, step_rad=np.pi / 2)
    # Azimuth 10 deg is in column 2 (from -180 deg); the nearer of two points counts.
    direction = np.array([np.cos(np.deg2rad(10)), np.sin(np.deg2rad(10)), 0.0])
    image = grid.nearest_range(np.array([1, 1]), np.stack([8.0 * direction, 3.0 * direction]))
    assert image[1, 2] == pytest.approx(3.0) and np.isinf(np.delete(image.ravel(), 6)).all()


def test_the_cells_in_view_are_those_whose_beams_reach_the_image():
    """Three lasers, 1 deg steps, at the camera: the cells (2 deg columns) in view are those
    holding a beam within the image's horizontal field: azimuth from -41.2 deg (right edge)
    to +40.2 deg (left edge)."""
    sensor = SpinningLidar(
        name="three",
        description="",
        source="test",
        elevations_deg=(2.0, 0.0, -2.0),
        azimuth_step_deg=1.0,
        horizontal_fov_deg=360.0,
        min_range_m=0.1,
        max_range_m=100.0,
        default_mount="camera",
    )
    in_view = cells_in_view(sensor, mount_pose(MOUNTS["camera"]), KITTI_K, 1242, 375)
    assert in_view.shape == (3, 180)
    # Beams at the cells' centre phase: -179.5, -178.5, ... deg; the image spans these azimuths.
    right = -np.rad2deg(np.arctan((1241.5 - KITTI_K[0, 2]) / KITTI_K[0, 0]))
    left = np.rad2deg(np.arctan((KITTI_K[0, 2] + 0.5) / KITTI_K[0, 0]))
    beams = -179.5 + np.arange(360)
    columns = np.unique(np.floor((beams[(beams >= right) & (beams <= left)] + 180.0) / 2.0).astype(int))
    expected = np.zeros(180, bool)
    expected[columns] = True
    assert (in_view == expected[None, :]).all()

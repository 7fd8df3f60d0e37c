"""The figures LiDAR simulators are compared by, for a simulated scan against a real one.

Neural LiDAR simulators (LiDARsim, NeuRAD, LiDAR4D) report, between simulated and real scans
of one frame: the Chamfer distance and F-score of the two point clouds, the ray-drop accuracy
and F1 in the range image (laser x azimuth cells: did the cell return?), and the range error
over cells where both return. Here, every figure is restricted to the camera's field of view:

- point clouds in the camera frame, each scan's points that land in the image. Chamfer: the
  mean distance from each point to the nearest of the other cloud, both ways, summed (m), and
  the same of squared distances (m^2: LiDAR4D's published figure sums mean squared distances).
  F-score: the harmonic mean of the share of simulated points within F_SCORE_THRESHOLD_M of a
  real one and of real points within it of a simulated one.
- range image: a spinning sensor's lasers x columns of CELL_STEPS azimuth steps from -180 deg; the
  cells counted are those whose beam (from its laser's origin) can reach the image. A point's
  cell is its ring (the laser index it carries, or for a real scan the laser whose elevation
  it lies at) and its azimuth; a cell's range is its nearest point's. Drop accuracy: the share
  of cells where both scans agree on returning or not; drop F1: F1 of "no return" (a dropped
  ray) as the positive class. Range RMSE and median absolute error over cells where both return.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import open3d as o3d
from simlidar.sensors import Sensor, SpinningLidar
from simlidar.sensors.camera import pixels_in_image, rays_reaching_frustum, transform_points

# LiDAR4D thresholds squared distances at 0.05 m^2: points within 0.224 m.
F_SCORE_THRESHOLD_M = float(np.sqrt(0.05))
# A range-image column is this many of the sensor's azimuth steps wide: a real unit fires at
# an uneven pace (KITTI's HDL-64 steps by 0.09-0.18 deg), so one-step cells would be left
# empty where nothing was dropped. Two steps of an HDL-64 (0.35 deg) is about the column of
# the KITTI-360 range images (1030 columns) LiDAR-NeRF and LiDAR4D are evaluated on.
CELL_STEPS = 2


def points_in_image(points_cam: np.ndarray, K: np.ndarray, width: int, height: int) -> np.ndarray:
    """(N,) bool: which points (N, 3, camera frame, m) land in the (width x height) image of K (3, 3)."""
    return pixels_in_image(points_cam, K, width, height)[2]


def nearest_distances(points: np.ndarray, others: np.ndarray) -> np.ndarray:
    """(N,) distance (m) from each of points (N, 3) to the nearest of others (M, 3); inf when M is 0."""
    if len(others) == 0:
        return np.full(len(points), np.inf)
    clouds = [
        o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.asarray(p, dtype=np.float64))) for p in (points, others)
    ]
    return np.asarray(clouds[0].compute_point_cloud_distance(clouds[1]))


def point_cloud_figures(simulated_cam: np.ndarray, real_cam: np.ndarray) -> dict:
    """Chamfer distance (m), its squared form (m^2) and F-score at F_SCORE_THRESHOLD_M of
    simulated_cam (N, 3) against real_cam (M, 3), both in the camera frame (m)."""
    if len(simulated_cam) == 0 or len(real_cam) == 0:
        return {"chamfer_m": np.inf, "chamfer_squared_m2": np.inf, "f_score": 0.0}
    to_real, to_simulated = nearest_distances(simulated_cam, real_cam), nearest_distances(real_cam, simulated_cam)
    precision = float(np.mean(to_real < F_SCORE_THRESHOLD_M))
    recall = float(np.mean(to_simulated < F_SCORE_THRESHOLD_M))
    return {
        "chamfer_m": float(to_real.mean() + to_simulated.mean()),
        "chamfer_squared_m2": float(np.mean(to_real**2) + np.mean(to_simulated**2)),
        "f_score": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
    }


@dataclass(frozen=True)
class RangeGrid:
    """The range image's cells: `channels` lasers x `columns` azimuth bins of step_rad from -pi."""

    channels: int
    columns: int
    step_rad: float

    @staticmethod
    def of(sensor: SpinningLidar) -> RangeGrid:
        step_rad = CELL_STEPS * np.deg2rad(sensor.azimuth_step_deg)
        return RangeGrid(sensor.channels, int(round(2 * np.pi / step_rad)), step_rad)

    def column(self, azimuth_rad: np.ndarray) -> np.ndarray:
        """(N,) int64 the bin of each azimuth (N,) rad."""
        return np.floor((np.asarray(azimuth_rad) + np.pi) / self.step_rad).astype(np.int64) % self.columns

    def nearest_range(self, ring: np.ndarray, points_lidar: np.ndarray) -> np.ndarray:
        """(channels, columns) the range (m) of the nearest of points (N, 3, LiDAR frame, m)
        in each cell, by their ring (N,); inf where none."""
        image = np.full(self.channels * self.columns, np.inf)
        if len(points_lidar):
            cells = ring.astype(np.int64) * self.columns + self.column(
                np.arctan2(points_lidar[:, 1], points_lidar[:, 0])
            )
            np.minimum.at(image, cells, np.linalg.norm(points_lidar, axis=1))
        return image.reshape(self.channels, self.columns)


def cells_in_view(sensor: SpinningLidar, T_cam_lidar: np.ndarray, K: np.ndarray, width: int, height: int) -> np.ndarray:
    """(channels, columns) bool: the range-image cells with a beam that, fired from its laser's
    origin by `sensor` at T_cam_lidar (4, 4), can reach the image of K (3, 3)."""
    grid = RangeGrid.of(sensor)
    # Each cell holds CELL_STEPS beams, fired here half a step from its edges and each other.
    centre_phase = 0.5 * np.deg2rad(sensor.azimuth_step_deg)
    directions_lidar, ring = sensor.ray_directions(centre_phase)
    origins_cam = transform_points(T_cam_lidar, sensor.ray_origins(centre_phase))
    reach = rays_reaching_frustum(
        origins_cam, directions_lidar @ T_cam_lidar[:3, :3].T, K, width, height, sensor.min_range_m, sensor.max_range_m
    )
    cells = np.zeros(grid.channels * grid.columns, dtype=bool)
    azimuth = np.arctan2(directions_lidar[:, 1], directions_lidar[:, 0])
    cells[ring[reach].astype(np.int64) * grid.columns + grid.column(azimuth[reach])] = True
    return cells.reshape(grid.channels, grid.columns)


def range_image_figures(simulated_m: np.ndarray, real_m: np.ndarray, in_view: np.ndarray) -> dict:
    """Ray-drop accuracy and F1 (a dropped ray positive) and the range RMSE and median absolute
    error (m) where both return, of range images (channels, columns) m (inf = no return)
    restricted to the cells in_view (channels, columns) bool."""
    simulated_drop, real_drop = ~np.isfinite(simulated_m[in_view]), ~np.isfinite(real_m[in_view])
    agree = simulated_drop == real_drop
    both_drop = np.sum(simulated_drop & real_drop)
    both_return = ~simulated_drop & ~real_drop
    errors = simulated_m[in_view][both_return] - real_m[in_view][both_return]
    return {
        "cells": int(in_view.sum()),
        "drop_accuracy": float(agree.mean()) if agree.size else 0.0,
        "drop_f1": float(2 * both_drop / max(2 * both_drop + np.sum(~agree), 1)),
        "range_rmse_m": float(np.sqrt(np.mean(errors**2))) if errors.size else np.inf,
        "range_median_error_m": float(np.median(np.abs(errors))) if errors.size else np.inf,
    }


def scan_figures(
    points_lidar: np.ndarray,
    ring: np.ndarray | None,
    real_points_lidar: np.ndarray,
    sensor: Sensor,
    T_cam_lidar: np.ndarray,
    T_cam_real: np.ndarray,
    K: np.ndarray,
    width: int,
    height: int,
) -> dict:
    """Every figure of the module docstring for a scan's points_lidar (N, 3) m with their
    rings (N,; None: each point's nearest laser), placed at T_cam_lidar (4, 4), against a
    real scan real_points_lidar (M, 3) m placed at T_cam_real (4, 4), seen by the (width x
    height) camera K (3, 3); the range image's figures only for a spinning sensor."""
    points_cam = transform_points(T_cam_lidar, points_lidar)
    real_cam = transform_points(T_cam_real, real_points_lidar)
    seen = points_in_image(points_cam, K, width, height)
    real_seen = points_in_image(real_cam, K, width, height)
    figures = point_cloud_figures(points_cam[seen], real_cam[real_seen])
    if isinstance(sensor, SpinningLidar):
        grid = RangeGrid.of(sensor)
        ring = sensor.nearest_laser(points_lidar) if ring is None else ring
        simulated_m = grid.nearest_range(ring[seen], points_lidar[seen])
        real_m = grid.nearest_range(sensor.nearest_laser(real_points_lidar[real_seen]), real_points_lidar[real_seen])
        figures |= range_image_figures(simulated_m, real_m, cells_in_view(sensor, T_cam_lidar, K, width, height))
    return figures

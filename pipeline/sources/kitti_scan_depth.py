"""A KITTI object frame's real LiDAR scan made into a dense depth map: realistic,
non-planar depth at KITTI's size, for benchmarks and fidelity checks that need more
than the bundled synthetic scenes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import open3d as o3d
from PIL import Image
from simlidar.sensors.camera import sparse_depth_image


@dataclass(frozen=True)
class ScanDepthFrame:
    """depth_m: (H, W) float32 camera z (m), 0 = none; K: (3, 3) of image_2;
    T_cam_lidar: (4, 4) the frame's Velodyne pose in image_2's rectified camera frame."""

    name: str
    depth_m: np.ndarray
    K: np.ndarray
    T_cam_lidar: np.ndarray


def read_object_calibration(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """K (3, 3) and T_cam_lidar (4, 4) of image_2 from a KITTI object calib file
    (P2 = K [I | t], rectified camera = R0_rect Tr_velo_to_cam velodyne)."""
    fields = {}
    for line in path.read_text().splitlines():
        name, _, values = line.partition(":")
        try:
            fields[name.strip()] = np.array(values.split(), dtype=np.float64)
        except ValueError:
            continue
    shapes = {"P2": 12, "R0_rect": 9, "Tr_velo_to_cam": 12}
    missing = [name for name, size in shapes.items() if fields.get(name, np.zeros(0)).size != size]
    if missing:
        raise ValueError(f"calibration {path} lacks {', '.join(missing)}: pass a KITTI object calib file")
    P2 = fields["P2"].reshape(3, 4)
    K = P2[:, :3]
    T_rect_velo = np.eye(4)
    T_rect_velo[:3] = fields["Tr_velo_to_cam"].reshape(3, 4)
    T_cam_rect = np.eye(4)
    T_cam_rect[:3, :3] = fields["R0_rect"].reshape(3, 3)
    T_cam_rect[:3, 3] = np.linalg.solve(K, P2[:, 3])
    return K, T_cam_rect @ T_rect_velo


def densified_scan_depth(scan_path: Path, max_fill_px: float = 6.0) -> ScanDepthFrame:
    """The depth map of a KITTI object frame (`NNNNNN.bin` beside `.png` and `.calib.txt`):
    its scan projected into image_2 (nearest point per pixel), then every pixel within
    max_fill_px of a projected point given that nearest point's depth; the rest is 0."""
    width, height = Image.open(scan_path.with_suffix(".png")).size
    K, T_cam_lidar = read_object_calibration(scan_path.with_suffix(".calib.txt"))
    points_lidar = np.fromfile(scan_path, dtype=np.float32).reshape(-1, 4)[:, :3].astype(np.float64)
    points_cam = points_lidar @ T_cam_lidar[:3, :3].T + T_cam_lidar[:3, 3]
    sparse, _ = sparse_depth_image(points_cam, K, width, height)
    rows, cols = np.nonzero(sparse)
    seeds = np.column_stack([cols, rows, np.zeros(len(rows))]).astype(np.float32)
    pixel_v, pixel_u = np.mgrid[0:height, 0:width]
    queries = np.column_stack([pixel_u.ravel(), pixel_v.ravel(), np.zeros(pixel_u.size)]).astype(np.float32)
    search = o3d.core.nns.NearestNeighborSearch(o3d.core.Tensor(seeds))
    search.knn_index()
    nearest, distance_squared = search.knn_search(o3d.core.Tensor(queries), 1)
    nearest, distance_squared = nearest.numpy()[:, 0], distance_squared.numpy()[:, 0]
    depth = np.where(distance_squared <= max_fill_px**2, sparse[rows[nearest], cols[nearest]], 0.0)
    return ScanDepthFrame(scan_path.stem, depth.reshape(height, width).astype(np.float32), K, T_cam_lidar)

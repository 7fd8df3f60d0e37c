"""A tiny KITTI depth-completion tree with known depths, written by the tests."""

import numpy as np
from PIL import Image
from simlidar.pipeline import schema

DRIVE = "2011_09_26_drive_0001_sync"
SIZE = (20, 48)


def kitti_depths(frame: int):
    """(sparse, ground truth, teacher depth) in metres: a wall at 10 + frame m, GT on
    every 2nd row, the scan on every 4th; the teacher sees the whole wall."""
    wall = np.full(SIZE, 10.0 + frame, np.float32)
    wall[:, 24:] = 20.0 + frame  # a farther right half
    groundtruth = np.where((np.arange(SIZE[0]) % 2 == 0)[:, None], wall, 0).astype(np.float32)
    sparse = np.where((np.arange(SIZE[0]) % 4 == 0)[:, None], wall, 0).astype(np.float32)
    return sparse, groundtruth, wall


def write_kitti_tree(root, frames=(5, 6), split="train", with_teacher=True):
    for frame in frames:
        name = f"{frame:010d}.png"
        sparse, groundtruth, wall = kitti_depths(frame)
        for folder, depth in (("data_depth_velodyne", sparse), ("data_depth_annotated", groundtruth)):
            kind = "velodyne_raw" if folder == "data_depth_velodyne" else "groundtruth"
            path = root / folder / split / DRIVE / "proj_depth" / kind / "image_02" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(schema.encode_depth_png(depth))
        image = root / "raw" / DRIVE[:10] / DRIVE / "image_02" / "data" / name
        image.parent.mkdir(parents=True, exist_ok=True)
        rgb = np.random.default_rng(frame).integers(0, 255, (*SIZE, 3), dtype=np.uint8)
        Image.fromarray(rgb).save(image)
        if with_teacher:
            image.with_name(f"{image.stem}.depth.png").write_bytes(schema.encode_depth_png(wall))
    calib = root / "raw" / DRIVE[:10] / "calib_cam_to_cam.txt"
    calib.write_text("P_rect_02: 721.5 0 609.5 44.8 0 721.5 172.8 0.2 0 0 1 0.003\n")
    return root

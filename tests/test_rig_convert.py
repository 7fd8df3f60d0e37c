"""`simlidar convert rig`: a calibrated rig's real LiDAR sweeps as ground truth."""

import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from simlidar.pipeline import schema
from simlidar.pipeline.errors import PipelineError
from simlidar.pipeline.sources.calibrated_rig_lidar import read_bin_sweep, read_sweep

NUSCENES = Path(__file__).parents[2] / "shared" / "data" / "nuscenes_frame"
FRAME = "1532402927647951"
needs_nuscenes = pytest.mark.skipif(not NUSCENES.is_dir(), reason=f"real nuScenes frame not found at {NUSCENES}")


def read_shard(path):
    """{key: {member: bytes}} of one shard."""
    samples = {}
    with tarfile.open(path) as tar:
        for member in tar.getmembers():
            key, _, name = member.name.partition(".")
            samples.setdefault(key, {})[name] = tar.extractfile(member).read()
    return samples


def rigid_inverse(T):
    """(R, t) -> (R^T, -R^T t): the calibration's rotations are orthonormal to 1e-7, and a
    general inverse moves points that sit on a pixel border to the next pixel."""
    inverse = np.eye(4)
    inverse[:3, :3] = T[:3, :3].T
    inverse[:3, 3] = -T[:3, :3].T @ T[:3, 3]
    return inverse


def hand_projection(points_lidar, T_cam_lidar, K, width, height):
    """The nearest point's camera z per pixel, pixel = round half up of K @ p / z."""
    points = points_lidar @ T_cam_lidar[:3, :3].T + T_cam_lidar[:3, 3]
    depth = np.zeros((height, width))
    for x, y, z in points:
        if z <= 1e-6:
            continue
        u, v = int(np.floor(K[0, 0] * x / z + K[0, 2] + 0.5)), int(np.floor(K[1, 1] * y / z + K[1, 2] + 0.5))
        if 0 <= u < width and 0 <= v < height and (depth[v, u] == 0 or z < depth[v, u]):
            depth[v, u] = z
    return depth


@pytest.fixture
def rig_root(tmp_path):
    """A copy of the nuScenes frame with a metric depth sidecar (a plane 10-40 m) per image."""
    if not NUSCENES.is_dir():
        pytest.skip(f"real nuScenes frame not found at {NUSCENES}")
    root = tmp_path / "nuscenes"
    shutil.copytree(NUSCENES, root)
    for folder in root.glob("CAM_*"):
        (folder / f"{FRAME}.jpg").chmod(0o644)
        depth = np.tile(np.linspace(10, 40, 1600), (900, 1))
        Image.fromarray(np.round(depth * 256).astype(np.uint16)).save(folder / f"{FRAME}.depth.png")
    return root


@pytest.mark.slow
def test_six_samples_whose_sparse_maps_are_the_sweep_projected(cli, rig_root, tmp_path):
    out = tmp_path / "shards"
    code, stdout, err = cli(
        "convert", "rig", rig_root, "--rig", rig_root / "calibration.json", "--out", out, "--teacher", "sidecar",
        "--quiet",
    )  # fmt: skip
    assert code == 0, err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["command"] == "simlidar convert rig"
    assert manifest["totals"]["samples"] == 6 and manifest["totals"]["images_written"] == 1
    samples = read_shard(out / "shard-000000.tar")
    assert sorted(samples) == [f"{FRAME}-r{index}" for index in range(6)]
    calibration = json.loads((NUSCENES / "calibration.json").read_text())
    points = np.fromfile(NUSCENES / "LIDAR_TOP" / f"{FRAME}.bin", np.float32).reshape(-1, 5)[:, :3].astype(np.float64)
    T_rig_lidar = np.array(calibration["T_rig_lidar"])
    for index, camera in enumerate(calibration["cameras"]):
        members = samples[f"{FRAME}-r{index}"]
        meta = json.loads(members["json"])
        T_cam_lidar = rigid_inverse(np.array(camera["T_rig_cam"])) @ T_rig_lidar
        expected = hand_projection(points, T_cam_lidar, np.array(camera["K"]), *camera["image_size"])
        sparse = schema.decode_depth_png(members["sparse.png"])
        # Depth maps are float32 metres before the PNG's 1/256 m steps (schema).
        encoded = np.round(expected.astype(np.float32).astype(np.float64) * 256) / 256
        assert np.array_equal(sparse, encoded.astype(np.float32))
        assert np.count_nonzero(sparse) > 2500 and members["dense.png"] == members["sparse.png"]
        assert members["jpg"] == (NUSCENES / camera["name"] / f"{FRAME}.jpg").read_bytes()
        assert meta["scene"] == FRAME and meta["rig"]["view"] == index and meta["rig"]["views"] == 6
        assert meta["rig"]["camera"] == camera["name"] and len(meta["rig"]["neighbours"]) == 2
        assert np.allclose(meta["T_cam_lidar"], T_cam_lidar, atol=1e-12)
        teacher, valid = schema.decode_relative_png(members["teacher.png"])
        record = meta["teacher_relative"]
        assert valid.all() and record["min"] == pytest.approx(1 / 40) and record["max"] == pytest.approx(1 / 10)
        assert teacher[0, 0] == 1.0 and teacher[0, -1] == 0.0  # near on the left, far on the right
    neighbours = {index: json.loads(samples[f"{FRAME}-r{index}"]["json"])["rig"]["neighbours"] for index in range(6)}
    assert all(index in neighbours[other] for index in neighbours for other in neighbours[index])


@needs_nuscenes
def test_a_frame_without_its_sweep_is_recorded_and_the_others_kept(cli, tmp_path):
    root = tmp_path / "rig"
    shutil.copytree(NUSCENES, root)
    for folder in root.glob("CAM_*"):
        shutil.copy(folder / f"{FRAME}.jpg", folder / "0002.jpg")
    code, stdout, err = cli(
        "convert", "rig", root, "--rig", root / "calibration.json", "--out", tmp_path / "o"
    )
    assert code == 0, err
    assert "read 1 of 2 frames (1 skipped, see " in stdout and "wrote 6 samples in 1 shard:" in stdout
    error = json.loads((tmp_path / "o" / "errors.jsonl").read_text())
    assert error["path"] == "0002" and error["stage"] == "read"
    assert "no LiDAR sweep LIDAR_TOP/0002.bin" in error["reason"]
    assert sorted(read_shard(tmp_path / "o" / "shard-000000.tar")) == [f"{FRAME}-r{index}" for index in range(6)]
    for content, why in ((b"", "empty sweep"), (b"\0" * 7, "neither N x 4 nor N x 5")):
        (root / "LIDAR_TOP" / "0002.bin").write_bytes(content)
        code, stdout, err = cli("convert", "rig", root, "--rig", root / "calibration.json", "--out", tmp_path / "o",
                                "--overwrite")  # fmt: skip
        assert code == 0 and "(1 skipped, see " in stdout, err
        assert why in json.loads((tmp_path / "o" / "errors.jsonl").read_text())["reason"]


@needs_nuscenes
def test_bad_input_is_a_one_line_error(cli, tmp_path):
    root = tmp_path / "rig"
    shutil.copytree(NUSCENES, root)
    calibration = root / "calibration.json"
    code, _, err = cli("convert", "rig", root, "--rig", calibration, "--out", tmp_path / "o", "--lidar-folder", "VELO")
    assert code == 1 and "no LiDAR folder VELO/ (--lidar-folder)" in err and err.count("\n") == 1
    (root / "LIDAR_TOP" / "stray.pcd").write_text("")
    (root / "RADAR").mkdir()
    (root / "RADAR" / "x.bin").write_bytes(b"")
    code, _, err = cli("convert", "rig", root, "--rig", calibration, "--out", tmp_path / "o")
    assert code == 1 and "cannot tell the LiDAR folder" in err and "pass --lidar-folder" in err
    shutil.rmtree(root / "RADAR")
    (root / "LIDAR_TOP" / f"{FRAME}.bin").unlink()
    code, _, err = cli("convert", "rig", root, "--rig", calibration, "--out", tmp_path / "o", "--quiet")
    assert code == 1 and err.startswith("error: no sample could be made from 1 inputs (1 of them: no LiDAR sweep")
    assert json.loads((tmp_path / "o" / "manifest.json").read_text())["totals"]["samples"] == 0
    assert "no LiDAR sweep" in (tmp_path / "o" / "errors.jsonl").read_text()
    for image in root.glob("CAM_*/*.jpg"):
        image.unlink()
    code, _, err = cli("convert", "rig", root, "--rig", calibration, "--out", tmp_path / "o2")
    assert code == 1 and "holds no frames" in err and err.count("\n") == 1


def test_bin_sweeps_of_four_and_five_columns(tmp_path):
    rng = np.random.default_rng(0)
    xyz = rng.uniform(-50, 50, (20, 3))
    kitti = np.column_stack([xyz, rng.uniform(0, 1, 20)]).astype(np.float32)  # 20 x 4 = 16 x 5: both sizes fit
    nuscenes = np.column_stack([xyz[:16], rng.uniform(0, 255, 16), np.arange(16) % 32]).astype(np.float32)
    for name, values, columns in (("kitti", kitti, 4), ("nuscenes", nuscenes, 5)):
        path = tmp_path / f"{name}.bin"
        values.tofile(path)
        sweep = read_bin_sweep(path)
        assert sweep.columns == columns and np.array_equal(sweep.points_lidar, values[:, :3])
    # Issue 24: --lidar-columns 4 on a 5-column sweep read garbage; now its misaligned intensities refuse it.
    with pytest.raises(PipelineError, match=r"read as N x 4 float32 its intensity column holds negative .* N x 5\?"):
        read_bin_sweep(tmp_path / "nuscenes.bin", "4")
    np.zeros(7, np.float32).tofile(tmp_path / "odd.bin")
    with pytest.raises(PipelineError, match="neither N x 4 nor N x 5"):
        read_bin_sweep(tmp_path / "odd.bin")
    np.zeros(8, np.float32).tofile(tmp_path / "eight.bin")
    with pytest.raises(PipelineError, match="not a whole number of 5-float32 rows"):
        read_bin_sweep(tmp_path / "eight.bin", "5")


def test_pcd_sweeps(tmp_path):
    points = np.array([[1.0, 2.0, 3.0], [-4.5, 0.25, 10.0]])
    header = "VERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH 2\nHEIGHT 1\n"
    body = "VIEWPOINT 0 0 0 1 0 0 0\nPOINTS 2\nDATA ascii\n" + "".join(f"{x} {y} {z}\n" for x, y, z in points)
    (tmp_path / "a.pcd").write_text(header + body)
    assert np.allclose(read_sweep(tmp_path / "a.pcd").points_lidar, points)
    (tmp_path / "empty.pcd").write_bytes(b"not a point cloud")
    with pytest.raises(PipelineError, match="no points could be read"):
        read_sweep(tmp_path / "empty.pcd")

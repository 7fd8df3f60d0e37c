"""`simlidar convert kitti`: the real scan, the annotated GT and the teacher's disparity."""

import io
import json

import numpy as np
import pytest
from PIL import Image
from simlidar.pipeline import schema
from simlidar.train import data

from .helpers import tar_members
from .kitti_tree import DRIVE, SIZE, kitti_depths, write_kitti_tree


def test_convert_writes_scan_ground_truth_and_teacher(cli, tmp_path):
    root = write_kitti_tree(tmp_path / "kitti")
    code, out, err = cli("convert", "kitti", root, "--out", tmp_path / "shards", "--teacher", "sidecar", "--quiet")
    assert code == 0, err
    members = tar_members(tmp_path / "shards" / "shard-000000.tar")
    key = f"train__{DRIVE}__image_02__0000000005"
    sparse, groundtruth, wall = kitti_depths(5)
    assert np.array_equal(schema.decode_depth_png(members[f"{key}.sparse.png"]), sparse)
    assert np.array_equal(schema.decode_depth_png(members[f"{key}.dense.png"]), groundtruth)
    # KITTI's PNG bytes, unchanged: eval sees the benchmark's own inputs.
    image = root / "raw" / DRIVE[:10] / DRIVE / "image_02" / "data" / "0000000005.png"
    assert members[f"{key}.png"] == image.read_bytes() and f"{key}.jpg" not in members
    assert np.asarray(Image.open(io.BytesIO(members[f"{key}.png"]))).shape == (*SIZE, 3)
    teacher, valid = schema.decode_relative_png(members[f"{key}.teacher.png"])
    # disparity 1/15 m (left) and 1/25 m (right), min-max normalised -> 1 and 0
    assert valid.all() and np.all(teacher[:, :24] == 1.0) and np.all(teacher[:, 24:] == 0.0)
    meta = json.loads(members[f"{key}.json"])
    assert meta["teacher_relative"]["min"] == pytest.approx(1 / 25) and meta["teacher_relative"]["max"] == 1 / 15
    assert meta["K"][0][0] == 721.5 and meta["counts"]["dense_pixels"] == SIZE[0] // 2 * SIZE[1]
    assert sorted({name.split(".")[0] for name in members}) == [key, key.replace("05", "06")]


def test_convert_without_a_teacher_and_the_val_selection_layout(cli, tmp_path):
    folder = tmp_path / "kitti" / "depth_selection" / "val_selection_cropped"
    sparse, groundtruth, _ = kitti_depths(0)
    stem = f"{DRIVE}_image_0000000005_image_02"
    for sub, name, depth in (
        ("velodyne_raw", stem.replace("_image_", "_velodyne_raw_", 1), sparse),
        ("groundtruth_depth", stem.replace("_image_", "_groundtruth_depth_", 1), groundtruth),
    ):
        (folder / sub).mkdir(parents=True)
        (folder / sub / f"{name}.png").write_bytes(schema.encode_depth_png(depth))
    (folder / "image").mkdir()
    rgb = np.random.default_rng(0).integers(0, 256, (*SIZE, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(folder / "image" / f"{stem}.png")
    code, _, err = cli(
        "convert", "kitti", tmp_path / "kitti", "--split", "val_selection_cropped", "--out", tmp_path / "s", "--quiet"
    )
    assert code == 0, err
    members = tar_members(tmp_path / "s" / "shard-000000.tar")
    key = f"val_selection_cropped__{stem}"
    assert set(members) == {f"{key}.{m}" for m in ("png", "sparse.png", "dense.png", "json")}
    assert members[f"{key}.png"] == (folder / "image" / f"{stem}.png").read_bytes()
    # The training loader decodes the lossless image: the very pixels of the benchmark.
    sample = next(iter(data.eval_stream([str(tmp_path / "s" / "shard-000000.tar")])))
    assert np.array_equal((sample["rgb"].numpy().transpose(1, 2, 0) * 255).round().astype(np.uint8), rgb)


def test_missing_files_are_one_line_errors(cli, tmp_path):
    root = write_kitti_tree(tmp_path / "kitti")
    (
        root / "data_depth_annotated" / "train" / DRIVE / "proj_depth" / "groundtruth" / "image_02" / "0000000006.png"
    ).unlink()
    code, _, err = cli("convert", "kitti", root, "--out", tmp_path / "shards")
    assert code == 2 and err.count("\n") == 1
    assert "0000000006.png is missing (data_depth_annotated.zip)" in err
    code, _, err = cli("convert", "kitti", tmp_path / "nowhere", "--out", tmp_path / "shards")
    assert code == 2 and "not a folder" in err
    code, _, err = cli("convert", "kitti", root, "--split", "val", "--out", tmp_path / "shards")
    assert code == 2 and "data_depth_velodyne/val is missing" in err

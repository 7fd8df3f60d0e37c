"""`simlidar convert kitti`: the real scan, the annotated GT and the teacher's disparity."""

import errno
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
    assert code == 1 and err.count("\n") == 1
    assert "0000000006.png is missing (data_depth_annotated.zip)" in err
    code, _, err = cli("convert", "kitti", tmp_path / "nowhere", "--out", tmp_path / "shards")
    assert code == 1 and "not a folder" in err
    code, _, err = cli("convert", "kitti", root, "--split", "val", "--out", tmp_path / "shards")
    assert code == 1 and "data_depth_velodyne/val is missing" in err


def shard_bytes(out):
    return {path.name: path.read_bytes() for path in sorted(out.glob("shard-*.tar"))}


def test_convert_runs_on_the_engine_resumes_and_its_output_passes_inspect_and_publish(cli, tmp_path, monkeypatch):
    from simlidar.pipeline.worker import ShardWorker

    root = write_kitti_tree(tmp_path / "kitti", frames=(5, 6, 7))
    convert = ["convert", "kitti", root, "--teacher", "sidecar", "--shard-size", "1", "--workers", "1", "--quiet"]
    reference = tmp_path / "reference"
    assert cli(*convert, "--out", reference)[0] == 0
    expected = shard_bytes(reference)
    assert len(expected) == 3

    original_run = ShardWorker.run

    def crash_on_shard_1(self, shard, store, on_input=lambda: None):
        if shard.index == 1:
            raise RuntimeError("simulated crash")
        return original_run(self, shard, store, on_input)

    out = tmp_path / "out"
    monkeypatch.setattr(ShardWorker, "run", crash_on_shard_1)
    code, _, err = cli(*convert, "--out", out)
    assert code == 1 and "1 of 3 shards failed (first: shard-000001: RuntimeError: simulated crash)" in err
    assert json.loads((out / "manifest.json").read_text())["status"] == "incomplete"
    monkeypatch.setattr(ShardWorker, "run", original_run)
    code, printed, err = cli(*convert[:-1], "--out", out)
    assert code == 0, err
    assert "read 3 of 3 frames" in printed and "wrote 3 samples in 3 shards (2 already done)" in printed
    assert shard_bytes(out) == expected

    code, printed, err = cli("convert", "kitti", root, "--out", out, "--quiet")
    assert code == 1 and "holds a different run (teacher: 'sidecar' -> ''; shard_size: 1 -> 1000)" in err
    code, printed, err = cli("generate", "--images", root, "--out", out, "--quiet")
    assert code == 1 and "holds a different run (made by `simlidar convert kitti`)" in err

    code, printed, err = cli("inspect", "--shards", out)
    assert code == 0, err
    assert "3 samples in 3 shards" in printed and "per sensor: recorded 3" in printed
    code, _, err = cli("publish", "--shards", out, "--repo", "me/kitti-train", "--dry-run")
    assert code == 0, err
    card = (out / "hub" / "README.md").read_text()
    assert "(`simlidar convert kitti`) from the KITTI depth-completion benchmark's train split" in card
    assert "| samples | 3 from 3 frames (0 skipped), 3 shards |" in card and "| `png` | the camera image" in card


def test_a_failed_overwrite_leaves_no_old_shard_beside_the_new_ones(cli, tmp_path, monkeypatch):
    """Issue 24, item 10: a failed `convert kitti --overwrite` left the old manifest and new shards
    mixed, and training used them. On the engine, --overwrite removes the old run first and a
    stop records what the new run made."""
    from simlidar.pipeline.writer import ShardWriter

    root = write_kitti_tree(tmp_path / "kitti", frames=(5, 6, 7))
    out = tmp_path / "out"
    options = ["--shard-size", "1", "--workers", "1", "--quiet"]
    assert cli("convert", "kitti", root, "--out", out, *options)[0] == 0
    old = shard_bytes(out)
    original_write = ShardWriter.write

    def full_disk_in_shard_1(self, key, members):
        if self.name == "shard-000001.tar":
            raise OSError(errno.ENOSPC, "No space left on device")
        original_write(self, key, members)

    monkeypatch.setattr(ShardWriter, "write", full_disk_in_shard_1)
    code, _, err = cli("convert", "kitti", root, "--out", out, "--teacher", "sidecar", "--overwrite", *options)
    assert code == 1 and "disk full while writing" in err and err.count("\n") == 1
    new = shard_bytes(out)
    assert list(new) == ["shard-000000.tar"] and new["shard-000000.tar"] != old["shard-000000.tar"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "incomplete" and manifest["config"]["teacher"] == "sidecar"
    assert [shard["shard"] for shard in manifest["shards"]] == ["shard-000000.tar"]
    assert "disk full" in manifest["stopped"]
    code, _, err = cli("inspect", "--shards", out)
    assert code == 1 and "the run is incomplete" in err


def test_a_damaged_frame_is_recorded_and_the_output_on_s3_has_the_bytes_of_a_local_one(cli, tmp_path, bucket):
    import fsspec

    root = write_kitti_tree(tmp_path / "kitti", frames=(5, 6, 7))
    damaged = root / "data_depth_annotated" / "train" / DRIVE / "proj_depth" / "groundtruth" / "image_02"
    (damaged / "0000000006.png").write_bytes(b"not a png")
    options = ["--teacher", "sidecar", "--shard-size", "2", "--workers", "1", "--quiet"]
    assert cli("convert", "kitti", root, "--out", tmp_path / "local", *options)[0] == 0
    error = json.loads((tmp_path / "local" / "errors.jsonl").read_text())
    assert error["path"] == f"train/{DRIVE}/image_02/0000000006" and error["stage"] == "read"
    assert "0000000006.png: not a KITTI depth PNG" in error["reason"]
    code, _, err = cli("convert", "kitti", root, "--out", f"{bucket}/kitti", *options)
    assert code == 0, err
    fs = fsspec.filesystem("s3")
    fs.invalidate_cache()
    for name in ("shard-000000.tar", "shard-000001.tar", "errors.jsonl"):
        assert fs.cat_file(f"{bucket[5:]}/kitti/{name}") == (tmp_path / "local" / name).read_bytes()
    keys = {name.split(".")[0] for name in tar_members(tmp_path / "local" / "shard-000000.tar")}
    assert keys == {f"train__{DRIVE}__image_02__0000000005"}  # frame 6 of shard 0 is skipped

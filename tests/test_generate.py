"""`simlidar generate` end to end: shards, manifest, determinism, resume, bad input."""

import errno
import hashlib
import json
import re

import numpy as np
from PIL import Image
from simlidar.pipeline import schema
from simlidar.pipeline.writer import ShardWriter

from .helpers import REPO, SIZE, generate, scene_depth, tar_members, write_photo


def test_demo_scenes_give_shards_that_the_readme_snippet_reads(cli, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out" / "demo"
    code, _, err = cli("generate", "--images", REPO / "examples" / "scenes", "--out", out, "--views", "2")
    assert code == 0, err
    members = tar_members(out / "shard-000000.tar")
    keys = sorted({name.split(".", 1)[0] for name in members})
    assert keys == ["corridor-v0", "corridor-v1", "street_kitti-v0", "street_kitti-v1", "yard-v0", "yard-v1"]
    meta = json.loads(members["street_kitti-v0.json"])
    assert meta["sensor"]["name"] == "hdl64" and meta["mount"]["name"] == "kitti"
    assert meta["image_size"] == [1242, 375] and meta["intrinsics_source"] == "sidecar"
    sparse = schema.decode_depth_png(members["street_kitti-v0.sparse.png"])
    dense = schema.decode_depth_png(members["street_kitti-v0.dense.png"])
    assert 10_000 < np.count_nonzero(sparse) == meta["counts"]["sparse_pixels"]
    # Returns agree with what the camera sees (to the depth range of the pixel's 3x3
    # neighbourhood: a road pixel at 30 m spans 0.8 m) or lie behind it (see-through),
    # never in front of it (that would be a rubber sheet).
    windows = np.lib.stride_tricks.sliding_window_view(np.pad(dense, 1, mode="edge"), (3, 3))
    nearest, farthest = windows.min(axis=(2, 3))[sparse > 0], windows.max(axis=(2, 3))[sparse > 0]
    returns = sparse[sparse > 0]
    assert ((returns >= nearest - 0.05) & (returns <= farthest + 0.05)).mean() > 0.97
    assert 0.001 < (returns > farthest + 0.3).mean() < 0.05
    assert (returns < nearest - 0.3).sum() == 0
    assert members["yard-v0.jpg"] == (REPO / "examples" / "scenes" / "yard.jpg").read_bytes()

    snippet = re.search(r"```python\n(.*?)```", (REPO / "README.md").read_text(), re.S).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(snippet, "README.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 6 and printed[2].startswith("street_kitti-v0 (375, 1242, 3)")

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["totals"]["samples"] == 6
    assert manifest["shards"][0]["sha256"] == hashlib.sha256((out / "shard-000000.tar").read_bytes()).hexdigest()
    assert manifest["config"]["views"] == 2 and manifest["config"]["sensor"] == "hdl64"


def test_same_seed_gives_identical_bytes_and_another_seed_another_jitter(cli, photos, tmp_path):
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        assert generate(cli, photos, tmp_path / name, "--seed", seed, "--save-points")[0] == 0
    first, second, other = ((tmp_path / n / "shard-000000.tar").read_bytes() for n in "abc")
    assert first == second
    assert first != other
    meta_a = json.loads(tar_members(tmp_path / "a" / "shard-000000.tar")["img0-v0.json"])
    meta_c = json.loads(tar_members(tmp_path / "c" / "shard-000000.tar")["img0-v0.json"])
    assert meta_a["T_cam_lidar"] != meta_c["T_cam_lidar"]
    assert meta_a["azimuth_phase_deg"] != meta_c["azimuth_phase_deg"]


def test_views_differ_and_points_are_stored(cli, photos, tmp_path):
    assert generate(cli, photos, tmp_path / "out", "--views", "2", "--save-points")[0] == 0
    members = tar_members(tmp_path / "out" / "shard-000000.tar")
    view0, view1 = (json.loads(members[f"img1-v{v}.json"]) for v in (0, 1))
    assert view0["T_cam_lidar"] != view1["T_cam_lidar"]
    points = np.load(__import__("io").BytesIO(members["img1-v0.points.npy"]))
    assert points.shape == (view0["counts"]["points"], 7) and points.dtype == np.float32
    assert view0["points_layout"]["columns"] == ["x", "y", "z", "intensity", "ring", "time", "azimuth"]
    assert len(view0["points_layout"]["units"]) == 7 and "ego_motion" not in view0


def test_resume_redoes_only_missing_shards(cli, photos, tmp_path):
    out = tmp_path / "out"
    assert generate(cli, photos, out, "--shard-size", "1")[0] == 0
    reference = {path.name: path.read_bytes() for path in out.glob("shard-*.tar")}
    kept = out / "shard-000000.tar"
    kept_mtime = kept.stat().st_mtime_ns
    (out / "shard-000001.stats.json").unlink()
    (out / "shard-000002.tar").unlink()
    (out / "shard-000001.tar.tmp").write_bytes(b"partial")
    code, out_text, _ = cli(
        "generate", "--images", photos, "--out", out, "--fov", "90", "--shard-size", "1", "--workers", "1",
        "--teacher", "sidecar",
    )
    assert code == 0 and "(1 already done)" in out_text
    assert {path.name: path.read_bytes() for path in out.glob("shard-*.tar")} == reference
    assert kept.stat().st_mtime_ns == kept_mtime
    assert not list(out.glob("*.tmp"))


def test_bad_inputs_are_skipped_and_recorded(cli, photos, tmp_path):
    (photos / "empty.jpg").write_bytes(b"")
    (photos / "notes.jpg").write_text("this is not a picture")
    (photos / "truncated.jpg").write_bytes((photos / "img0.jpg").read_bytes()[:300])
    Image.new("RGB", (1, 1)).save(photos / "tiny.png")
    Image.new("RGB", (SIZE[1], SIZE[0])).save(photos / "nodepth.png")
    (photos / "folder.jpg").mkdir()
    code, _, err = generate(cli, photos, tmp_path / "out")
    assert code == 0, err
    errors = {json.loads(line)["path"]: json.loads(line) for line in (tmp_path / "out" / "errors.jsonl").open()}
    assert set(errors) == {"empty.jpg", "notes.jpg", "truncated.jpg", "tiny.png", "nodepth.png"}
    assert errors["empty.jpg"]["reason"] == "empty file"
    assert "not a readable image" in errors["notes.jpg"]["reason"]
    assert "1x1" in errors["tiny.png"]["reason"]
    assert errors["nodepth.png"]["stage"] == "teacher" and "`teacher`" in errors["nodepth.png"]["reason"]
    keys = {name.split(".")[0] for name in tar_members(tmp_path / "out" / "shard-000000.tar")}
    assert keys == {"img0-v0", "img1-v0", "img2-v0"}


def test_same_names_in_different_folders_do_not_collide(cli, tmp_path):
    photos = tmp_path / "photos"
    write_photo(photos / "a", "0001.jpg", scene_depth(0))
    write_photo(photos / "b", "0001.jpg", scene_depth(1))
    write_photo(photos, "x y.jpg", scene_depth(2))
    write_photo(photos, "x_y.jpg", scene_depth(3))
    assert generate(cli, photos, tmp_path / "out")[0] == 0
    members = tar_members(tmp_path / "out" / "shard-000000.tar")
    keys = sorted(name[: -len(".json")] for name in members if name.endswith(".json"))
    assert keys[:2] == ["a__0001-v0", "b__0001-v0"]
    assert len(keys) == 4 and all(schema.is_valid_key(key) for key in keys)
    sources = sorted(json.loads(members[f"{key}.json"])["source_path"] for key in keys)
    assert sources == ["a/0001.jpg", "b/0001.jpg", "x y.jpg", "x_y.jpg"]


def test_exif_rotated_photo_is_stored_upright(cli, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    upright = np.zeros((SIZE[0], SIZE[1], 3), np.uint8)
    upright[:, : SIZE[1] // 2] = 255
    stored = Image.fromarray(upright).rotate(90, expand=True)  # what a sideways camera stores
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    stored.save(photos / "phone.jpg", exif=exif, quality=95)
    (photos / "phone.depth.png").write_bytes(schema.encode_depth_png(scene_depth()))
    assert generate(cli, photos, tmp_path / "out")[0] == 0
    members = tar_members(tmp_path / "out" / "shard-000000.tar")
    rgb = np.asarray(Image.open(__import__("io").BytesIO(members["phone-v0.jpg"])))
    assert rgb.shape == (SIZE[0], SIZE[1], 3)
    assert rgb[:, :10].mean() > 200 and rgb[:, -10:].mean() < 50
    assert json.loads(members["phone-v0.json"])["image_reencoded"] is True


def test_unknown_sensor_lists_known_sensors(cli, photos, tmp_path):
    code, _, err = generate(cli, photos, tmp_path / "out", "--sensor", "hdl65")
    assert code == 2 and "Error: Invalid value for '--sensor': unknown sensor 'hdl65' (did you mean hdl64" in err
    assert "hdl64, hdl64-kitti, mid40" in err
    assert not (tmp_path / "out").exists()


def test_missing_folder_and_missing_depth_are_one_line_errors(cli, tmp_path):
    code, _, err = generate(cli, tmp_path / "nowhere", tmp_path / "out")
    assert code == 1 and "does not exist" in err and err.count("\n") == 1
    bare = tmp_path / "bare"
    bare.mkdir()
    Image.new("RGB", (64, 48)).save(bare / "a.jpg")
    code, _, err = generate(cli, bare, tmp_path / "out")
    assert code == 1 and "depth beside it" in err and "--teacher" in err and err.count("\n") == 1


def test_photo_without_intrinsics_says_which_option_to_use(cli, photos, tmp_path):
    code, _, err = cli(
        "generate", "--images", photos, "--out", tmp_path / "out", "--quiet", "--intrinsics-policy", "exif,teacher"
    )
    assert code == 1 and "no sample could be made" in err
    reasons = [json.loads(line)["reason"] for line in (tmp_path / "out" / "errors.jsonl").open()]
    assert len(reasons) == 3
    assert all("no EXIF" in reason and "`fov_deg` DEG or `intrinsics`" in reason for reason in reasons)


def test_a_different_run_in_the_output_is_refused_unless_overwrite(cli, photos, tmp_path):
    out = tmp_path / "out"
    assert generate(cli, photos, out)[0] == 0
    before = (out / "shard-000000.tar").read_bytes()
    code, _, err = generate(cli, photos, out, "--seed", "7", "--sensor", "vlp16")
    assert code == 1 and "different run" in err and "seed: 0 -> 7" in err and "--overwrite" in err
    assert (out / "shard-000000.tar").read_bytes() == before
    (out / "my_notes.txt").write_text("keep me")
    assert generate(cli, photos, out, "--seed", "7", "--sensor", "vlp16", "--overwrite")[0] == 0
    assert (out / "shard-000000.tar").read_bytes() != before
    assert (out / "my_notes.txt").read_text() == "keep me"


def test_a_folder_of_other_files_is_not_used_as_output(cli, photos, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    code, _, err = generate(cli, photos, out)
    assert code == 1 and "not empty" in err
    assert (out / "thesis.tex").read_text() == "precious"


def test_full_disk_keeps_finished_shards_and_leaves_no_partial_file(cli, photos, tmp_path, monkeypatch):
    out = tmp_path / "out"
    original_write = ShardWriter.write

    def write_until_full(self, key, members):
        if self.name == "shard-000001.tar":
            raise OSError(errno.ENOSPC, "No space left on device")
        original_write(self, key, members)

    monkeypatch.setattr(ShardWriter, "write", write_until_full)
    code, _, err = generate(cli, photos, out, "--shard-size", "1")
    assert code == 1 and "disk full" in err and "re-run the same command" in err
    assert (out / "shard-000000.tar").is_file() and (out / "shard-000000.stats.json").is_file()
    assert not list(out.glob("shard-000001*"))
    monkeypatch.setattr(ShardWriter, "write", original_write)
    code, text, _ = cli(
        "generate", "--images", photos, "--out", out, "--fov", "90", "--shard-size", "1", "--workers", "1",
        "--teacher", "sidecar",
    )
    assert code == 0 and "(1 already done)" in text


def test_bad_option_values_are_refused(cli, photos, tmp_path):
    code, _, err = generate(cli, photos, tmp_path / "out", "--views", "0")
    assert code == 2 and "--views must be at least 1" in err
    code, _, err = generate(cli, photos, tmp_path / "out", "--intrinsics", "700,700,320")
    assert code == 2 and "fx,fy,cx,cy" in err


def test_interrupted_run_keeps_finished_shards_and_resumes(cli, photos, tmp_path, monkeypatch):
    out = tmp_path / "out"
    original_write = ShardWriter.write

    def interrupt_in_second_shard(self, key, members):
        if self.name == "shard-000001.tar":
            raise KeyboardInterrupt
        original_write(self, key, members)

    monkeypatch.setattr(ShardWriter, "write", interrupt_in_second_shard)
    code, _, err = generate(cli, photos, out, "--shard-size", "1")
    assert code == 130 and "interrupted" in err and "re-run the same command" in err
    left = sorted(path.name for path in out.iterdir())
    assert left == [
        "README.md", "errors.jsonl", "generate.log", "inputs.jsonl", "manifest.json", "shard-000000.stats.json",
        "shard-000000.tar",
    ]  # fmt: skip
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "incomplete" and manifest["stopped"] == "KeyboardInterrupt"
    assert manifest["totals"]["samples"] == 1
    assert "run stopped: KeyboardInterrupt" in (out / "generate.log").read_text()
    monkeypatch.setattr(ShardWriter, "write", original_write)
    assert generate(cli, photos, out, "--shard-size", "1")[0] == 0
    assert json.loads((out / "manifest.json").read_text())["totals"]["samples"] == 3

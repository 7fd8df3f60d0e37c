"""Generation you can trust, round 3 (issue 27): a shard is done only for the files it was made
from, no value or file size sinks a shard, and what a sample's json counts is what its PNG holds.
Case numbers are the issue's; `10x` are the items of its tenth."""

import hashlib
import io
import json
import os
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from simlidar.pipeline import schema
from simlidar.sensors import MOUNTS, mount_pose
from simlidar.sensors.catalog import CATALOG_DIR

from .helpers import scene_depth as wall_depth
from .helpers import tar_members

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
NUSCENES = DATA / "nuscenes_frame"
SIZE = (96, 160)
K_GOOD = {"fx": 100.0, "fy": 100.0, "cx": 79.5, "cy": 47.5}


def npy_photo(folder, name, depth, seed=0):
    """A JPEG with its depth as a float32 .depth.npy sidecar (any values)."""
    folder.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(seed).integers(40, 220, size=(*SIZE, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(folder / name, quality=90)
    np.save(folder / f"{name.rsplit('.', 1)[0]}.depth.npy", np.asarray(depth, np.float32))
    return folder / name


def photo_folder(tmp_path, count, name="photos"):
    folder = tmp_path / name
    for index in range(count):
        npy_photo(folder, f"p{index}.jpg", wall_depth(index), seed=index)
    return folder


def generate(cli, photos, out, *extra):
    """An in-process run on small photos and a 16-beam sensor, one photo per shard."""
    options = ("--fov", "90", "--teacher", "sidecar", "--workers", "1", "--shard-size", "1", "--sensor", "vlp16")
    return cli("generate", "--images", photos, "--out", out, *options, *extra)


def read_errors(out):
    return {json.loads(line)["path"]: json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()}


def samples_of(out):
    """key -> {member: bytes} of every sample in every shard of `out`."""
    samples = {}
    for shard in sorted(out.glob("shard-*.tar")):
        for name, data in tar_members(shard).items():
            key, _, member = name.partition(".")
            samples.setdefault(key, {})[member] = data
    return samples


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


# Case 1: a sensor file, a --mount file and a --rig file are part of the run: editing one between
# a kill and the resume, or after a finished run, is refused like a changed option, and the
# manifest is left as it was.
def test_a_changed_sensor_mount_or_rig_file_is_refused_like_a_changed_option(cli, tmp_path):
    photos = photo_folder(tmp_path, 2)
    sensor, mount, rig = tmp_path / "my16.toml", tmp_path / "mount.json", tmp_path / "two.toml"
    shutil.copy(CATALOG_DIR / "vlp16.toml", sensor)
    mount.write_text(json.dumps({"T_cam_lidar": mount_pose(MOUNTS["kitti"]).tolist()}))
    rig.write_text("[[views]]\nyaw = -0.2\nfov = 0.6\n[[views]]\nyaw = 0.2\nfov = 0.6\n")
    out = tmp_path / "out"
    files = ("--sensor", sensor, "--mount", mount, "--rig", rig)
    assert generate(cli, photos, out, *files, "--quiet")[0] == 0
    recorded = json.loads((out / "manifest.json").read_text())["config_files"]
    assert recorded["sensor"] == {"path": str(sensor), "sha256": sha256(sensor)}
    assert recorded["mount"] == {"path": str(mount), "sha256": sha256(mount)}
    assert recorded["rig"] == {"path": str(rig), "sha256": sha256(rig)}
    higher = mount_pose(MOUNTS["kitti"])
    higher[1, 3] -= 0.1  # 10 cm up
    edits = {
        sensor: sensor.read_text().replace("max_m = 100.0", "max_m = 90.0"),
        mount: json.dumps({"T_cam_lidar": higher.tolist()}),
        rig: rig.read_text().replace("0.6", "0.5"),
    }
    for role, path in (("sensor", sensor), ("mount", mount), ("rig", rig)):
        if role == "mount":  # the sensor after a finished run; the others after a kill left shard 1 unfinished
            (out / "shard-000001.stats.json").unlink()
        manifest = (out / "manifest.json").read_bytes()
        before, text = sha256(path), path.read_text()
        path.write_text(edits[path])
        code, _, err = generate(cli, photos, out, *files, "--quiet")
        assert code == 1 and err == (
            f"error: {out} holds a different run (the {role} file {path} changed since that run (sha256 "
            f"{before[:12]} then, {sha256(path)[:12]} now)); use another --out, or pass --overwrite to replace it\n"
        )
        assert (out / "manifest.json").read_bytes() == manifest
        path.write_text(text)
    assert generate(cli, photos, out, *files, "--quiet")[0] == 0  # the files as they were: it resumes
    assert sorted(samples_of(out)) == [f"p{index}-r{view}" for index in range(2) for view in range(2)]


# Case 2: a sidecar edited between a kill and the resume (same names, even the same size and
# modification time) makes its shard again, as an uninterrupted run with the new files makes it.
def test_a_shard_whose_inputs_changed_is_made_again_as_a_fresh_run_makes_it(cli, tmp_path):
    photos = photo_folder(tmp_path, 3)
    out, fresh = tmp_path / "out", tmp_path / "fresh"
    assert generate(cli, photos, out, "--quiet")[0] == 0
    first = (out / "shard-000000.tar").read_bytes()
    depth = photos / "p1.depth.npy"
    stamp = depth.stat().st_mtime_ns
    np.save(depth, wall_depth(7))
    os.utime(depth, ns=(stamp, stamp))
    (photos / "p2.json").write_text(json.dumps(K_GOOD))  # a sidecar that was not there
    code, _, err = generate(cli, photos, out, "--quiet")
    assert code == 0 and err == (
        "made shard-000001 again: 1 of its inputs changed since it was made (p1.jpg)\n"
        "made shard-000002 again: 1 of its inputs changed since it was made (p2.jpg)\n"
    )
    assert (
        "shard-000001: 1 of its inputs changed since it was made (p1.jpg); making it again"
        in (out / "generate.log").read_text()
    )
    assert generate(cli, photos, fresh, "--quiet")[0] == 0
    for index in range(3):
        name = f"shard-00000{index}.tar"
        assert (out / name).read_bytes() == (fresh / name).read_bytes(), name
    assert (out / "shard-000000.tar").read_bytes() == first
    assert json.loads(samples_of(out)["p2-v0"]["json"])["intrinsics_source"] == "sidecar"


# Case 2: an input skipped for a bad sidecar and then fixed is made on the re-run, and its
# errors.jsonl line goes.
def test_an_input_fixed_after_it_was_skipped_is_made_and_its_error_goes(cli, tmp_path):
    photos = photo_folder(tmp_path, 2)
    np.save(photos / "p1.depth.npy", np.full((10, 10), 12.0, np.float32))
    out = tmp_path / "out"
    assert generate(cli, photos, out, "--quiet")[0] == 0
    assert read_errors(out)["p1.jpg"]["reason"] == (
        "p1.depth.npy is 10x10 but the photo is 160x96; depth must match the photo as displayed (after EXIF rotation)"
    )
    np.save(photos / "p1.depth.npy", wall_depth(1))
    code, _, err = generate(cli, photos, out)
    assert code == 0 and "made shard-000001 again: 1 of its inputs changed since it was made (p1.jpg)" in err
    assert (out / "errors.jsonl").read_text() == "" and sorted(samples_of(out)) == ["p0-v0", "p1-v0"]
    assert json.loads((out / "manifest.json").read_text())["totals"]["images_skipped"] == 0


def png_header_only(path, width, height):
    """A PNG whose header declares width x height and that holds nothing else (a decoder fails)."""
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((1, 1), np.uint16)).save(buffer, format="PNG")
    header = bytearray(buffer.getvalue()[:33])
    header[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    path.write_bytes(bytes(header))


def npy_header_only(path, shape):
    """A .npy whose header declares a float32 array of `shape` and that holds no data."""
    with open(path, "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, {"descr": "<f4", "fortran_order": False, "shape": shape})


# Cases 3, 4 and 10 (photo.json, both sidecars): nothing an input holds sinks its shard. Depth
# beyond a physical range is no value, counted; a sidecar is checked by its header's size before
# it is decoded; a photo.json is bounded (size, numbers, nesting, a device); each problem is one
# errors.jsonl line and the good photo of the same shard is written.
def test_no_value_or_file_size_an_input_holds_sinks_its_shard(cli, tmp_path):
    photos = tmp_path / "photos"
    sky = wall_depth()
    sky[:4, :10], sky[4:6, :10] = 1e18, np.finfo(np.float32).max  # markers of "sky" some tools write
    npy_photo(photos, "sky.jpg", sky)
    for name in ("bomb", "huge", "large", "both", "digits", "deep", "device", "partial"):
        npy_photo(photos, f"{name}.jpg", wall_depth(1))
    png_header_only(photos / "bomb.depth.png", 30000, 30000)
    (photos / "bomb.depth.npy").unlink()
    npy_header_only(photos / "huge.depth.npy", (100000, 100000))
    npy_header_only(photos / "large.depth.npy", (12000, 12000))
    (photos / "both.depth.png").write_bytes(schema.encode_depth_png(wall_depth(2)))
    (photos / "digits.json").write_text(json.dumps(K_GOOD).replace("100.0", "1" * 400, 1))
    (photos / "deep.json").write_text("[" * 20000 + "]" * 20000)
    (photos / "device.json").symlink_to("/dev/null")
    npy_photo(photos, "fifo.jpg", wall_depth(1))
    (photos / "fifo.depth.npy").unlink()
    os.mkfifo(photos / "fifo.depth.npy")
    (photos / "partial.json").write_text(json.dumps({"fx": 100.0, "cx": 79.5, "cy": 47.5}))
    npy_photo(photos, "bulky.jpg", wall_depth(1))
    (photos / "bulky.json").write_text(json.dumps({**K_GOOD, "notes": "x" * 100000}))
    out = tmp_path / "out"
    code, _, err = generate(cli, photos, out, "--shard-size", "20", "--quiet")
    assert code == 0, err
    assert {path: (error["stage"], error["reason"]) for path, error in read_errors(out).items()} == {
        "bomb.jpg": ("teacher", "bomb.depth.png is 30000x30000 but the photo is 160x96; depth must match the photo "
                     "as displayed (after EXIF rotation)"),
        "huge.jpg": ("teacher", "huge.depth.npy is 100000x100000 but the photo is 160x96; depth must match the "
                     "photo as displayed (after EXIF rotation)"),
        "large.jpg": ("teacher", "large.depth.npy is 12000x12000 but the photo is 160x96; depth must match the "
                      "photo as displayed (after EXIF rotation)"),
        "both.jpg": ("teacher", "both both.depth.png and both.depth.npy lie beside both.jpg: keep the one that "
                     "holds its depth"),
        "digits.jpg": ("intrinsics", "digits.json: fx is an integer of 400 digits, not pixels"),
        "deep.jpg": ("intrinsics", "deep.json: nested deeper than JSON can be read; write fx, fy, cx, cy"),
        "device.jpg": ("intrinsics", "device.json: not a regular file (a FIFO, a device or a folder); make it a "
                       "JSON file"),
        "partial.jpg": ("intrinsics", "partial.json: lacks fy; write fx, fy, cx, cy in pixels"),
        "fifo.jpg": ("teacher", "fifo.depth.npy: not a regular file (a FIFO, a device or a folder); make it a file"),
        "bulky.jpg": ("intrinsics", "bulky.json: 100063 bytes; an intrinsics file is a small JSON object"),
    }  # fmt: skip
    (sample,) = samples_of(out).values()
    meta = json.loads(sample["json"])
    assert meta["source_path"] == "sky.jpg" and meta["teacher"]["conversion"]["outside_physical_range_pixels"] == 60
    dense = schema.decode_depth_png(sample["dense.png"])
    assert not dense[:6, :10].any() and (dense[10:30] == 12.0).all()
    assert meta["counts"]["points"] > 1000


# Case 3: whatever fails on one input (here the numba error a 1e18 m depth used to raise in the
# mesh stage) is its errors.jsonl line, naming the stage; the rest of the shard is written.
def test_an_unforeseen_failure_on_one_input_is_its_error_line(cli, tmp_path, monkeypatch):
    from simlidar.pipeline.stages import target

    photos = photo_folder(tmp_path, 3)
    original = target.depth_grid_scene

    def fails_on_the_second_photo(depth, *args, **kwargs):
        if depth[35, 45] == 4.5:  # p1's box
            raise SystemError("CPUDispatcher(<function _cast_rays at 0x7f3a2c1b9e50>) returned a result") from (
                ZeroDivisionError("division by zero")
            )
        return original(depth, *args, **kwargs)

    monkeypatch.setattr(target, "depth_grid_scene", fails_on_the_second_photo)
    out = tmp_path / "out"
    code, _, err = generate(cli, photos, out, "--shard-size", "3", "--quiet")
    assert code == 0, err
    assert read_errors(out) == {
        "p1.jpg": {
            "path": "p1.jpg",
            "stage": "mesh",
            "reason": "SystemError: CPUDispatcher() returned a result (ZeroDivisionError: division by zero)",
        }
    }
    assert sorted(samples_of(out)) == ["p0-v0", "p2-v0"]


# Case 5: returns beyond the 16-bit PNG's 255.996 m are not in sparse.png, and the json counts
# what the PNG holds (and, apart, those it could not): inspect passes.
def test_returns_beyond_the_png_range_are_counted_apart_and_json_and_png_agree(cli, tmp_path):
    far = (CATALOG_DIR / "mid40.toml").read_text().replace("max_m = 260.0", "max_m = 400.0")
    (tmp_path / "far400.toml").write_text(far)
    depth = np.full(SIZE, 300.0, np.float32)
    depth[30:70, 40:90] = 100.0
    npy_photo(tmp_path / "photos", "far.jpg", depth)
    out = tmp_path / "out"
    extra = ("--sensor", tmp_path / "far400.toml", "--detection-range", "0", "--quiet")
    assert generate(cli, tmp_path / "photos", out, *extra)[0] == 0
    sample = samples_of(out)["far-v0"]
    counts = json.loads(sample["json"])["counts"]
    sparse = schema.decode_depth_png(sample["sparse.png"])
    assert counts["sparse_pixels"] == np.count_nonzero(sparse) > 500
    assert counts["sparse_pixels_beyond_encoding"] > 300 and sparse.max() < 101
    assert cli("inspect", "--shards", out)[0] == 0


# Case 10 (empty samples): an input whose scan gives no point in the image is skipped and
# recorded, as the README promises; inspect refuses an empty sample that is there anyway.
def test_an_input_whose_scan_gives_no_point_is_recorded_not_written(cli, tmp_path):
    photos = photo_folder(tmp_path, 2)
    out = tmp_path / "out"
    code, _, err = generate(cli, photos, out, "--detection-range", "1e-9", "--quiet")
    assert code == 1 and err == (
        "error: no sample could be made from 2 inputs (2 of them: no LiDAR return lands in the image in any of "
        f"its 1 samples); see {out}/errors.jsonl\n"
    )
    assert read_errors(out)["p0.jpg"]["stage"] == "scan" and not samples_of(out)
    identity = tmp_path / "identity.json"
    identity.write_text(json.dumps({"T_cam_lidar": np.eye(4).tolist()}))
    for extra in (("--mount", identity), ("--mesh-stride", "100000")):
        assert generate(cli, photos, tmp_path / "o", *extra, "--overwrite", "--quiet")[0] == 1
        assert {error["stage"] for error in read_errors(tmp_path / "o").values()} == {"scan"}
    code, _, err = generate(cli, photos, tmp_path / "o", "--range-noise", "inf", "--quiet")
    assert code == 2 and err == "error: --range-noise must be a finite number of metres, 0 or more\n"
    code, _, err = generate(cli, photos, out, "--overwrite", "--quiet")
    assert code == 0, err
    _empty_a_sample(out / "shard-000001.tar", "p1-v0", out / "manifest.json")
    code, _, err = cli("inspect", "--shards", out)
    assert code == 1 and "problem: shard-000001.tar: p1-v0: no sparse pixel: an empty sample" in err


def _empty_a_sample(shard, key, manifest_path):
    """Rewrite `shard` with `key`'s sparse.png empty and its json saying so; the manifest follows."""
    samples = {}
    with tarfile.open(shard) as tar:
        for member in tar.getmembers():
            samples[member.name] = tar.extractfile(member).read()
    meta = json.loads(samples[f"{key}.json"])
    meta["counts"]["sparse_pixels"] = 0
    samples[f"{key}.json"] = json.dumps(meta).encode()
    samples[f"{key}.sparse.png"] = schema.encode_depth_png(np.zeros(SIZE, np.float32))
    with tarfile.open(shard, "w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in samples.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    manifest = json.loads(manifest_path.read_text())
    entry = next(entry for entry in manifest["shards"] if entry["shard"] == shard.name)
    entry.update(sha256=sha256(shard), bytes=shard.stat().st_size)
    manifest_path.write_text(json.dumps(manifest))


# Case 10 (empty views): a view of a rig that sees no return is not written; the others are,
# and the shard's stats name it.
def test_a_rig_view_without_a_return_is_left_out_and_named(cli, tmp_path):
    depth = wall_depth()
    depth[:, 64:] = 0.0  # nothing right of the photo's middle
    npy_photo(tmp_path / "photos", "half.jpg", depth)
    out = tmp_path / "out"
    assert generate(cli, tmp_path / "photos", out, "--rig", "virtual", "--quiet")[0] == 0
    assert sorted(samples_of(out)) == ["half-r0", "half-r1"]
    stats = json.loads((out / "shard-000000.stats.json").read_text())
    assert stats["empty_samples"] == ["half-r2"] and stats["errors"] == []
    assert json.loads((out / "manifest.json").read_text())["totals"]["empty_samples_left_out"] == 1


# Case 10: the disk filling while the final manifest is written stops the run with one line, and
# the stop is recorded where the running manifest lies.
def test_a_full_disk_at_the_final_manifest_is_one_line_and_recorded(cli, tmp_path, monkeypatch):
    import errno

    from simlidar.pipeline.output.store import LocalStore

    original = LocalStore.write_atomically

    def full_at_the_manifest(self, name, data):
        if name == "manifest.json" and b'"finished_at"' in data:
            raise OSError(errno.ENOSPC, "No space left on device")
        original(self, name, data)

    monkeypatch.setattr(LocalStore, "write_atomically", full_at_the_manifest)
    out = tmp_path / "out"
    code, _, err = generate(cli, photo_folder(tmp_path, 2), out, "--quiet")
    assert code == 1 and err == (
        f"error: disk full while writing {out}/manifest.json; every finished shard is kept: free space, then "
        "re-run the same command to record the run\n"
    )
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "incomplete" and manifest["stopped"] == f"disk full while writing {out}/manifest.json"
    assert "ERROR run stopped: disk full while writing" in (out / "generate.log").read_text()
    assert not list(out.glob("*.tmp")) and len(list(out.glob("shard-*.tar"))) == 2
    monkeypatch.setattr(LocalStore, "write_atomically", original)
    assert generate(cli, tmp_path / "photos", out, "--quiet")[0] == 0
    assert json.loads((out / "manifest.json").read_text())["status"] == "complete"


OUSTER = DATA / "ouster" / "OS-1-128_v2.3.0_1024x10.json"


def _damage(metadata: dict, how: str) -> dict:
    damaged = json.loads(json.dumps(metadata))
    if how == "null angle":
        damaged["beam_altitude_angles"][3] = None
    elif how == "string angle":
        damaged["beam_azimuth_angles"][0] = "3.1"
    elif how == "section as a string":
        damaged["data_format"] = "1024x10"
    elif how == "nested section as a string":
        damaged["beam_intrinsics"] = "see the manual"
    elif how == "three-item column window":
        damaged["data_format"]["column_window"] = [0, 511, 1023]
    elif how == "huge integer":
        damaged["lidar_origin_to_beam_origin_mm"] = int("9" * 400)
    return damaged


# Case 7: structurally damaged Ouster metadata is one line naming the field, not a traceback.
@pytest.mark.skipif(not OUSTER.is_file(), reason="needs ../shared/data/ouster/")
@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("null angle", "beam_altitude_angles[3] must be a finite number, got null"),
        ("string angle", 'beam_azimuth_angles[0] must be a finite number, got "3.1"'),
        ("section as a string", 'data_format must be an object, got "1024x10"'),
        ("nested section as a string", 'beam_intrinsics must be an object, got "see the manual"'),
        ("three-item column window", "column_window must be [first, last] column numbers, got [0, 511, 1023]"),
        ("huge integer", "lidar_origin_to_beam_origin_mm[0] must be a finite number, got 9999"),
    ],
)
def test_damaged_ouster_metadata_is_one_line_naming_the_field(cli, tmp_path, how, message):
    damaged = tmp_path / "meta.json"
    damaged.write_text(json.dumps(_damage(json.loads(OUSTER.read_text()), how)))
    code, _, err = cli("sensors", "import", "ouster", damaged, "--out", tmp_path / "os.toml")
    assert code == 1 and err.startswith(f"error: meta.json: {message}") and err.count("\n") == 1, err
    assert not (tmp_path / "os.toml").exists()


# Cases 10 (sensor and rig files): a sensor file that is not UTF-8, a folder or a FIFO, and a rig
# file with views that are not tables or a yaw that is not a number are one line each.
def test_bad_sensor_and_rig_files_are_one_line_each(cli, tmp_path):
    photos = photo_folder(tmp_path, 1)
    latin = tmp_path / "latin.toml"
    latin.write_bytes((CATALOG_DIR / "vlp16.toml").read_bytes().replace(b"Velodyne", b"V\xe9lodyne", 1))
    (tmp_path / "folder.toml").mkdir()
    os.mkfifo(tmp_path / "pipe.toml")
    (tmp_path / "views.toml").write_text("views = 3\n")
    (tmp_path / "nan.toml").write_text("[[views]]\nyaw = nan\nfov = 0.5\n[[views]]\nyaw = 0.2\nfov = 0.5\n")
    huge = np.eye(4).tolist()
    huge[0][3] = int("9" * 400)
    (tmp_path / "huge.json").write_text(json.dumps({"T_cam_lidar": huge}))
    cases = {
        ("--sensor", "latin.toml"): "cannot read sensor file {}: not UTF-8 text (invalid continuation byte at byte",
        ("--sensor", "folder.toml"): "cannot read sensor file {}: it is a folder; give the file itself",
        ("--sensor", "pipe.toml"): "cannot read sensor file {}: it is not a regular file (a FIFO, socket or device)",
        ("--rig", "views.toml"): "rig file {}: views must be [[views]] tables (yaw, fov), got 3",
        ("--rig", "nan.toml"): "rig file {}: view 0 has a yaw or fov that is not a finite number",
        ("--mount", "huge.json"): "--mount: {}: T_cam_lidar must be 4 rows of 4 finite numbers",
    }
    for (option, name), message in cases.items():
        code, _, err = generate(cli, photos, tmp_path / "out", option, tmp_path / name, "--quiet")
        assert code == 1 and err.startswith("error: " + message.format(tmp_path / name)) and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


# Case 10 (--plot): a picture path that cannot be written is refused before any work.
def test_a_plot_path_that_cannot_be_written_is_refused_before_the_work(cli, tmp_path):
    for plot, why in (
        (tmp_path / "no" / "such" / "os1.png", f"the folder {tmp_path}/no/such does not exist; make it first"),
        (tmp_path / "os1", "give a picture file name ending in .png or .jpg"),
        (tmp_path / "os1.toml", "give a picture file name ending in .png or .jpg"),
    ):
        code, out, err = cli("sensors", "show", "os1", "--plot", plot)
        assert code == 2 and out == "" and err == f"error: --plot {plot}: {why}\n"
        code, out, err = cli("fidelity", "--kitti-object", tmp_path / "none", "--plot", plot)
        assert code == 2 and err == f"error: --plot {plot}: {why}\n"


# Case 10 (TIFF): grey of more than 8 bits keeps the range its values use.
def test_grey_tiffs_keep_their_range(tmp_path):
    from simlidar.pipeline.sources.photos import load_image

    ramp = np.tile(np.linspace(0, 200, 64), (16, 1))
    for mode, values in (("I", ramp.astype(np.int32)), ("F", ramp.astype(np.float32))):
        Image.fromarray(values, mode).save(tmp_path / f"{mode}.tif")
        grey = load_image(tmp_path / f"{mode}.tif", 95).rgb[..., 0]
        assert grey[0, 0] == 0 and grey[0, -1] == 200, mode  # not black, not stretched to 255
    Image.fromarray(np.full((16, 16), 40000, np.int32), "I").save(tmp_path / "deep.tif")
    assert load_image(tmp_path / "deep.tif", 95).rgb[0, 0, 0] == round(40000 / 257)


# Cases 10 (listing): a folder lists every image a list file may name (GIF and PNM read, HEIC
# recorded with what to do); a list file with a BOM keeps its first photo; a JSON file, compressed
# shards and URLs in a local list are refused; a file:// URL is a local folder.
def test_folders_and_list_files_list_alike_and_odd_sources_are_refused(cli, tmp_path):
    photos = photo_folder(tmp_path, 1)
    for suffix in ("gif", "ppm"):
        Image.open(photos / "p0.jpg").save(photos / f"q.{suffix}")
        shutil.copy(photos / "p0.depth.npy", photos / f"{'q' if suffix == 'gif' else 'r'}.depth.npy")
        if suffix == "ppm":
            (photos / "q.ppm").rename(photos / "r.ppm")
    (photos / "phone.heic").write_bytes(b"\0\0\0\x18ftypheic")
    out = tmp_path / "out"
    assert generate(cli, f"file://{photos}", out, "--quiet")[0] == 0
    assert sorted(samples_of(out)) == ["p0-v0", "q-v0", "r-v0"]
    assert read_errors(out)["phone.heic"]["reason"] == "HEIC photos cannot be decoded here; convert them to JPEG first"
    listing = tmp_path / "list.txt"
    listing.write_text("\ufeffphotos/p0.jpg\nphotos/r.ppm\n")
    assert generate(cli, listing, tmp_path / "listed", "--quiet")[0] == 0
    assert sorted(samples_of(tmp_path / "listed")) == ["photos__p0-v0", "photos__r-v0"]
    (tmp_path / "meta.json").write_text("{}")
    (tmp_path / "shards.tar.gz").write_bytes(b"\x1f\x8b")
    (tmp_path / "urls.txt").write_text("photos/p0.jpg\ns3://bucket/photos/p1.jpg\n")
    for source, message in (
        (tmp_path / "meta.json", f"--images {tmp_path}/meta.json is a .json file, not a list of paths: give a "
                                 "folder, a glob, .tar shards or a text file of paths (no suffix, .txt, .lst, .list)"),
        (tmp_path / "shards.tar.gz", f"--images {tmp_path}/shards.tar.gz: compressed shards are not read; give "
                                     "uncompressed .tar shards"),
        (tmp_path / "urls.txt", f"{tmp_path}/urls.txt names a URL (s3://bucket/photos/p1.jpg): a list file on "
                                "this machine names local paths; put a list of URLs on the store and pass its URL as "
                                "--images"),
    ):  # fmt: skip
        code, _, err = generate(cli, source, tmp_path / "refused", "--quiet")
        assert code == 1 and err == f"error: {message}\n"


# Case 10 (input shards): a __key__ an input shard repeats is a sample of its own, as WebDataset
# reads it, not two merged into one.
def test_a_repeated_key_in_an_input_shard_is_its_own_sample(cli, tmp_path):
    photos = photo_folder(tmp_path, 2)
    shard = tmp_path / "in.tar"
    with tarfile.open(shard, "w", format=tarfile.GNU_FORMAT) as tar:
        for index, key in enumerate(("a", "b", "a")):
            for extension in ("jpg", "depth.npy"):
                tar.add(photos / f"p{index % 2}.{extension}", f"{key}.{extension}")
    out = tmp_path / "out"
    assert generate(cli, shard, out, "--shard-size", "3", "--quiet")[0] == 0
    samples = samples_of(out)
    assert len(samples) == 3 and (out / "inputs.jsonl").read_text() == '"in.tar/a"\n"in.tar/b"\n"in.tar/a#2"\n'
    sources = sorted(json.loads(sample["json"])["source_path"] for sample in samples.values())
    assert sources == ["in.tar/a", "in.tar/a#2", "in.tar/b"]


# Case 6: an --out inside --images is never listed as input: previews written there by inspect,
# an --overwrite and the same command again make the same photos, with no loop.
def test_an_out_inside_the_images_is_not_listed_as_input(cli, tmp_path):
    photos = photo_folder(tmp_path, 2)
    out = photos / "out"
    assert generate(cli, photos, out, "--quiet")[0] == 0
    assert cli("inspect", "--shards", out)[0] == 0 and (out / "previews" / "contact_sheet.png").is_file()
    for extra in (("--overwrite",), ()):
        code, stdout, err = generate(cli, photos, out, *extra)
        assert code == 0, err
        assert sorted(samples_of(out)) == ["p0-v0", "p1-v0"] and "read 2 of 2 images" in stdout
    assert "(2 already done)" in stdout
    assert cli("inspect", "--shards", out)[0] == 0
    code, _, err = generate(cli, out, out, "--teacher", "auto", "--quiet")  # its one image: previews/contact_sheet.png
    assert code == 1 and err == f"error: every input lies inside --out {out}; give an --out outside the inputs\n"


# Case 8 and issue 24: a .bin sweep is read in the width whose intensities line up; an N x 5
# sweep with a time column (N a multiple of 4 too) reads as 5 columns, and read as 4 columns
# (auto or --lidar-columns 4) it is refused, never stored; a truncated ASCII PCD is refused.
def test_sweeps_are_read_only_in_a_layout_their_values_fit(tmp_path):
    from simlidar.pipeline.errors import PipelineError
    from simlidar.pipeline.sources.calibrated_rig_lidar import read_bin_sweep, read_sweep

    rng = np.random.default_rng(0)
    xyz = np.column_stack([rng.uniform(-40, 40, (40, 2)), rng.uniform(-2, 1, 40)])
    timed = np.column_stack([xyz, rng.uniform(0, 255, 40), np.linspace(0, 0.1, 40)]).astype(np.float32)
    timed.tofile(tmp_path / "timed.bin")  # 40 x 5 = 50 x 4 floats
    sweep = read_bin_sweep(tmp_path / "timed.bin")
    assert sweep.columns == 5 and np.array_equal(sweep.points_lidar, timed[:, :3])
    with pytest.raises(PipelineError, match=r"read as N x 4 float32 its intensity column holds negative"):
        read_bin_sweep(tmp_path / "timed.bin", "4")
    timed[:39].tofile(tmp_path / "odd.bin")  # 39 x 5 = 195 floats: no N x 4
    assert read_bin_sweep(tmp_path / "odd.bin").points_lidar.shape == (39, 3)
    nowhere = timed.copy()
    nowhere[:5, :3] = np.nan
    nowhere[5, 0] = 1e12
    nowhere.tofile(tmp_path / "markers.bin")
    sweep = read_bin_sweep(tmp_path / "markers.bin")
    assert sweep.dropped == 6 and np.array_equal(sweep.points_lidar, timed[6:, :3])
    header = "VERSION 0.7\nFIELDS x y z intensity\nSIZE 4 4 4 4\nTYPE F F F F\nCOUNT 1 1 1 1\nWIDTH 3\nHEIGHT 1\n"
    header += "VIEWPOINT 0 0 0 1 0 0 0\nPOINTS 3\nDATA ascii\n"
    (tmp_path / "whole.pcd").write_text(header + "1 2 3 0.5\n-4 5 6 0.1\n7 -8 9 0.9\n")
    assert read_sweep(tmp_path / "whole.pcd").points_lidar.tolist() == [[1, 2, 3], [-4, 5, 6], [7, -8, 9]]
    for name, body, why in (
        ("short.pcd", "1 2 3 0.5\n-4 5 6 0.1\n", "2 data lines, but its header declares 3 points (truncated?)"),
        ("cut.pcd", "1 2 3 0.5\n-4 5 6 0.1\n7 -8\n", "data line 3 holds 2 values, its header 4 (truncated?)"),
    ):
        (tmp_path / name).write_text(header + body)
        with pytest.raises(PipelineError) as raised:
            read_sweep(tmp_path / name)
        assert str(raised.value) == f"{tmp_path / name}: {why}"


@pytest.mark.skipif(not NUSCENES.is_dir(), reason="needs ../shared/data/nuscenes_frame")
def test_convert_rig_refuses_a_sweep_read_in_the_wrong_width_and_counts_far_points_apart(cli, tmp_path):
    from simlidar.pipeline.sources.calibrated_rig import load_calibration
    from simlidar.sensors.camera import invert_pose, transform_points

    root = tmp_path / "rig"
    shutil.copytree(NUSCENES, root)
    rig = ("--rig", root / "calibration.json", "--workers", "1", "--quiet")
    code, _, err = cli("convert", "rig", root, *rig, "--out", tmp_path / "four", "--lidar-columns", "4")
    assert code == 1 and "read as N x 4 float32 its intensity column holds negative or non-finite values" in err
    (error,) = read_errors(tmp_path / "four").values()
    assert error["stage"] == "read"
    assert error["reason"].endswith("(is it N x 5?); say its width with --lidar-columns 4 or 5")
    assert samples_of(tmp_path / "four") == {}
    calibration = load_calibration(str(root / "calibration.json"))
    front = calibration.cameras[0]
    far_cam = np.column_stack([np.linspace(-20, 20, 50), np.zeros(50), np.full(50, 300.0)])
    far_lidar = transform_points(invert_pose(calibration.T_rig_lidar) @ front.T_rig_cam, far_cam)
    (sweep,) = (root / "LIDAR_TOP").glob("*.bin")
    points = np.fromfile(sweep, np.float32).reshape(-1, 5)
    extra = np.column_stack([far_lidar, np.full((50, 2), 10.0)]).astype(np.float32)
    np.concatenate([points, extra]).tofile(sweep)
    assert cli("convert", "rig", root, *rig, "--out", tmp_path / "far")[0] == 0
    sample = samples_of(tmp_path / "far")[f"{sweep.stem}-r0"]
    counts = json.loads(sample["json"])["counts"]
    assert counts["sparse_pixels"] == np.count_nonzero(schema.decode_depth_png(sample["sparse.png"]))
    assert counts["sparse_pixels_beyond_encoding"] > 0
    assert cli("inspect", "--shards", tmp_path / "far")[0] == 0


# Case 9: an object store this machine has no credentials for is one line saying where they go,
# for generate and for inspect (never "not a simlidar output").
def test_a_store_without_credentials_is_one_line(cli, tmp_path, bucket, monkeypatch):
    import s3fs

    photos = photo_folder(tmp_path, 1)
    assert generate(cli, photos, f"{bucket}/run", "--quiet")[0] == 0
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance metadata to ask
    s3fs.S3FileSystem.clear_instance_cache()
    try:
        for args in (("generate", "--images", photos, "--out", f"{bucket}/run", "--teacher", "sidecar", "--fov", "90",
                      "--workers", "1", "--quiet"), ("inspect", "--shards", f"{bucket}/run")):  # fmt: skip
            code, _, err = cli(*args)
            assert code == 1 and err.startswith("error: no usable credentials for the object store (Unable to locate")
            assert "AWS_ACCESS_KEY_ID" in err and err.count("\n") == 1 and "not a simlidar output" not in err
    finally:
        s3fs.S3FileSystem.clear_instance_cache()


# Case 10 (messages): inspect tells a run still writing its folder from one that was killed; a
# metre jitter is bounded in metres; a jitter key given twice and a --license the Hub does not
# know are refused.
def test_messages_say_what_is_true(cli, tmp_path):
    from simlidar.pipeline.output.lock import LOCK

    photos = photo_folder(tmp_path, 1)
    out = tmp_path / "out"
    assert generate(cli, photos, out, "--quiet")[0] == 0
    manifest = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps({**manifest, "status": "running"}))
    holder = {"host": "elsewhere", "pid": 1, "process_start": "", "since": "2026-01-01T00:00:00", "token": "x"}
    (out / LOCK).write_text(json.dumps(holder))
    code, _, err = cli("inspect", "--shards", out)
    assert "problem: a run is still writing it (pid 1 on elsewhere, since 2026-01-01T00:00:00): inspect it when" in err
    (out / LOCK).unlink()
    code, _, err = cli("inspect", "--shards", out)
    assert (
        code == 1
        and (
            "problem: the run stopped before it finished (killed: no run holds it now): re-run the `simlidar generate` "
            "that made it\n"
        )
        in err
    )
    for option, value, why in (
        ("--mount-jitter", "height=20", "--mount-jitter: height must be a range in [0, 10) m, got 20"),
        ("--mount-jitter", "pitch=90", "--mount-jitter: pitch must be a range in [0, 90) deg, got 90"),
        ("--mount-jitter", "height=0.1,height=0.2", "--mount-jitter: height is given twice; give each key once"),
        ("--calibration-error", "yaw=0.1,yaw=0.1", "--calibration-error: yaw is given twice; give each key once"),
    ):
        code, _, err = generate(cli, photos, tmp_path / "other", option, value, "--quiet")
        assert code == 2 and err == f"error: {why}\n"
    code, _, err = cli("publish", "--shards", out, "--repo", "me/data", "--license", "garbage", "--dry-run")
    assert code == 2 and err.startswith("error: --license 'garbage' is not a licence id the Hub knows")
    assert not (out / "hub").exists()


# Case 10 (KITTI): a calibration with NaN in P_rect_02 is one errors.jsonl line per frame, never a
# NaN K in a sample's json; issue 24: --limit below 1 is refused, --limit N converts N frames.
def test_convert_kitti_refuses_a_nan_calibration_and_a_negative_limit(cli, tmp_path):
    from .kitti_tree import DRIVE, write_kitti_tree

    root = write_kitti_tree(tmp_path / "kitti", frames=(5, 6, 7))
    code, _, err = cli("convert", "kitti", root, "--out", tmp_path / "o", "--limit", "-1", "--workers", "1")
    assert code == 2 and err == "error: --limit must be at least 1\n"
    assert cli("convert", "kitti", root, "--out", tmp_path / "two", "--limit", "2", "--workers", "1", "--quiet")[0] == 0
    assert (tmp_path / "two" / "inputs.jsonl").read_text().count("\n") == 2
    calib = root / "raw" / DRIVE[:10] / "calib_cam_to_cam.txt"
    calib.write_text("P_rect_02: 721.5 0 nan 44.8 0 721.5 172.8 0.2 0 0 1 0.003\n")
    code, _, err = cli("convert", "kitti", root, "--out", tmp_path / "o", "--workers", "1", "--quiet")
    assert code == 1 and "no sample could be made from 3 inputs" in err
    reasons = {error["reason"] for error in read_errors(tmp_path / "o").values()}
    assert reasons == {f"{calib}: P_rect_02 is not 12 finite numbers; fix the file"}


# Case 10 (convert rig): --overwrite into a generate folder leaves nothing of that run; a changed
# calibration is refused like a changed option (case 1 for converters).
@pytest.mark.skipif(not NUSCENES.is_dir(), reason="needs ../shared/data/nuscenes_frame")
def test_convert_rig_replaces_a_generate_run_whole_and_refuses_a_changed_calibration(cli, tmp_path):
    out = tmp_path / "out"
    assert generate(cli, photo_folder(tmp_path, 3), out, "--quiet")[0] == 0
    root = tmp_path / "rig"
    shutil.copytree(NUSCENES, root)
    rig = ("convert", "rig", root, "--rig", root / "calibration.json", "--out", out, "--workers", "1", "--quiet")
    assert cli(*rig)[0] == 1  # a different run
    assert cli(*rig, "--overwrite")[0] == 0
    assert sorted(path.name for path in out.iterdir() if path.name != "teacher-cache") == [
        "README.md", "errors.jsonl", "generate.log", "inputs.jsonl", "manifest.json", "shard-000000.stats.json",
        "shard-000000.tar",
    ]  # fmt: skip
    assert "img" not in (out / "generate.log").read_text() and "p0" not in (out / "generate.log").read_text()
    (sweep,) = (root / "LIDAR_TOP").glob("*.bin")
    with open(sweep, "ab") as handle:  # one more point: the frame's files changed
        handle.write(np.array([[5.0, 5.0, 0.0, 10.0, 1.0]], np.float32).tobytes())
    code, _, err = cli(*rig)
    assert code == 0 and err == f"made shard-000000 again: 1 of its inputs changed since it was made ({sweep.stem})\n"
    calibration = root / "calibration.json"
    before = sha256(calibration)
    calibration.write_text(json.dumps({**json.loads(calibration.read_text()), "note": "re-measured"}))
    code, _, err = cli(*rig)
    assert (
        code == 1
        and (
            f"(the rig calibration file {calibration} changed since that run (sha256 {before[:12]} then, "
            f"{sha256(calibration)[:12]} now))"
        )
        in err
    )


# Case 10 (fidelity): an image that is not the one its calibration is for is one line, not a
# table of zeros.
def test_fidelity_refuses_an_image_its_calibration_is_not_for(cli, tmp_path):
    source = DATA / "kitti_object"
    if not (source / "000134.bin").is_file():
        pytest.skip("needs ../shared/data/kitti_object")
    for suffix in (".bin", ".calib.txt"):
        shutil.copy(source / f"000134{suffix}", tmp_path / f"000134{suffix}")
    image = Image.open(source / "000134.png")
    image.resize((image.width // 4, image.height // 4)).save(tmp_path / "000134.png")
    code, out, err = cli("fidelity", "--kitti-object", tmp_path / "000134")
    assert code == 1 and out == "" and err.startswith(f"error: {tmp_path}/000134.png is 306x92, but 000134.calib.txt")
    assert "not the image the calibration is for (resized or cropped?)" in err


# Case 2 on an object store: photos listed from a URL are fingerprinted by size and ETag as the
# run's listing found them (no request more); a sidecar replaced there makes its shard again.
def test_photos_on_a_store_whose_sidecar_changed_make_their_shard_again(cli, tmp_path, bucket):
    from simlidar.pipeline.sources.urls import filesystem

    photos = photo_folder(tmp_path, 2)
    fs, root = filesystem(f"{bucket}/photos")
    for file in sorted(photos.iterdir()):
        fs.put_file(str(file), f"{root}/{file.name}")
    out = tmp_path / "out"
    assert generate(cli, f"{bucket}/photos", out, "--quiet")[0] == 0
    before = (out / "shard-000001.tar").read_bytes()
    np.save(tmp_path / "new.npy", wall_depth(9))
    fs.put_file(str(tmp_path / "new.npy"), f"{root}/p1.depth.npy")
    code, _, err = generate(cli, f"{bucket}/photos", out, "--quiet")
    assert code == 0 and err == "made shard-000001 again: 1 of its inputs changed since it was made (p1.jpg)\n"
    assert (out / "shard-000001.tar").read_bytes() != before

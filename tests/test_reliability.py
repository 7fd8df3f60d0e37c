"""Generation you can trust (issue 14): every odd input becomes one errors.jsonl line or one
clear error, the good inputs are written, and one run at a time owns an output folder."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time

import numpy as np
import pytest
from PIL import Image
from simlidar.pipeline.config import GenerateConfig
from simlidar.pipeline.errors import PipelineError
from simlidar.pipeline.output.lock import LOCK, OutputLock, OutputLocked, read_holder, still_held
from simlidar.pipeline.output.store import LocalStore
from simlidar.pipeline.runner import generate as run_generate
from simlidar.pipeline.sources.photos import BadImage, decode_problem, list_inputs, load_image
from simlidar.sensors import SensorSpecError, load_sensor
from simlidar.sensors.catalog import CATALOG_DIR

from .helpers import write_photo

SIZE = (96, 160)
K_GOOD = {"fx": 100.0, "fy": 100.0, "cx": 79.5, "cy": 47.5}


def wall_depth(seed=0):
    """A wall at 12 m with a box at 4-6 m."""
    depth = np.full(SIZE, 12.0, np.float32)
    depth[30:70, 40 + seed % 20 : 90 + seed % 20] = 4.0 + seed * 0.5
    return depth


def photo_folder(tmp_path, count, name="photos"):
    """`count` photos p0.jpg ... with depth sidecars (a wall and a box that moves)."""
    folder = tmp_path / name
    for index in range(count):
        write_photo(folder, f"p{index}.jpg", wall_depth(index), seed=index)
    return folder


def write_npy_photo(folder, name, depth, seed=0):
    """A JPEG with a float .depth.npy sidecar (any values, NaN included)."""
    folder.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(seed).integers(40, 220, size=(*SIZE, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(folder / name, quality=90)
    np.save(folder / f"{name.rsplit('.', 1)[0]}.depth.npy", depth.astype(np.float32))


def generate(cli, photos, out, *extra):
    options = ("--fov", "90", "--teacher", "sidecar", "--quiet", "--workers", "1", "--shard-size", "2")
    return cli("generate", "--images", photos, "--out", out, *options, *extra)


def read_errors(out):
    return {json.loads(line)["path"]: json.loads(line) for line in (out / "errors.jsonl").open()}


def sample_keys(out):
    keys = []
    for shard in sorted(out.glob("shard-*.tar")):
        with tarfile.open(shard) as tar:
            keys += [name.removesuffix(".json") for name in tar.getnames() if name.endswith(".json")]
    return sorted(keys)


# Case 4: a quoted glob follows no symlinked folder (a loop listed 17 photos 861 times).
def test_a_glob_never_enters_symlinked_folders_so_a_loop_lists_each_photo_once(tmp_path):
    photos = tmp_path / "photos"
    write_photo(photos, "a.jpg", wall_depth())
    write_photo(photos / "sub", "b.jpg", wall_depth(1))
    (photos / "loop").mkdir()
    (photos / "loop" / "up").symlink_to("..")
    (photos / "sub" / "again").symlink_to("../..")
    for pattern in (f"{photos}/**/*.jpg", f"{photos}/**"):
        items, root = list_inputs(pattern)
        assert [item.relpath for item in items] == ["a.jpg", "sub/b.jpg"] and root == photos
    assert [item.relpath for item in list_inputs(f"{photos}/*/*.jpg")[0]] == ["sub/b.jpg"]
    assert [item.key for item in list_inputs(str(photos))[0]] == ["a", "sub__b"]


# Case 7: a FIFO, a link to /dev/zero and an oversized file: one reason each, never read.
def test_fifos_devices_and_huge_files_are_recorded_unread_and_the_rest_written(cli, tmp_path):
    photos = tmp_path / "photos"
    for index in range(3):
        write_photo(photos, f"good{index}.jpg", wall_depth(index), seed=index)
    os.mkfifo(photos / "pipe.jpg")
    (photos / "zero.jpg").symlink_to("/dev/zero")
    with open(photos / "huge.jpg", "wb") as huge:
        huge.truncate(300 * 2**20)  # sparse: 300 MiB on paper, nothing on disk
    out = tmp_path / "out"
    code, _, err = generate(cli, photos, out)
    assert code == 0, err
    errors = read_errors(out)
    assert {path: error["reason"] for path, error in errors.items()} == {
        "pipe.jpg": "not a regular file (a FIFO); only regular files are read",
        "zero.jpg": "not a regular file (a character device); only regular files are read",
        "huge.jpg": "file is 300 MiB; inputs of at most 256 MiB are read",
    }
    assert {error["stage"] for error in errors.values()} == {"read"}
    assert sample_keys(out) == ["good0-v0", "good1-v0", "good2-v0"]


# Case 13: reasons are the same from run to run; a text file as .depth.npy says what it is.
def test_reasons_are_deterministic_and_a_text_depth_file_is_named_as_such(cli, tmp_path):
    photos = tmp_path / "photos"
    write_photo(photos, "good.jpg", wall_depth())
    (photos / "notes.jpg").write_text("not a picture")
    write_npy_photo(photos, "textdepth.jpg", wall_depth())
    (photos / "textdepth.depth.npy").write_text("12.0 12.0 12.0\n")
    write_npy_photo(photos, "strings.jpg", wall_depth())
    np.save(photos / "strings.depth.npy", np.full(SIZE, "far"))
    runs = [tmp_path / "first", tmp_path / "second"]
    for out in runs:
        assert generate(cli, photos, out)[0] == 0
    assert (runs[0] / "errors.jsonl").read_bytes() == (runs[1] / "errors.jsonl").read_bytes()
    errors = read_errors(runs[0])
    assert errors["notes.jpg"]["reason"] == "not a readable image (not a format PIL knows)"
    assert errors["textdepth.jpg"]["reason"] == (
        "textdepth.depth.npy: not a NumPy .npy file; save depth with numpy.save (float32 metres)"
    )
    assert errors["strings.jpg"]["reason"] == (
        "strings.depth.npy: depth must be real numbers (float32 metres), got dtype <U3"
    )
    assert sample_keys(runs[0]) == ["good-v0"]


def test_decoding_reasons_never_hold_a_memory_address(tmp_path):
    photo = write_photo(tmp_path, "a.jpg", wall_depth())
    truncated = tmp_path / "cut.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:60])
    with pytest.raises(BadImage, match=r"^not a readable image \(image file is truncated\)$"):
        load_image(truncated, 95)
    buffer_error = OSError("broken data stream when reading <_io.BytesIO object at 0x7f3a2c1b9e50> at byte 12")
    assert decode_problem(buffer_error) == "broken data stream when reading at byte 12"
    assert load_image(photo, 95).rgb.shape == (*SIZE, 3)


# Case 8: intrinsics that are not finite, not numbers or not sane are recorded, not used.
def test_bad_intrinsics_sidecars_are_recorded_and_good_ones_used(cli, tmp_path):
    photos = tmp_path / "photos"
    sidecars = {
        "good": json.dumps(K_GOOD),
        "nan": '{"fx": NaN, "fy": 100, "cx": 79.5, "cy": 47.5}',
        "boolean": json.dumps({**K_GOOD, "fx": True}),
        "tiny": json.dumps({**K_GOOD, "fx": 1e-9}),
        "faraway": json.dumps({**K_GOOD, "cx": 1e12}),
        "squashed": json.dumps({**K_GOOD, "fy": 1e-9}),
        "listed": "[100, 100, 79.5, 47.5]",
    }
    for index, (name, text) in enumerate(sidecars.items()):
        write_photo(photos, f"{name}.jpg", wall_depth(index), seed=index)
        (photos / f"{name}.json").write_text(text)
    out = tmp_path / "out"
    code, _, err = generate(cli, photos, out)
    assert code == 0, err
    errors = read_errors(out)
    assert {error["stage"] for error in errors.values()} == {"intrinsics"}
    reasons = {path.removesuffix(".jpg"): error["reason"] for path, error in errors.items()}
    assert reasons == {
        "nan": "nan.json: not readable JSON (NaN is not a number in standard JSON); write fx, fy, cx, cy in pixels",
        "boolean": "boolean.json: fx must be a number of pixels, got true",
        "tiny": "tiny.json: fx = 1e-09 px is outside 7.0..9167 px, a field of view of 1-170 deg across this "
        "photo's 160 px",
        "faraway": "faraway.json: the principal point (cx, cy) = (1e+12, 47.5) px is outside the 160x96 photo",
        "squashed": "squashed.json: fy = 1e-09 px is not within 4x of fx = 100 px",
        "listed": "listed.json: must be a JSON object with fx, fy, cx, cy in pixels",
    }
    assert sample_keys(out) == ["good-v0"]
    with tarfile.open(out / "shard-000001.tar") as tar:
        meta = json.loads(tar.extractfile("good-v0.json").read())
    assert meta["K"] == [[100.0, 0.0, 79.5], [0.0, 100.0, 47.5], [0.0, 0.0, 1.0]]
    assert "NaN" not in (out / "errors.jsonl").read_text().replace("(NaN is", "")


# Case 9: depth a LiDAR cannot return from is recorded with its count, not written empty.
def test_unusable_depth_is_recorded_with_its_valid_pixel_count(cli, tmp_path):
    photos = tmp_path / "photos"
    one_valid = np.zeros(SIZE, np.float32)
    one_valid[40, 80] = 10.0
    depths = {
        "zero": np.zeros(SIZE),
        "nan": np.full(SIZE, np.nan),
        "negative": np.full(SIZE, -5.0),
        "far": np.full(SIZE, 1000.0),
        "near": np.full(SIZE, 0.001),
        "one": one_valid,
        "good": wall_depth(),
    }
    for index, (name, depth) in enumerate(depths.items()):
        write_npy_photo(photos, f"{name}.jpg", depth, seed=index)
    out = tmp_path / "out"
    assert generate(cli, photos, out)[0] == 0
    errors = read_errors(out)
    pixels = SIZE[0] * SIZE[1]
    hdl64 = load_sensor("hdl64")
    for name, valid in (("zero", 0), ("nan", 0), ("negative", 0), ("far", 0), ("near", 0), ("one", 1)):
        assert errors[f"{name}.jpg"] == {
            "path": f"{name}.jpg",
            "stage": "depth",
            "reason": f"depth has {valid} valid pixels within the sensor's {hdl64.min_range_m:g}-"
            f"{hdl64.max_range_m:g} m range of {pixels}; at least 154 (1%) are needed",
        }
    assert sample_keys(out) == ["good-v0"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["totals"]["images_skipped"] == 6 and manifest["totals"]["samples"] == 1


# Case 13: a sensor file whose frame cannot fit in memory is refused when loaded.
def test_a_sensor_with_too_many_rays_per_frame_is_refused_up_front(cli, tmp_path):
    text = (CATALOG_DIR / "hdl64.toml").read_text()
    assert "azimuth_step_deg" in text
    fine = tmp_path / "fine.toml"
    fine.write_text(_with_azimuth_step(text, 0.1))
    assert load_sensor(str(fine)).points_per_frame == 64 * 3600
    dense = tmp_path / "dense.toml"
    dense.write_text(_with_azimuth_step(text, 1e-5))
    with pytest.raises(SensorSpecError, match=r"casts 2,304,000,000 rays per frame .* at most 16,000,000 fit"):
        load_sensor(str(dense))
    photos = tmp_path / "photos"
    write_photo(photos, "a.jpg", wall_depth())
    code, _, err = generate(cli, photos, tmp_path / "out", "--sensor", dense)
    assert code == 1 and err.count("\n") == 1 and "rays per frame" in err
    assert not (tmp_path / "out").exists()


def _with_azimuth_step(text, step_deg):
    lines = [line for line in text.splitlines() if not line.startswith(("columns", "azimuth_step_deg"))]
    scan = lines.index("[scan]")
    return "\n".join([*lines[: scan + 1], f"azimuth_step_deg = {step_deg}", *lines[scan + 1 :]]) + "\n"


# Case 3: one run at a time per output folder.
def test_a_live_lock_is_refused_naming_its_holder_and_released_after(tmp_path):
    out = tmp_path / "out"
    with OutputLock(LocalStore(out)) as first:
        holder = read_holder(LocalStore(out))
        assert (holder.host, holder.pid, holder.token) == (socket.gethostname(), os.getpid(), first.token)
        with pytest.raises(OutputLocked, match=rf"in use by another simlidar run \(pid {os.getpid()} on "):
            OutputLock(LocalStore(out)).acquire()
        assert still_held(LocalStore(out), first.token)
    assert not (out / LOCK).exists() and not still_held(LocalStore(out), first.token)


def dead_pid() -> int:
    """The pid of a process that has ended."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    return dead.pid


def folder_with_stale_lock(tmp_path) -> tuple:
    """(folder, pid): an output folder whose lock names a process that has ended."""
    out = tmp_path / "out"
    out.mkdir()
    pid = dead_pid()
    stale = {"host": socket.gethostname(), "pid": pid, "process_start": "1", "since": "then", "token": "old"}
    (out / LOCK).write_text(json.dumps(stale))
    return out, pid


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    out, gone = folder_with_stale_lock(tmp_path)
    lock = OutputLock(LocalStore(out))
    lock.acquire()
    assert lock.taken_over.pid == gone and read_holder(LocalStore(out)).token == lock.token
    assert not still_held(LocalStore(out), "old")
    lock.release()


def test_a_lock_whose_pid_now_belongs_to_another_process_is_stale(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    reused = {"host": socket.gethostname(), "pid": os.getpid(), "process_start": "1", "since": "", "token": "old"}
    (out / LOCK).write_text(json.dumps(reused))
    with OutputLock(LocalStore(out)) as lock:
        assert lock.taken_over.token == "old"
    (out / LOCK).write_text("{not json")
    with OutputLock(LocalStore(out)) as lock:
        assert lock.taken_over is None and read_holder(LocalStore(out)) == lock.holder


def test_a_lock_held_on_another_host_is_refused(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    elsewhere = {"host": "node-7", "pid": 1234, "process_start": "99", "since": "2026-01-01", "token": "x"}
    (out / LOCK).write_text(json.dumps(elsewhere))
    with pytest.raises(OutputLocked, match=r"pid 1234 on node-7, since 2026-01-01\).*delete .*generate\.lock"):
        OutputLock(LocalStore(out)).acquire()
    assert read_holder(LocalStore(out)).token == "x"


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder nothing can be written in: a read-only tmpfs when we are root (permissions
    do not stop root), else a folder without write permission."""
    folder = tmp_path / "readonly"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here ({mounted.stderr.decode().strip()})")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


# Case 11: --out on a read-only file system is one line.
def test_an_output_folder_on_a_read_only_file_system_is_one_line(cli, tmp_path, read_only_folder):
    photos = tmp_path / "photos"
    write_photo(photos, "a.jpg", wall_depth())
    code, _, err = generate(cli, photos, read_only_folder / "out")
    assert code == 1 and err.count("\n") == 1
    assert err.startswith(f"error: cannot write to {read_only_folder / 'out'} (")
    assert "Traceback" not in err
    with pytest.raises(PipelineError, match="choose an output folder you can write to"):
        OutputLock(LocalStore(read_only_folder)).acquire()


# Case 12: damaged output folders are problems for inspect and refusals for publish.
@pytest.fixture(scope="module")
def finished_output(tmp_path_factory):
    base = tmp_path_factory.mktemp("finished")
    photos = base / "photos"
    for index in range(4):
        write_photo(photos, f"p{index}.jpg", wall_depth(index), seed=index)
    config = GenerateConfig(images=str(photos), fov_deg=90.0, teacher="sidecar", shard_size=1)
    run_generate(config, base / "out", progress=False, workers=1)
    return base / "out"


def damaged_copy(finished_output, tmp_path, damage):
    out = tmp_path / "out"
    shutil.copytree(finished_output, out)
    manifest = json.loads((out / "manifest.json").read_text())
    damaged = damage(out, manifest)
    if damaged is not None:
        (out / "manifest.json").write_text(json.dumps(damaged))
    return out


def _drop_sha(out, manifest):
    del manifest["shards"][1]["sha256"]
    return manifest


def _drop_last_entry(out, manifest):
    manifest["shards"].pop()
    return manifest


def _drop_entry_and_tar(out, manifest):
    (out / manifest["shards"].pop(2)["shard"]).unlink()
    return manifest


def _previews_file(out, manifest):
    shutil.rmtree(out / "previews", ignore_errors=True)
    (out / "previews").write_text("not a folder")


DAMAGES = {
    "a list": (lambda out, manifest: [manifest], "manifest.json is a JSON list, not a simlidar manifest"),
    "no sha256": (_drop_sha, "manifest.json: shard entry 1 lacks sha256"),
    "no shards key": (lambda out, m: {k: v for k, v in m.items() if k != "shards"}, "has no list of shards"),
    "one entry missing": (_drop_last_entry, "shard-000003.tar: on disk but not in manifest.json"),
    "entry and tar missing": (_drop_entry_and_tar, "lists 3 of 4 shards (first missing: shard-000002.tar)"),
    "previews a file": (_previews_file, "previews is a file, not a folder"),
}


@pytest.mark.parametrize("damage", DAMAGES, ids=list(DAMAGES))
def test_damaged_outputs_are_problems_for_inspect_and_refused_by_publish(cli, finished_output, tmp_path, damage):
    change, expected = DAMAGES[damage]
    out = damaged_copy(finished_output, tmp_path, change)
    code, _, err = cli("inspect", "--shards", out, "--previews", "0")
    assert code == 1 and expected in err and "Traceback" not in err
    code, _, err = cli("publish", "--shards", out, "--repo", "me/data", "--dry-run")
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert not (out / "hub").exists() and not (out / "hub.tmp").exists()


def test_publish_refuses_a_hub_file_and_leaves_no_staging_behind(cli, finished_output, tmp_path):
    out = damaged_copy(finished_output, tmp_path, lambda out, manifest: None)
    (out / "hub").write_text("not a folder")
    (out / "hub.tmp").write_text("left by someone")
    code, _, err = cli("publish", "--shards", out, "--repo", "me/data", "--dry-run")
    assert (
        code == 1 and err == f"error: {out / 'hub'} is a file, not a staging folder; move it away and publish again\n"
    )
    (out / "hub").unlink()
    code, _, err = cli("publish", "--shards", out, "--repo", "me/data", "--dry-run")
    assert code == 0, err
    assert sorted(path.name for path in (out / "hub" / "data" / "train").iterdir()) == [
        f"shard-{index:06d}.tar" for index in range(4)
    ]
    assert not (out / "hub.tmp").exists()


def test_an_intact_output_inspects_clean(cli, finished_output, tmp_path):
    out = damaged_copy(finished_output, tmp_path, lambda out, manifest: None)
    code, text, err = cli("inspect", "--shards", out, "--previews", "2")
    assert code == 0, err
    assert f"{out}: 4 samples in 4 shards" in text


# Case 1: a run's identity includes its input list.
def test_inputs_added_after_a_kill_are_refused_with_what_changed(cli, tmp_path):
    photos = photo_folder(tmp_path, 4)
    out = tmp_path / "out"
    assert generate(cli, photos, out)[0] == 0
    (out / "shard-000001.stats.json").unlink()  # as a kill leaves it
    for index in (7, 8, 9, 10):
        write_photo(photos, f"new{index}.jpg", wall_depth(index), seed=index)
    (photos / "p0.jpg").unlink()
    code, _, err = generate(cli, photos, out)
    assert code == 1 and err.count("\n") == 1
    assert err == (
        f"error: {out} holds a different run (inputs changed since it started: 4 added (new10.jpg, new7.jpg, "
        "new8.jpg and 1 more), 1 removed (p0.jpg)); use another --out, or pass --overwrite to replace it\n"
    )
    assert sorted(path.name for path in out.glob("shard-*")) == [
        "shard-000000.stats.json",
        "shard-000000.tar",
        "shard-000001.tar",
    ]
    code, _, err = generate(cli, photos, out, "--overwrite")
    assert code == 0, err
    assert sample_keys(out) == ["new10-v0", "new7-v0", "new8-v0", "new9-v0", "p1-v0", "p2-v0", "p3-v0"]
    assert json.loads((out / "manifest.json").read_text())["inputs"]["count"] == 7


def test_the_same_folder_typed_with_a_trailing_slash_is_the_same_run(cli, tmp_path, monkeypatch):
    photos = photo_folder(tmp_path, 2)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    assert generate(cli, "photos", out)[0] == 0
    for typed in ("photos/", "./photos", str(photos) + "/"):
        code, text, err = generate(cli, typed, out)
        assert code == 0, err
    assert json.loads((out / "manifest.json").read_text())["config"]["images"] == str(photos)


# Case 2: resume verifies finished shards and makes damaged ones again.
def test_a_corrupted_or_truncated_finished_shard_is_made_again_and_said_so(cli, tmp_path):
    photos = photo_folder(tmp_path, 6)
    out = tmp_path / "out"
    assert generate(cli, photos, out)[0] == 0
    reference = {path.name: path.read_bytes() for path in out.glob("shard-*.tar")}
    flipped = bytearray(reference["shard-000001.tar"])
    flipped[700] ^= 0x01
    (out / "shard-000001.tar").write_bytes(bytes(flipped))
    (out / "shard-000002.tar").write_bytes(reference["shard-000002.tar"][:1000])
    code, _, err = generate(cli, photos, out)
    assert code == 0
    assert err == (
        "made shard-000001 again: shard-000001.tar's SHA-256 differs from its stats\n"
        f"made shard-000002 again: shard-000002.tar is 1000 bytes, its stats say {len(reference['shard-000002.tar'])}\n"
    )
    assert {path.name: path.read_bytes() for path in out.glob("shard-*.tar")} == reference
    manifest = json.loads((out / "manifest.json").read_text())
    assert [entry["shard"] for entry in manifest["run"]["remade"]] == ["shard-000001", "shard-000002"]
    log = (out / "generate.log").read_text()
    assert "shard-000001: shard-000001.tar's SHA-256 differs from its stats; making it again" in log
    code, _, err = generate(cli, photos, out)
    assert code == 0 and err == ""


# Case 10: every option is checked before anything is written.
BAD_OPTIONS = {
    "fov 0": (("--fov", "0"), "--fov must be between 1 and 170 degrees, got 0.0"),
    "fov 179": (("--fov", "179"), "--fov must be between 1 and 170 degrees, got 179.0"),
    "fov nan": (("--fov", "nan"), "--fov must be between 1 and 170 degrees, got nan"),
    "device": (("--teacher", "auto", "--device", "bogus"), "--device 'bogus': give auto, cpu, cuda, cuda:N or mps"),
    "dtype on cpu": (
        ("--teacher", "auto", "--device", "cpu", "--dtype", "fp16"),
        "--dtype fp16 is for GPUs; on the CPU the teacher runs in fp32 (--dtype auto)",
    ),
}


@pytest.mark.parametrize("bad", BAD_OPTIONS, ids=list(BAD_OPTIONS))
def test_a_bad_option_is_refused_before_the_output_folder_is_touched(cli, tmp_path, bad):
    options, message = BAD_OPTIONS[bad]
    photos = tmp_path / "photos"
    write_photo(photos, "a.jpg", wall_depth())
    code, _, err = generate(cli, photos, tmp_path / "out", *options)
    # --fov out of range is wrong on any machine (exit 2); a device or dtype this machine lacks is not (exit 1)
    assert code == (2 if options[0] == "--fov" else 1) and err == f"error: {message}\n"
    assert not (tmp_path / "out").exists()


# Case 6: a photo above --max-pixels is recorded, the rest of its shard written.
def test_a_photo_above_max_pixels_is_recorded_and_its_shard_written(cli, tmp_path):
    photos = tmp_path / "photos"
    write_photo(photos, "small.jpg", wall_depth())
    write_photo(photos, "large.jpg", np.full((200, 300), 12.0, np.float32))
    out = tmp_path / "out"
    code, _, err = generate(cli, photos, out, "--max-pixels", "20000")
    assert code == 0, err
    assert read_errors(out)["large.jpg"] == {
        "path": "large.jpg",
        "stage": "read",
        "reason": "large.jpg is 300x200 (60000 pixels), above --max-pixels (20000): shrink it, or raise "
        "--max-pixels where memory allows",
    }
    assert sample_keys(out) == ["small-v0"]
    code, _, err = generate(cli, photos, tmp_path / "other", "--max-pixels", "63")
    assert code == 2 and "--max-pixels must be at least 64" in err


# Case 5: --teacher auto without the model's weights: photos without a sidecar are recorded.
def test_auto_teacher_without_weights_records_photos_without_sidecar(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))
    photos = photo_folder(tmp_path, 3)
    Image.fromarray(np.full((*SIZE, 3), 128, np.uint8)).save(photos / "bare.jpg")
    out = tmp_path / "out"
    code, _, err = cli("generate", "--images", photos, "--out", out, "--fov", "90", "--quiet", "--workers", "1")
    assert code == 0, err
    reason = read_errors(out)["bare.jpg"]["reason"]
    assert read_errors(out)["bare.jpg"]["stage"] == "teacher"
    assert reason.startswith("no depth sidecar (photo.depth.png or photo.depth.npy) and teacher depth-anything-v2")
    assert "run `simlidar teachers pull depth-anything-v2-small`" in reason
    assert sample_keys(out) == ["p0-v0", "p1-v0", "p2-v0"]

    only_bare = tmp_path / "bare"
    only_bare.mkdir()
    shutil.copy(photos / "bare.jpg", only_bare / "a.jpg")
    shutil.copy(photos / "bare.jpg", only_bare / "b.jpg")
    code, _, err = cli("generate", "--images", only_bare, "--out", tmp_path / "out2", "--fov", "90", "--quiet")
    assert code == 1 and err.count("\n") == 1
    assert err.startswith("error: no sample could be made from 2 inputs (2 of them: no depth sidecar")


# Case 13: a Ray worker left over from a killed run cannot rename a shard into a folder
# that a newer run has taken over.
def test_a_writer_of_a_run_that_lost_the_lock_leaves_nothing(tmp_path):
    from simlidar.pipeline.writer import LostOutputLock, ShardWriter

    out = tmp_path / "out"
    store = LocalStore(out)
    killed = OutputLock(store)
    killed.acquire()
    record = json.loads((out / LOCK).read_text())
    (out / LOCK).write_text(json.dumps({**record, "pid": dead_pid()}))
    with OutputLock(store) as newer:
        assert newer.taken_over.token == killed.token
        with pytest.raises(LostOutputLock, match="now held by another run; shard-000000.tar not written"):
            with ShardWriter(store, "shard-000000.tar", lambda: still_held(store, killed.token)) as writer:
                writer.write("a-v0", {"json": b"{}"})
        with ShardWriter(store, "shard-000001.tar", lambda: still_held(store, newer.token)) as writer:
            writer.write("b-v0", {"json": b"{}"})
        assert sorted(path.name for path in out.iterdir()) == [LOCK, "shard-000001.tar"]


def shard_bytes(out):
    return {path.name: path.read_bytes() for path in sorted(out.glob("shard-*.tar"))}


def generate_command(photos, out, *extra):
    command = [sys.executable, "-c", "from simlidar.pipeline.cli import main; main()", "generate"]
    options = ["--fov", "90", "--teacher", "sidecar", "--quiet", "--shard-size", "1"]
    return [*command, "--images", str(photos), "--out", str(out), *options, *map(str, extra)]


def writing_pids(out):
    """Pids of the processes writing a shard into `out` now (its temporary name holds host and pid)."""
    names = os.listdir(out) if out.is_dir() else []
    return [int(match.group(1)) for name in names if (match := re.search(r"\.tar\..+-(\d+)\.tmp$", name))]


@pytest.fixture
def small_tmpfs(tmp_path):
    """mount(size_bytes) -> a folder on a tmpfs of that size; mount(size, remount=True) resizes it."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root")
    folder = tmp_path / "small"
    folder.mkdir()

    def mount(size_bytes, remount=False):
        options = f"{'remount,' if remount else ''}size={size_bytes}"
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()})")
        return folder

    yield mount
    subprocess.run(["umount", str(folder)], capture_output=True)


# Case 13, on Ray (one Ray start for both): a worker killed while it writes has its shard
# retried and the retry logged; then the disk fills up: the run stops with one line, no
# temporary file is left (the dead worker's included), the stop is in the manifest and the
# log, and what was finished is kept and resumes to the same bytes.
@pytest.mark.slow
def test_on_ray_a_killed_worker_is_retried_and_a_full_disk_stops_cleanly(cli, tmp_path, small_tmpfs):
    photos = tmp_path / "photos"
    for index in range(8):
        write_photo(photos, f"p{index}.jpg", np.full((240, 320), 8.0 + index, np.float32), seed=index)
    reference = tmp_path / "reference"
    assert generate(cli, photos, reference, "--shard-size", "1")[0] == 0
    shard_size = max(len(data) for data in shard_bytes(reference).values())
    out = small_tmpfs(5 * shard_size + 64 * 1024) / "out"
    process = subprocess.Popen(generate_command(photos, out, "--workers", "2"), stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (pids := writing_pids(out)):
        assert process.poll() is None and time.monotonic() < deadline, "no shard was ever seen being written"
        time.sleep(0.002)
    assert pids[0] != process.pid
    os.kill(pids[0], signal.SIGKILL)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 1
    assert err.decode().splitlines()[-1].startswith(f"error: disk full while writing {out}/shard-0000")
    log = (out / "generate.log").read_text()
    assert re.search(r"shard-00000\d: worker lost \(.+\); retry 1 of 3", log), log
    assert "ERROR run stopped: disk full while writing" in log
    assert not [path.name for path in out.iterdir() if path.name.endswith(".tmp")]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "incomplete" and manifest["stopped"].startswith("disk full while writing")
    kept = shard_bytes(out)
    assert kept and all(data == shard_bytes(reference)[name] for name, data in kept.items())

    small_tmpfs(64 * 2**20, remount=True)
    code, _, err = generate(cli, photos, out, "--shard-size", "1")
    assert code == 0, err
    assert shard_bytes(out) == shard_bytes(reference)


# Case 3: a second run on a folder in use is refused naming the first; the first is unharmed.
@pytest.mark.slow
def test_a_second_run_on_a_busy_output_is_refused_and_the_first_finishes_clean(cli, tmp_path):
    photos = photo_folder(tmp_path, 24)  # enough work for the first run to outlast the second's start
    out = tmp_path / "out"
    first = subprocess.Popen(generate_command(photos, out, "--workers", "1"), stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not writing_pids(out):
        assert first.poll() is None and time.monotonic() < deadline, "the first run never started a shard"
        time.sleep(0.005)
    code, _, err = generate(cli, photos, out, "--shard-size", "1")
    assert code == 1 and err.count("\n") == 1, err
    assert f"in use by another simlidar run (pid {first.pid} on {socket.gethostname()}, since " in err
    assert first.wait(timeout=300) == 0, first.stderr.read().decode()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["totals"]["samples"] == 24
    assert not (out / LOCK).exists() and not list(out.glob("*.tmp"))
    code, _, err = cli("inspect", "--shards", out, "--previews", "0")
    assert code == 0, err


TAKE_LOCK = """
import sys, time
from pathlib import Path
from simlidar.pipeline.output.lock import OutputLock, OutputLocked
from simlidar.pipeline.output.store import LocalStore
lock = OutputLock(LocalStore(Path(sys.argv[1])))
while time.time() < float(sys.argv[2]):
    pass
try:
    lock.acquire()
except OutputLocked:
    print("refused")
else:
    print("took it")
    time.sleep(2)
    lock.release()
"""


def test_runs_that_find_the_same_stale_lock_at_once_let_exactly_one_take_it(tmp_path):
    out, _ = folder_with_stale_lock(tmp_path)
    start_at = time.time() + 3.0
    racers = [
        subprocess.Popen([sys.executable, "-c", TAKE_LOCK, str(out), str(start_at)], stdout=subprocess.PIPE)
        for _ in range(4)
    ]
    outcomes = sorted(racer.communicate(timeout=60)[0].decode().strip() for racer in racers)
    assert outcomes == ["refused", "refused", "refused", "took it"]
    assert not (out / LOCK).exists() and sorted(os.listdir(out)) == []

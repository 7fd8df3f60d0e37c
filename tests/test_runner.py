"""The runner at scale: input listing, Ray distribution, SIGKILL and resume, failed shards."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image
from simlidar.pipeline.errors import PipelineError
from simlidar.pipeline.sources.photos import list_inputs
from simlidar.pipeline.worker import ShardWorker

from .helpers import tar_members, write_photo

SIZE = (240, 320)


def street(seed: int) -> np.ndarray:
    """Ground-like depth rising to a wall at 15 m, with a box whose place depends on `seed`."""
    depth = np.full(SIZE, 15.0, np.float32)
    depth[SIZE[0] // 2 :] = np.linspace(15.0, 3.0, SIZE[0] - SIZE[0] // 2)[:, None]
    depth[60:150, 20 + 30 * seed : 90 + 30 * seed] = 5.0
    return depth


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    for index in range(6):
        write_photo(folder / f"day{index % 2}", f"{index:04d}.jpg", street(index), seed=index)
    return folder


def run(cli, photos, out, *extra):
    return cli("generate", "--images", photos, "--out", out, "--fov", "80", "--shard-size", "1", "--quiet", *extra)


def shard_bytes(out):
    return {path.name: path.read_bytes() for path in sorted(out.glob("shard-*.tar"))}


@pytest.mark.slow
def test_a_run_killed_with_sigkill_resumes_on_ray_to_the_same_bytes(cli, photos, tmp_path):
    """Killed in this process, resumed on Ray with the teacher in a shared actor."""
    reference = tmp_path / "reference"
    assert run(cli, photos, reference, "--workers", "1")[0] == 0
    assert len(shard_bytes(reference)) == 6

    killed = tmp_path / "killed"
    command = [sys.executable, "-c", "from simlidar.pipeline.cli import main; main()", "generate"]
    command += ["--images", str(photos), "--out", str(killed), "--fov", "80", "--shard-size", "1", "--quiet"]
    process = subprocess.Popen([*command, "--workers", "1"], env={**os.environ, "HF_HUB_OFFLINE": "1"})
    deadline = time.monotonic() + 120
    while not (killed / "shard-000001.stats.json").exists() and process.poll() is None:
        assert time.monotonic() < deadline, "the first shards never finished"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    finished = shard_bytes(killed)
    assert 2 <= len(finished) < 6
    assert all(
        reference_bytes == finished[name]
        for name, reference_bytes in shard_bytes(reference).items()
        if name in finished
    )

    code, _, err = run(cli, photos, killed, "--workers", "2", "--teacher-actors", "1")
    assert code == 0, err
    assert shard_bytes(killed) == shard_bytes(reference)
    manifest = json.loads((killed / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["run"]["distributor"] == "ray"
    assert manifest["run"]["teacher_actors"] == 1 and "teacher: 1 actors" in (killed / "generate.log").read_text()
    assert manifest["totals"]["samples"] == 6
    assert not list(killed.glob("*.tmp"))
    assert "shard-000005 done" in (killed / "generate.log").read_text()


@pytest.mark.slow
def test_bad_inputs_mixed_into_a_ray_run_are_recorded_and_good_ones_written(cli, photos, tmp_path):
    day0 = photos / "day0"
    (day0 / "empty.jpg").write_bytes(b"")
    (day0 / "notes.jpg").write_text("not a picture")
    (day0 / "truncated.jpg").write_bytes((day0 / "0000.jpg").read_bytes()[:400])
    Image.new("RGB", (1, 1)).save(day0 / "tiny.png")
    (day0 / "album.jpg").mkdir()
    (day0 / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    write_photo(photos / "day1", "0000.jpg", street(5), seed=9)
    out = tmp_path / "out"
    code, _, err = run(cli, photos, out, "--workers", "2")
    assert code == 0, err
    errors = {json.loads(line)["path"]: json.loads(line)["reason"] for line in (out / "errors.jsonl").open()}
    assert errors.keys() == {
        f"day0/{name}" for name in ("empty.jpg", "notes.jpg", "truncated.jpg", "tiny.png", "gone.jpg")
    }
    assert errors["day0/empty.jpg"] == "empty file" and "unreadable" in errors["day0/gone.jpg"]
    assert "1x1" in errors["day0/tiny.png"] and "not a readable image" in errors["day0/notes.jpg"]
    keys = sorted(key for shard in out.glob("shard-*.tar") for key in tar_members(shard) if key.endswith(".json"))
    assert keys == sorted(
        [f"day0__{i:04d}-v0.json" for i in (0, 2, 4)] + [f"day1__{i:04d}-v0.json" for i in (0, 1, 3, 5)]
    )
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["totals"]["images_written"] == 7 and manifest["totals"]["images_skipped"] == 5


def test_a_failing_shard_is_reported_at_the_end_and_the_rest_is_kept(cli, photos, tmp_path, monkeypatch):
    out = tmp_path / "out"
    original_run = ShardWorker.run

    def fail_on_shard_2(self, plan, out_dir, on_input=lambda: None):
        if plan.index == 2:
            raise RuntimeError("simulated crash")
        return original_run(self, plan, out_dir, on_input)

    monkeypatch.setattr(ShardWorker, "run", fail_on_shard_2)
    code, _, err = run(cli, photos, out, "--workers", "1")
    assert code == 1 and err.count("\n") == 1
    assert "1 of 6 shards failed (first: shard-000002: RuntimeError: simulated crash)" in err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "incomplete" and manifest["failed_shards"][0]["shard"] == "shard-000002"
    assert len(shard_bytes(out)) == 5 and "simulated crash" in (out / "generate.log").read_text()

    monkeypatch.setattr(ShardWorker, "run", original_run)
    assert run(cli, photos, out, "--workers", "1")[0] == 0
    assert len(shard_bytes(out)) == 6
    assert json.loads((out / "manifest.json").read_text())["status"] == "complete"


def test_inputs_from_a_folder_a_glob_and_a_list_file_give_the_same_keys(photos, tmp_path):
    from_folder, root = list_inputs(str(photos))
    assert root == photos and [item.relpath for item in from_folder][:2] == ["day0/0000.jpg", "day0/0002.jpg"]
    from_glob, glob_root = list_inputs(str(photos / "**" / "*.jpg"))
    assert glob_root == photos and from_glob == from_folder
    listing = photos / "inputs.txt"
    listing.write_text("# chosen photos\nday1/0003.jpg\n\n" + str(photos / "day0" / "0000.jpg") + "\n")
    from_list, _ = list_inputs(str(listing))
    assert [(item.relpath, item.key) for item in from_list] == [
        ("day0/0000.jpg", "day0__0000"),
        ("day1/0003.jpg", "day1__0003"),
    ]
    elsewhere = tmp_path / "elsewhere"
    write_photo(elsewhere, "far.jpg", street(0))
    listing.write_text(str(elsewhere / "far.jpg") + "\n")
    (item,) = list_inputs(str(listing))[0]
    assert item.path == elsewhere / "far.jpg" and item.relpath == (elsewhere / "far.jpg").as_posix()


def test_a_single_photo_or_a_missing_source_is_a_clear_error(photos, tmp_path):
    with pytest.raises(PipelineError, match="is one photo; give its folder, a glob or a text file"):
        list_inputs(str(photos / "day0" / "0000.jpg"))
    with pytest.raises(PipelineError, match="does not exist"):
        list_inputs(str(tmp_path / "missing"))

"""Helpers shared by the tests: photo folders with depth sidecars, in-process CLI runs,
subprocess runs that leave nothing behind."""

import csv
import json
import os
import signal
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image
from simlidar.pipeline import schema
from simlidar.pipeline.cli import main

REPO = Path(__file__).resolve().parent.parent
# The shared real frames (../shared/data/README.md); tests that read them skip without them.
KITTI_OBJECT = REPO.parent / "shared" / "data" / "kitti_object"
KITTI_K = np.array([[721.5377, 0.0, 609.5593], [0.0, 721.5377, 172.854], [0.0, 0.0, 1.0]])


def write_photo(folder: Path, name: str, depth_m: np.ndarray, K: np.ndarray | None = None, seed: int = 0) -> Path:
    """A textured JPEG `name` with its metric depth sidecar (.depth.png) and, if K is
    given, its intrinsics sidecar (.json)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    height, width = depth_m.shape
    rgb = rng.integers(40, 220, size=(height, width, 3), dtype=np.uint8)
    photo = folder / name
    Image.fromarray(rgb).save(photo, quality=90)
    (folder / f"{photo.stem}.depth.png").write_bytes(schema.encode_depth_png(depth_m))
    if K is not None:
        fields = {"fx": K[0, 0], "fy": K[1, 1], "cx": K[0, 2], "cy": K[1, 2]}
        (folder / f"{photo.stem}.json").write_text(json.dumps(fields))
    return photo


def run_cli(args: list[str], capsys, monkeypatch) -> tuple[int, str, str]:
    """Run `simlidar ARGS` in-process as the console script would; (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["simlidar", *map(str, args)])
    code = 0
    try:
        main()
    except SystemExit as done:
        code = done.code or 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_process_group(command: list[str], timeout_s: float) -> subprocess.CompletedProcess:
    """Run `command` in its own process group and wait at most timeout_s; on a timeout (or
    any interruption, Ctrl-C of pytest included) kill the whole group. subprocess.run's
    timeout kills only the launcher: torchrun's ranks and loader workers would live on,
    waiting on collectives with no peer."""
    job = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    return finish_process_group(job, timeout_s)


def finish_process_group(job: subprocess.Popen, timeout_s: float) -> subprocess.CompletedProcess:
    """Wait for a job started with start_new_session=True; its whole group is killed when it
    outlives timeout_s (the test then fails, quoting its output) or the wait is interrupted."""
    try:
        out, err = job.communicate(timeout=timeout_s)
    except BaseException as stopped:
        os.killpg(job.pid, signal.SIGKILL)
        out, err = job.communicate()
        if isinstance(stopped, subprocess.TimeoutExpired):
            raise AssertionError(f"{job.args[:4]}... still ran after {timeout_s} s: killed\n{err[-3000:]}") from None
        raise
    return subprocess.CompletedProcess(job.args, job.returncode, out, err)


SIZE = (96, 160)


def scene_depth(seed=0):
    """A wall at 12 m with a box at 4-6 m: both LiDAR hits and edges."""
    depth = np.full(SIZE, 12.0, np.float32)
    offset = seed % 20
    depth[30:70, 40 + offset : 90 + offset] = 4.0 + seed * 0.5
    return depth


def generate(cli, photos, out, *extra):
    """An in-process run (--workers 1), so that tests can patch the writer; Ray runs are in test_runner.py."""
    options = ("--fov", "90", "--teacher", "sidecar", "--quiet", "--workers", "1")
    return cli("generate", "--images", photos, "--out", out, *options, *extra)


def tar_members(path) -> dict[str, bytes]:
    """Every member of a shard: name -> bytes."""
    with tarfile.open(path) as tar:
        return {member.name: tar.extractfile(member).read() for member in tar.getmembers()}


def assert_every_term_falls(log_path, steps: int, terms=("loss", "supervised", "chamfer", "kd", "relational")) -> list:
    """A training log of `steps` rows whose every term's mean over the last 5 steps is below
    its mean over the first 5; returns the rows."""
    with open(log_path) as log:
        rows = list(csv.DictReader(log))
    assert len(rows) == steps and set(rows[0]) >= set(terms)
    for term in terms:
        first = np.mean([float(row[term]) for row in rows[:5]])
        last = np.mean([float(row[term]) for row in rows[-5:]])
        assert last < first, f"{term}: {first} -> {last}"
    return rows

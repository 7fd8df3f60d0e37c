"""Training keeps generate's promises under hostile use (issue 24): a bad sample is skipped
and recorded, deterministically; a run's identity is its options and data; one writer per
run folder; SIGINT and SIGTERM save one whole step; options that contradict the data or a
checkpoint are refused before the first step, in one line naming the flag."""

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from simlidar.pipeline import schema
from simlidar.pipeline.output.lock import OutputLock
from simlidar.pipeline.output.store import LocalStore
from simlidar.pipeline.writer import ShardWriter
from simlidar.train import data, distributed, loop, run, shards
from simlidar.train.checkpoint import load_checkpoint
from simlidar.train.config import check_view_overlap
from simlidar.train.errors import TrainError
from simlidar.train.loop import train
from simlidar.train.signals import StopSignals
from torch.utils.data._utils.signal_handling import _error_if_any_worker_fails

from .helpers import finish_process_group
from .test_train_checkpoint import assert_same_run, tiny_config
from .train_shards import depth_of_another_size, eight_bit_png, ramp_sample, truncated_jpeg, write_ramp_shards

TINY = ["--batch-size", "2", "--crop", "16", "16", "--width", "4", "--workers", "0", "--quiet"]


def errors(folder) -> list[dict]:
    return [json.loads(line) for line in (folder / "errors.jsonl").read_text().splitlines()]


def rows(path) -> list[dict]:
    with open(path) as log:
        return list(csv.DictReader(log))


def checkpoint(folder, name="last.pt") -> dict:
    return torch.load(folder / name, weights_only=True)


BAD_SAMPLES = {
    "s0-1": ({"dense.png": eight_bit_png()}, "dense.png: ValueError: depth PNG must be 16-bit grayscale, got mode 'L'"),
    "s1-2": ({"jpg": truncated_jpeg()}, "jpg: OSError: image file is truncated (9 bytes not processed)"),
    "s2-0": (
        {"sparse.png": depth_of_another_size()},
        "its maps differ in size (image 24 x 40, sparse.png 12 x 20, dense.png 24 x 40, teacher 24 x 40, as H x W)",
    ),
}


@pytest.mark.parametrize("workers", [0, 2])
def test_bad_samples_are_skipped_recorded_and_a_resume_across_them_is_exact(tmp_path, workers):
    damaged = {key: members for key, (members, _) in BAD_SAMPLES.items()}
    damaged["s2-3"] = {"json": b"{not json"}
    shards = write_ramp_shards(tmp_path / "shards", shards=3, damaged=damaged)
    options = dict(steps=6, workers=workers, shuffle_buffer=3, max_bad_samples=0.5)
    train(tiny_config(shards, tmp_path / "straight", **options), progress=False)
    train(tiny_config(shards, tmp_path / "halves", **options), stop_at=3, progress=False)
    met_before_the_stop = {(line["key"], line["step"]) for line in errors(tmp_path / "halves")}
    train(tiny_config(shards, tmp_path / "halves", **options), progress=False)
    assert_same_run(checkpoint(tmp_path / "straight"), checkpoint(tmp_path / "halves"))
    # The unparseable json is left out by the index, before step 1; the others as met.
    json_line = {"split": "train", "shard": "shard-000002.tar", "key": "s2-3", "step": 0}
    json_line["reason"] = (
        "its json does not parse (Expecting property name enclosed in double quotes: line 1 column 2 (char 1))"
    )
    for folder in ("straight", "halves"):
        lines = errors(tmp_path / folder)
        assert lines[0] == json_line
        met = {line["key"]: line["reason"] for line in lines[1:]}
        assert met == {key: BAD_SAMPLES[key][1] for key in met}
        # Two loader workers read other shards in 6 steps than one does: not every bad sample comes up.
        assert len(met) == (3 if workers == 0 else 2)
        assert all(line["split"] == "train" and 1 <= line["step"] <= 6 for line in lines[1:])
        assert int(rows(tmp_path / folder / "log.csv")[-1]["skipped"]) == 1 + len(met)
    # the resume crossed skipped samples: some were met before the stop (and kept), some after
    assert ("s2-3", 0) in met_before_the_stop and any(1 <= step <= 3 for _, step in met_before_the_stop)
    assert errors(tmp_path / "halves") == errors(tmp_path / "straight")
    recorded = checkpoint(tmp_path / "halves")["bad_samples"]
    assert recorded == sorted([line["shard"], line["key"], line["step"]] for line in errors(tmp_path / "halves"))


def test_too_many_bad_samples_stop_the_run_in_one_line_with_its_step_saved(cli, tmp_path):
    damaged = {"s0-1": {"dense.png": eight_bit_png()}, "s1-2": {"jpg": truncated_jpeg()}}
    shards = write_ramp_shards(tmp_path / "shards", damaged=damaged)
    # 8 samples, --max-bad-samples 0.2: one bad sample may be skipped, the second stops the run.
    args = ["train", "--shards", shards, "--out", tmp_path / "run", "--steps", "8", "--shuffle-buffer", "2", *TINY]
    code, _, err = cli(*args, "--max-bad-samples", "0.2")
    assert (tmp_path / "run" / "last.pt").is_file(), err
    step = checkpoint(tmp_path / "run")["step"]
    assert code == 1 and err.count("\n") == 2 and err.startswith("skipping sample ")
    assert err.splitlines()[-1] == (
        f"error: 2 of 8 samples cannot be decoded, more than --max-bad-samples 0.2 allows: see "
        f"{tmp_path / 'run' / 'errors.jsonl'}; step {step} is saved: re-run with a higher --max-bad-samples to go on, "
        "or regenerate those shards and start over"
    )
    assert sorted(line["key"] for line in errors(tmp_path / "run")) == ["s0-1", "s1-2"]
    # The second bad sample came with the batch after the saved step: the resumed run meets it again.
    assert [[shard, key] for shard, key, _ in checkpoint(tmp_path / "run")["bad_samples"]] == [
        ["shard-000000.tar", "s0-1"]
    ]
    code, out, err = cli(*args, "--max-bad-samples", "0.25")
    assert code == 0 and out.startswith("step 8: loss") and checkpoint(tmp_path / "run")["step"] == 8
    assert sorted(line["key"] for line in errors(tmp_path / "run")) == ["s0-1", "s1-2"]


def test_unusable_samples_found_by_the_index_are_refused_before_the_first_step(cli, tmp_path):
    shards = write_ramp_shards(tmp_path / "shards", damaged={"s0-0": {"json": b"[1]"}, "s1-3": {"json": b"\xff"}})
    args = ["train", "--shards", shards, "--out", tmp_path / "run", "--steps", "2", *TINY]
    code, _, err = cli(*args, "--max-bad-samples", "0.2")
    assert code == 1 and err == (
        f"error: 2 of 8 samples in {shards} are unusable, more than --max-bad-samples 0.2 allows (1): see "
        "errors.jsonl in --out; regenerate those shards\n"
    )
    assert [(line["key"], line["reason"][:22], line["step"]) for line in errors(tmp_path / "run")] == [
        ("s0-0", "its json is a list, no", 0),
        ("s1-3", "its json does not pars", 0),
    ]
    assert not (tmp_path / "run" / "last.pt").exists() and not (tmp_path / "run" / "train.lock").exists()
    os.mkfifo(tmp_path / "fifo.tar")  # opening it would wait for a writer forever
    code, _, err = cli("train", "--shards", tmp_path / "fifo.tar", "--out", tmp_path / "r1", *TINY)
    assert code == 1 and "fifo.tar is neither a shard folder, a .tar file nor a brace pattern" in err
    nothing = write_ramp_shards(tmp_path / "nothing", shards=1, per_shard=1, damaged={"s0-0": {"json": b"nan"}})
    os.mkfifo(nothing / "shard-000001.tar")  # in a folder: not a shard, left out
    code, _, err = cli("train", "--shards", nothing, "--out", tmp_path / "r2", "--max-bad-samples", "1", *TINY)
    assert code == 1 and f"{nothing} holds no sample that can be read: see errors.jsonl in --out" in err


def test_a_loader_worker_that_fails_or_dies_is_one_line_with_the_step_saved(cli, tmp_path, monkeypatch):
    shards = write_ramp_shards(tmp_path / "shards", shards=4, per_shard=2)
    args = ["train", "--shards", shards, "--steps", "6", "--batch-size", "2", "--crop", "16", "16", "--width", "4"]
    real_read = data.read_units

    def shard_gone(index, shard):
        if shard == 1:
            raise FileNotFoundError(2, "No such file or directory", index.urls[shard])
        return real_read(index, shard)

    monkeypatch.setattr(data, "read_units", shard_gone)  # the workers are forked with it
    code, _, err = cli(*args, "--workers", "2", "--quiet", "--out", tmp_path / "gone")
    step = checkpoint(tmp_path / "gone")["step"]
    assert code == 1 and err == (
        f"error: FileNotFoundError: [Errno 2] No such file or directory: '{shards / 'shard-000001.tar'}'; "
        f"step {step} is saved in {tmp_path / 'gone' / 'last.pt'}, re-run to resume\n"
    )
    monkeypatch.setattr(data, "read_units", real_read)
    real_augment = data.TrainStream._augment

    def killed_on_its_third_unit(self, samples, seed):
        if torch.utils.data.get_worker_info() is not None and seed[-1] == 2:
            os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's OOM killer would
        return real_augment(self, samples, seed)

    monkeypatch.setattr(data.TrainStream, "_augment", killed_on_its_third_unit)
    code, _, err = cli(*args, "--workers", "2", "--quiet", "--out", tmp_path / "killed")
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("error: a data-loader worker stopped (DataLoader worker (pid")
    assert f"step {checkpoint(tmp_path / 'killed')['step']} is saved" in err


@pytest.mark.parametrize("name", ["SIGTERM", "SIGINT"])
def test_a_stop_signal_during_validation_saves_that_step_whole(cli, tmp_path, monkeypatch, name):
    shards = write_ramp_shards(tmp_path / "shards", shards=1)
    val = write_ramp_shards(tmp_path / "val", shards=1, per_shard=2)
    args = ["train", "--shards", shards, "--val-shards", val, "--val-every", "2", "--steps", "4", "--ema", "0.9"]
    args += ["--lr", "0.03", "--log-every", "1", *TINY]
    real_metrics = loop.model_metrics

    def signal_amid_validation(*arguments, **options):
        os.kill(os.getpid(), signal.Signals[name])
        return real_metrics(*arguments, **options)

    monkeypatch.setattr(loop, "model_metrics", signal_amid_validation)
    code, _, err = cli(*args, "--out", tmp_path / "run")
    assert code == 128 + signal.Signals[name] and err.splitlines()[-1] == (
        f"stopped by {name} at step 2: saved {tmp_path / 'run' / 'last.pt'}; re-run the command to resume"
    )
    monkeypatch.setattr(loop, "model_metrics", real_metrics)
    code, _, _ = cli(*args, "--out", tmp_path / "straight", "--stop-at", "2")
    assert code == 0
    # weights, batch-norm statistics, EMA, optimizer and the validation row: all of step 2
    assert_same_run(checkpoint(tmp_path / "run"), checkpoint(tmp_path / "straight"))
    assert rows(tmp_path / "run" / "val.csv") == rows(tmp_path / "straight" / "val.csv")
    assert [row["step"] for row in rows(tmp_path / "run" / "val.csv")] == ["2"]
    for folder in ("run", "straight"):
        assert cli(*args, "--out", tmp_path / folder)[0] == 0
    assert_same_run(checkpoint(tmp_path / "run"), checkpoint(tmp_path / "straight"))
    assert checkpoint(tmp_path / "run", "best.pt")["step"] == checkpoint(tmp_path / "straight", "best.pt")["step"]


def test_a_second_signal_stops_at_once_and_one_before_the_first_step_saves_nothing(cli, tmp_path, monkeypatch):
    shards = write_ramp_shards(tmp_path / "shards", shards=1)
    args = ["train", "--shards", shards, "--steps", "3", *TINY]
    real_loss = loop.compute_loss

    def ctrl_c_twice(*arguments):
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
        return real_loss(*arguments)

    monkeypatch.setattr(loop, "compute_loss", ctrl_c_twice)
    code, _, err = cli(*args, "--out", tmp_path / "twice")
    assert (
        code == 130 and err == "stopped at once by a second SIGINT: the last checkpoint saved stays; re-run to resume\n"
    )
    assert not (tmp_path / "twice" / "last.pt").exists() and not (tmp_path / "twice" / "train.lock").exists()
    real_index = run.index_shards

    def sigterm_while_indexing(*arguments, **options):
        os.kill(os.getpid(), signal.SIGTERM)
        return real_index(*arguments, **options)

    monkeypatch.setattr(run, "index_shards", sigterm_while_indexing)
    code, _, err = cli(*args, "--out", tmp_path / "early")
    assert code == 143 and err == "stopped by SIGTERM before training started: nothing new was saved\n"
    assert sorted(os.listdir(tmp_path / "early")) == []


@pytest.mark.slow
def test_sigterm_to_every_process_of_a_run_saves_a_step(tmp_path):
    """As Slurm stops a job: SIGTERM to the trainer and its loader workers at once."""
    shards = write_ramp_shards(tmp_path / "shards", shards=4)
    simlidar = os.path.join(os.path.dirname(sys.executable), "simlidar")
    command = [simlidar, "train", "--shards", str(shards), "--out", str(tmp_path / "run"), "--steps", "100000"]
    command += ["--log-every", "1", "--workers", "2", *TINY[:-3]]
    job = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    log = tmp_path / "run" / "log.csv"
    deadline = time.monotonic() + 240
    try:
        while not (log.is_file() and len(rows(log)) >= 3) and time.monotonic() < deadline and job.poll() is None:
            time.sleep(0.2)
    except BaseException:
        os.killpg(job.pid, signal.SIGKILL)
        job.communicate()
        raise
    os.killpg(job.pid, signal.SIGTERM)
    err = finish_process_group(job, 120).stderr
    assert (tmp_path / "run" / "last.pt").is_file(), err
    step = checkpoint(tmp_path / "run")["step"]
    assert job.returncode == 143 and step >= 3, err
    assert (
        err.splitlines()[-1]
        == f"stopped by SIGTERM at step {step}: saved {tmp_path / 'run' / 'last.pt'}; re-run the command to resume"
    )
    assert [int(row["step"]) for row in rows(log)] == list(range(1, step + 1))


class _Endless(torch.utils.data.IterableDataset):
    def __iter__(self):
        while True:
            yield torch.zeros(1)


def test_loader_workers_a_stop_signal_killed_end_nothing_after_the_loop(tmp_path):
    """SIGTERM reaches the trainer and its loader workers at once: a worker's death is noted
    during the loop, and shutting the loader down makes torch forget it (its SIGCHLD check,
    chained from ours once the loop is over, then raises nowhere: closing the logs, say)."""
    loader = torch.utils.data.DataLoader(_Endless(), batch_size=None, num_workers=2, persistent_workers=True)
    batches = iter(loader)
    next(batches)
    with StopSignals() as signals:
        signals.hold_worker_checks()
        signals.deferring = True
        worker = batches._workers[0]
        # From another process, as Slurm's: a worker leaves quietly when its parent sends it.
        subprocess.run(["kill", "-TERM", str(worker.pid)], check=True)
        # Wait for its exit without reaping it (torch looks for it the same way).
        deadline = time.monotonic() + 10
        while os.waitid(os.P_PID, worker.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        with pytest.raises(RuntimeError, match="is killed by signal: Terminated"):
            _error_if_any_worker_fails()
        data.shut_down(batches)
        signals.deferring = False
        _error_if_any_worker_fails()
        signals.check_workers()
    assert worker.exitcode == -signal.SIGTERM
    assert not any(process.is_alive() for process in batches._workers)


@pytest.mark.parametrize("requested", [None, "SIGTERM"])
def test_a_loader_connection_reset_is_a_failure_or_nothing_after_a_stop_signal(requested):
    """A worker killed while it hands over a batch resets the connection (not torch's
    RuntimeError): a loader failure for check_in, or an empty batch when a stop was asked."""
    def reset():
        raise ConnectionResetError(104, "Connection reset by peer")
        yield

    signals = StopSignals()
    signals.requested = requested
    batch = loop.next_batch(SimpleNamespace(signals=signals, batches=reset()))
    failure = {"failure": "a data-loader worker stopped ([Errno 104] Connection reset by peer)"}
    assert batch == ({} if requested else failure)


def test_validation_shards_are_checked_before_the_first_step(cli, tmp_path):
    shards = write_ramp_shards(tmp_path / "shards", shards=1)
    no_depth = {key: {"dense.png": depth_of_another_size((24, 40), 0.0)} for key in ("s0-0", "s0-1")}
    empty_val = write_ramp_shards(tmp_path / "no-ground-truth", shards=1, per_shard=2, damaged=no_depth)
    args = ["train", "--shards", shards, "--steps", "2", "--val-every", "1", *TINY]
    code, _, err = cli(*args, "--val-shards", empty_val, "--out", tmp_path / "refused")
    assert code == 1 and err == (
        f"error: no sample in --val-shards {empty_val} has ground truth (dense.png is empty everywhere, or no sample "
        "decodes: see errors.jsonl in --out); pass shards with ground truth (`convert kitti --split val`)\n"
    )
    assert os.listdir(tmp_path / "refused") == []
    (tmp_path / "nothing").mkdir()
    code, _, err = cli(*args, "--val-shards", tmp_path / "nothing", "--out", tmp_path / "refused")
    assert code == 1 and "no shards (*.tar) in" in err and "point --val-shards at" in err and "--shards at" not in err
    one_bad = write_ramp_shards(tmp_path / "val", shards=1, per_shard=3, damaged={"s0-1": {"jpg": truncated_jpeg()}})
    code, _, err = cli(*args, "--val-shards", one_bad, "--out", tmp_path / "run", "--max-bad-samples", "0.4")
    assert code == 0, err
    assert errors(tmp_path / "run") == [
        {"split": "val", "shard": "shard-000000.tar", "key": "s0-1", "step": 0, "reason": BAD_SAMPLES["s1-2"][1]}
    ]
    assert [(row["step"], row["images"]) for row in rows(tmp_path / "run" / "val.csv")] == [("1", "2"), ("2", "2")]


def test_validation_shards_damaged_during_the_run_stop_it_in_one_line_with_the_step_saved(cli, tmp_path, monkeypatch):
    shards = write_ramp_shards(tmp_path / "shards", shards=1)
    val = write_ramp_shards(tmp_path / "val", shards=1, per_shard=2)
    measured, validations = loop.model_metrics, []

    def damaged_after_the_first(*args, **kwargs):
        if validations:
            (val / "shard-000000.tar").write_bytes(b"not a tar")
        validations.append(1)
        return measured(*args, **kwargs)

    monkeypatch.setattr(loop, "model_metrics", damaged_after_the_first)
    args = ["train", "--shards", shards, "--val-shards", val, "--steps", "4", "--val-every", "2", *TINY]
    code, _, err = cli(*args, "--out", tmp_path / "run")
    assert code == 1 and err.splitlines()[-1] == (
        "error: the validation at step 4 failed (ReadError: truncated header); step 4 is saved in "
        f"{tmp_path / 'run' / 'last.pt'}: restore --val-shards and re-run to resume"
    )
    assert "Traceback" not in err
    assert checkpoint(tmp_path / "run")["step"] == 4
    assert [row["step"] for row in rows(tmp_path / "run" / "val.csv")] == ["2"]


def test_init_from_the_other_model_family_or_another_student_is_refused(cli, tmp_path):
    shards = write_ramp_shards(tmp_path / "shards", shards=1)
    base = ["train", "--shards", shards, "--steps", "1", *TINY]
    student = ["--objective", "bins-kd", "--student", "mono", "--bins", "4", "--bin-range", "1", "30"]
    assert cli(*base, *student, "--out", tmp_path / "student")[0] == 0
    assert cli(*base, "--out", tmp_path / "net")[0] == 0
    from_student = ["--init", tmp_path / "student" / "last.pt"]
    code, _, err = cli(*base, *from_student, "--out", tmp_path / "a")
    assert code == 1 and err == (
        f"error: --init {tmp_path / 'student' / 'last.pt'} holds a mono bin student, not the completion network: "
        "pass --objective bins-kd --student mono to train it on, or a completion network's checkpoint\n"
    )
    code, _, err = cli(*base, "--objective", "bins-kd", "--init", tmp_path / "net" / "last.pt", "--out", tmp_path / "b")
    assert code == 1 and "holds the completion network, not a bin student: leave out --objective bins-kd" in err
    code, _, err = cli(*base, "--objective", "bins-kd", *from_student, "--out", tmp_path / "c")
    assert code == 1 and err == (
        f"error: --init {tmp_path / 'student' / 'last.pt'} holds a mono student with 4 bins over 1-30 m: "
        "pass --student mono --bins 4 --bin-range 1 30 to train it on\n"
    )
    assert not any((tmp_path / name / "last.pt").exists() for name in "abc")
    code, _, err = cli(*base, *student, *from_student, "--out", tmp_path / "d")
    recorded = json.loads((tmp_path / "d" / "config.json").read_text())
    assert code == 0 and (recorded["student"], recorded["bins"], recorded["bin_range"]) == ("mono", 4, [1.0, 30.0])


def rig_view(scene, view, shift_m):
    """One view of a 2-view rig looking at a wall 2 m away, its camera `shift_m` to the
    right of the LiDAR: a point one view sees at column u, the other sees at u -+ 10."""
    depth = np.full((24, 40), 2.0, np.float32)
    sparse = np.where((np.arange(24) % 2 == 0)[:, None], depth, 0).astype(np.float32)
    members = ramp_sample(view)
    members["sparse.png"], members["dense.png"] = schema.encode_depth_png(sparse), schema.encode_depth_png(depth)
    T_cam_lidar = np.eye(4)
    T_cam_lidar[0, 3] = -shift_m
    meta = {"scene": scene, "rig": {"view": view, "views": 2, "neighbours": [1 - view]}, "teacher": {"id": "x"}}
    meta |= {"K": [[20.0, 0, 20.0], [0, 20.0, 12.0], [0, 0, 1]], "T_cam_lidar": T_cam_lidar.tolist()}
    members["json"] = json.dumps(meta).encode()
    return members


def test_bins_kd_without_a_teacher_and_crops_that_hold_no_shared_point_are_refused(cli, tmp_path):
    no_teacher = write_ramp_shards(tmp_path / "no-teacher", shards=1, teacher=False)
    code, _, err = cli("train", "--shards", no_teacher, "--objective", "bins-kd", "--out", tmp_path / "a", *TINY)
    assert code == 1 and err == (
        f"error: {no_teacher} has no teacher (no teacher.png, no teacher record in the json), so --objective "
        "bins-kd's KD and relational terms would be 0: convert with `--teacher NAME`, or pass --kd-weight 0 "
        "without --view-relational to train the student on the ground truth alone\n"
    )
    (tmp_path / "rig").mkdir()
    with ShardWriter(LocalStore(tmp_path / "rig"), "shard-000000.tar") as writer:
        for scene in ("p0", "p1"):
            for view, shift_m in ((0, 0.0), (1, 1.0)):
                writer.write(f"{scene}-v{view}", rig_view(scene, view, shift_m))
    relational = ["train", "--shards", tmp_path / "rig", "--objective", "bins-kd", "--view-relational"]
    relational += ["--out", tmp_path / "b", "--batch-size", "1", "--width", "4", "--workers", "0", "--quiet"]
    code, _, err = cli(*relational, "--crop", "16", "8")
    assert code == 1 and err == (
        "error: --view-relational with --crop 16 8: no crop holds a LiDAR point that two adjacent views share "
        "(every view is cropped by one window), so the relational term would be 0 on every step; "
        "pass --crop 16 11 or larger\n"
    )
    offsets = data.first_scene_offsets(shards.index_shards(shards.list_shards(tmp_path / "rig"), scenes=True))
    assert set(offsets[:, 0]) == {10} and set(offsets[:, 1]) == {0}
    check_view_overlap(tiny_config(tmp_path / "rig", tmp_path / "c", view_relational=True, crop=(16, 11)), offsets)


def test_a_run_is_its_options_and_data_wherever_its_folders_lie(cli, tmp_path):
    shards = write_ramp_shards(tmp_path / "shards")
    val = write_ramp_shards(tmp_path / "val", shards=1, per_shard=2)
    other_val = write_ramp_shards(tmp_path / "other-val", shards=2, per_shard=1)
    args = ["--steps", "4", "--val-every", "2", "--log-every", "1", *TINY]
    assert cli("train", "--shards", shards, "--val-shards", val, "--out", tmp_path / "straight", *args)[0] == 0
    code, _, _ = cli(
        "train", "--shards", shards, "--val-shards", val, "--out", tmp_path / "run", "--stop-at", "2", *args
    )
    assert code == 0
    moved = tmp_path / "moved"
    for folder in ("shards", "val", "run"):
        shutil.move(tmp_path / folder, moved / folder)
    resume = ["train", "--shards", moved / "shards", "--out", moved / "run", *args]
    code, _, err = cli(*resume, "--val-shards", other_val)
    assert code == 1 and err == (
        f"error: {moved / 'run'} was validated on other --val-shards (1 added (shard-000001.tar), "
        "1 of another size (shard-000000.tar)): best.pt and val.csv would mix two sets; pass the same "
        "--val-shards (or none) to resume, or --overwrite / another --out to validate on these\n"
    )
    first_half_elapsed_s = checkpoint(moved / "run")["elapsed_s"]
    with open(moved / "run" / "log.csv", "a") as log:
        log.write("3,0.1\ngarbage,\n")  # what a kill or a hand may leave
    code, _, err = cli(*resume, "--val-shards", moved / "val")
    assert code == 0, err
    assert_same_run(checkpoint(moved / "run"), checkpoint(tmp_path / "straight"))
    assert rows(moved / "run" / "val.csv") == rows(tmp_path / "straight" / "val.csv")
    recorded = json.loads((moved / "run" / "config.json").read_text())
    assert recorded["world_size"] == 1 and recorded["data"]["shards"]["count"] == 2
    assert recorded["data"]["val_shards"]["sha256"] == checkpoint(moved / "run")["identity"]["val_shards"]["sha256"]
    # elapsed_s goes on from the first half's (the resumed rows start from its last)
    logged = rows(moved / "run" / "log.csv")
    elapsed = [float(row["elapsed_s"]) for row in logged]
    assert [row["step"] for row in logged] == ["1", "2", "3", "4"] and elapsed[2] >= first_half_elapsed_s
    assert elapsed == sorted(elapsed) and checkpoint(moved / "run")["elapsed_s"] >= elapsed[-1]


def test_a_changed_shard_list_or_world_size_is_refused_and_overwrite_starts_over(cli, tmp_path, monkeypatch):
    shards = write_ramp_shards(tmp_path / "shards")
    args = ["train", "--shards", shards, "--out", tmp_path / "run", "--steps", "3", "--log-every", "1", *TINY]
    assert cli(*args, "--stop-at", "2")[0] == 0
    code, _, err = cli(*args, "--stop-at", "2")
    assert code == 1 and err == (
        "error: --stop-at 2 is at or below the run's step 2: pass a --stop-at above 2, or none to train on to --steps\n"
    )
    write_ramp_shards(tmp_path / "more", shards=3)
    shutil.copy(tmp_path / "more" / "shard-000002.tar", shards)
    code, _, err = cli(*args)
    assert code == 1 and err == (
        f"error: {tmp_path / 'run'} holds a different run (--shards: 1 added (shard-000002.tar)): resume with the "
        "same options and data, pass --overwrite to start it over, or use another --out\n"
    )
    (shards / "shard-000002.tar").unlink()
    shutil.move(shards / "shard-000001.tar", tmp_path / "aside.tar")
    code, _, err = cli(*args)
    assert code == 1 and "holds a different run (--shards: 1 removed (shard-000001.tar)): resume with" in err
    shutil.move(tmp_path / "aside.tar", shards / "shard-000001.tar")
    monkeypatch.setattr(distributed, "setup", lambda use_cuda: distributed.Ranks(0, 2, 0))  # as torchrun's rank 0 of 2
    code, _, err = cli(*args)
    assert code == 1 and "holds a different run (world size 1 -> 2 (torchrun --nproc_per_node))" in err
    monkeypatch.undo()
    code, out, err = cli(*args, "--overwrite", "--steps", "1")
    assert code == 0 and out.startswith("step 1: loss") and checkpoint(tmp_path / "run")["step"] == 1
    assert [row["step"] for row in rows(tmp_path / "run" / "log.csv")] == ["1"]
    assert json.loads((tmp_path / "run" / "config.json").read_text())["steps"] == 1
    (tmp_path / "run" / "last.pt").write_bytes(b"PK\x03\x04 cut short")
    code, _, err = cli(*args)
    assert code == 1 and err == (
        f"error: {tmp_path / 'run' / 'last.pt'} is not a loadable simlidar checkpoint (it is truncated or damaged): "
        "the run cannot resume from it: pass --overwrite to start it over, or use another --out\n"
    )
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "log.csv").write_text("mine")
    code, _, err = cli("train", "--shards", shards, "--out", tmp_path / "notes", "--steps", "1", *TINY)
    assert code == 1 and "notes is not empty and holds no training run: use a new --out, or pass --overwrite" in err
    assert (tmp_path / "notes" / "log.csv").read_text() == "mine"


def test_one_writer_per_run_folder_and_a_stale_lock_is_taken_over(cli, tmp_path):
    shards = write_ramp_shards(tmp_path / "shards", shards=1)
    args = ["train", "--shards", shards, "--out", tmp_path / "run", "--steps", "1", *TINY]
    with OutputLock(tmp_path / "run", "train.lock"):
        code, _, err = cli(*args)
    assert code == 1 and err.startswith(
        f"error: {tmp_path / 'run'} is in use by another simlidar run (pid {os.getpid()} on "
    )
    assert err.endswith(f"(if that run is gone, delete {tmp_path / 'run' / 'train.lock'})\n") and err.count("\n") == 1
    gone = subprocess.Popen(["true"])
    gone.wait()
    holder = {"host": socket.gethostname(), "pid": gone.pid, "process_start": "1", "since": "then", "token": "old"}
    (tmp_path / "run" / "train.lock").write_text(json.dumps(holder))
    code, out, err = cli(*args)
    assert code == 0 and out.startswith("step 1: loss") and not (tmp_path / "run" / "train.lock").exists()


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--device", "foo"], "--device 'foo' is not a device: use auto, cpu, cuda, cuda:N or mps"),
        (["--device", "meta"], "--device meta cannot train or evaluate: use auto, cpu, cuda, cuda:N or mps"),
        (["--device", "cuda"], "--device cuda: this torch (TORCH) is a CPU build; pass --device cpu, or install"),
        (
            ["--crop", "16", "16", "--batch-size", "1"],
            "--crop 16 16 with --batch-size 1 leaves the model's deepest "
            "features 1 x 1, one value per channel, too few for batch norm: pass a --crop above 16 on one side, or "
            "--batch-size 2",
        ),  # fmt: skip
        (["--lr", "inf"], "--lr must be a finite number (got inf)"),
        (["--max-bad-samples", "1.5"], "--max-bad-samples must lie in [0, 1] (got 1.5)"),
        (
            ["--init", "JUNK"],
            "JUNK is not a loadable simlidar checkpoint (it holds objects other than tensors and "
            "plain data, or is no torch file at all): pass a last.pt or best.pt that `simlidar train` wrote",
        ),  # fmt: skip
    ],
)
def test_options_that_cannot_work_are_one_line_errors_before_the_first_step(
    cli, tmp_path, monkeypatch, option, message
):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", None)  # a CPU build of torch, as here, on any machine
    shards = write_ramp_shards(tmp_path / "shards", shards=1)
    (tmp_path / "junk.pt").write_bytes(b"\x80\x04not a checkpoint")
    option = [str(tmp_path / "junk.pt") if value == "JUNK" else value for value in option]
    message = message.replace("JUNK", str(tmp_path / "junk.pt")).replace("TORCH", torch.__version__)
    code, _, err = cli("train", "--shards", shards, "--out", tmp_path / "run", *TINY, *option)
    usage = option[0] in ("--lr", "--max-bad-samples")  # out of range whatever the machine or data: exit 2
    assert code == (2 if usage else 1) and err.startswith(f"error: {message}") and err.count("\n") == 1, err
    assert "weights_only" not in err and not (tmp_path / "run" / "last.pt").exists()


def test_a_loss_that_is_not_finite_names_its_samples_and_advice_that_works(cli, tmp_path, monkeypatch):
    shards = write_ramp_shards(tmp_path / "shards", shards=1)
    args = ["train", "--shards", shards, "--steps", "3", "--shuffle-buffer", "1", *TINY]
    real_loss = loop.compute_loss

    def diverging_at_the_second_step(config, outputs, batch):
        loss, parts = real_loss(config, outputs, batch)
        return (loss * float("nan"), parts) if batch["rgb"][0, 1, 0, 0] * 255 > 1.5 else (loss, parts)

    monkeypatch.setattr(loop, "compute_loss", diverging_at_the_second_step)
    code, _, err = cli(*args, "--out", tmp_path / "run")
    last = tmp_path / "run" / "last.pt"
    assert code == 1 and err == (
        "error: the loss is not finite at step 2, on a batch of s0-2 (shard-000000.tar), s0-3 (shard-000000.tar): "
        f"check those samples; step 1 is saved in {last}, to go on with a lower learning rate start a new run "
        f"from it (--init {last} --lr 0.0001 --out NEW_FOLDER)\n"
    )
    assert checkpoint(tmp_path / "run")["step"] == 1
    monkeypatch.setattr(loop, "compute_loss", real_loss)
    code, out, err = cli(*args, "--init", last, "--lr", "0.0001", "--out", tmp_path / "new")
    assert code == 0 and out.startswith("step 3: loss"), err


def test_eval_into_one_folder_shows_one_evaluation_and_skips_bad_samples(cli, tmp_path):
    first = write_ramp_shards(tmp_path / "first", shards=1, per_shard=2)
    second = write_ramp_shards(tmp_path / "second", shards=1, per_shard=3, damaged={"s0-0": {"jpg": truncated_jpeg()}})
    (tmp_path / "second" / "shard-000000.tar").rename(tmp_path / "second" / "other.tar")
    assert cli("train", "--shards", first, "--out", tmp_path / "run", "--steps", "1", *TINY)[0] == 0
    evaluate = ["eval", "--checkpoint", tmp_path / "run" / "last.pt", "--out", tmp_path / "eval", "--quiet"]
    assert cli(*evaluate, "--shards", first)[0] == 0
    assert sorted(os.listdir(tmp_path / "eval" / "previews")) == ["s0-0.png", "s0-1.png"]
    code, out, _ = cli(*evaluate, "--shards", second)
    assert code == 0 and out.startswith("2 images (1 samples skipped: they do not decode): RMSE")
    assert sorted(os.listdir(tmp_path / "eval" / "previews")) == ["s0-1.png", "s0-2.png"]
    result = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert result["skipped"] == [{"shard": "other.tar", "key": "s0-0", "reason": BAD_SAMPLES["s1-2"][1]}]


@pytest.mark.parametrize(
    "content",
    [b"", b"junk\n", b"\x80\x04not a checkpoint", bytes(range(256)) * 4, b"PK\x03\x04 cut short", b"{}"],
)
def test_a_file_that_is_no_checkpoint_is_one_line_without_torchs_advice(tmp_path, content):
    (tmp_path / "x.pt").write_bytes(content)
    with pytest.raises(TrainError, match=r"x\.pt is not a (loadable )?simlidar checkpoint \(") as error:
        load_checkpoint(tmp_path / "x.pt")
    assert "\n" not in str(error.value) and "weights_only" not in str(error.value)

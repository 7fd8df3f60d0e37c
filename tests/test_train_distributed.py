"""Multi-process training with torchrun on the CPU (gloo): two ranks read disjoint
samples, train in step, and only rank 0 writes the run."""

import csv
import json
import sys
import time
from pathlib import Path

import pytest
import torch
from simlidar.train.factory import pick_device

from .helpers import REPO, run_process_group
from .train_shards import write_ramp_shards


def test_torchrun_two_ranks_see_disjoint_samples_and_rank0_writes(tmp_path):
    shards = write_ramp_shards(tmp_path / "shards", shards=4, per_shard=2)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    done = run_process_group([*command, str(REPO / "tests" / "ddp_run.py"), str(shards), str(tmp_path / "out")], 300)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = [json.loads((tmp_path / "out" / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    # 8 samples in 4 shards; each rank reads 2 shards per epoch: 4 samples, none of the other's
    assert len(set(seen[0])) == len(set(seen[1])) == 4 and not set(seen[0]) & set(seen[1])
    run = tmp_path / "out" / "run"
    assert torch.load(run / "last.pt", weights_only=True)["step"] == 2
    with open(run / "log.csv") as log:
        assert [row["step"] for row in csv.DictReader(log)] == ["1", "2"]


def test_each_rank_picks_its_own_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert pick_device("auto", local_rank=1) == torch.device("cuda", 1)
    assert pick_device("cuda", local_rank=3) == torch.device("cuda", 3)
    assert pick_device("cuda:0", local_rank=3) == torch.device("cuda", 0)
    assert pick_device("cpu", local_rank=3) == torch.device("cpu")


def test_torchrun_of_the_cli_records_its_world_size_and_only_rank_0_speaks(tmp_path, cli):
    shards = write_ramp_shards(tmp_path / "shards", shards=4, per_shard=2)
    simlidar = Path(sys.executable).parent / "simlidar"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "--no-python"]
    args = ["train", "--shards", str(shards), "--out", str(tmp_path / "run"), "--batch-size", "2", "--crop", "16", "16"]
    args += ["--width", "4", "--workers", "0", "--quiet", "--device", "cpu"]
    command = [*torchrun, str(simlidar), *args, "--steps", "2"]
    done = run_process_group(command, 300)
    assert done.returncode == 0, done.stderr[-3000:]
    # rank 1 used to print "step 2: loss None"
    assert done.stdout.count("step 2: loss ") == 1 and "None" not in done.stdout
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())
    assert recorded["world_size"] == 2 and recorded["data"]["shards"]["count"] == 4
    code, _, err = cli(*args, "--steps", "3")
    assert code == 1 and "holds a different run (world size 2 -> 1 (torchrun --nproc_per_node))" in err
    # Both ranks refuse a changed run; one of them says why, the other stops without a word.
    done = run_process_group([*command, "--lr", "0.5"], 300)
    said = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert done.returncode != 0 and len(said) == 1 and "holds a different run (--lr 0.001 -> 0.5)" in said[0]


def test_a_launcher_past_its_timeout_is_killed_with_every_process_it_started(tmp_path):
    """subprocess.run(timeout=...) kills torchrun alone, then waits for its ranks, which hold
    the output pipes: a stuck rank hung the test. The whole group goes now, at the timeout."""
    child_pid = tmp_path / "child.pid"
    began = time.monotonic()
    with pytest.raises(AssertionError, match="still ran after 1 s: killed"):
        run_process_group(["bash", "-c", f"sleep 60 & echo $! > {child_pid}; wait"], 1)
    assert time.monotonic() - began < 30
    status = Path(f"/proc/{int(child_pid.read_text())}/status")
    assert not status.exists() or "State:\tZ" in status.read_text()  # gone, or dead awaiting its reaper

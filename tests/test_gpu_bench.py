"""`simlidar bench gpu`: the teacher architectures it times, its pieces, and its CPU half run
end to end at its smallest size (the figures themselves are the bench's, never asserted)."""

import hashlib
import json
import os
import stat
import time
from itertools import product

import numpy as np
import pytest
import torch
from PIL import Image
from simlidar.pipeline.bench.gpu import (
    GpuUtilisation,
    ShardSpan,
    shard_spans,
    steady_rate,
    steady_window,
    time_shares,
    torchrun_row,
)
from simlidar.pipeline.bench.gpu_plan import PLANS
from simlidar.pipeline.bench.scaling import copy_scene
from simlidar.pipeline.bench.teacher import DA_V2_ARCHITECTURES, depth_anything_v2_config
from simlidar.teachers.registry import MODELS
from simlidar.train.gpu_bench import OBJECTIVES, logged_rate
from transformers import DepthAnythingForDepthEstimation

from .helpers import REPO

# Parameters of the released checkpoints (model.safetensors of Depth-Anything-V2-{Small,Base}-hf).
PUBLISHED_PARAMETERS = {"depth-anything-v2-small": 24_785_089, "depth-anything-v2-base": 97_470_785}


def test_the_random_weight_teachers_have_the_published_models_parameter_counts():
    assert set(DA_V2_ARCHITECTURES) == set(PUBLISHED_PARAMETERS)
    for name, published in PUBLISHED_PARAMETERS.items():
        with torch.device("meta"):  # the architecture alone: no weights to initialise
            model = DepthAnythingForDepthEstimation(depth_anything_v2_config(name))
        assert sum(parameter.numel() for parameter in model.parameters()) == published
        assert round(published / 1e6, 1) == MODELS[name].params_m
        assert model.config.backbone_config.out_indices == [3, 6, 9, 12]


def test_copies_of_a_scene_differ_in_bytes_only(tmp_path):
    copy_scene(REPO / "examples" / "scenes" / "yard.jpg", tmp_path, 3, scale=4, distinct=True)
    photos = sorted(tmp_path.glob("*.jpg"))
    assert [photo.name for photo in photos] == ["yard_00000.jpg", "yard_00001.jpg", "yard_00002.jpg"]
    assert len({hashlib.sha256(photo.read_bytes()).hexdigest() for photo in photos}) == 3
    pixels = [np.asarray(Image.open(photo)) for photo in photos]
    assert pixels[0].shape == (120, 160, 3) and all(np.array_equal(pixels[0], other) for other in pixels[1:])
    assert (tmp_path / "yard_00002.json").stat().st_nlink == 3


def test_the_loops_rate_leaves_out_the_first_window_and_weighs_windows_by_steps(tmp_path):
    log = tmp_path / "log.csv"
    log.write_text("step,loss,samples_per_s\n2,1.0,1.0\n4,1.0,10.0\n5,1.0,5.0\n")
    # steps 3-4 at 10/s and step 5 at 5/s: 3 steps' samples in 2/10 + 1/5 of a step's time
    assert logged_rate(log) == pytest.approx(3 / 0.4)
    log.write_text("step,loss,samples_per_s\n1,1.0,4.0\n")
    assert logged_rate(log) == pytest.approx(4.0)


def test_ranks_that_disagree_make_a_failed_row():
    figures = {"objective": "completion", "backend": "nccl", "steps": 5, "samples_per_s": 9.0, "peak_gpu_gb": 1.0}
    assert torchrun_row({**figures, "ranks": 2, "weight_spread": 0.0}).error == ""
    assert torchrun_row({**figures, "ranks": 1, "weight_spread": 0.0}).error == ""
    row = torchrun_row({**figures, "ranks": 4, "weight_spread": 3e-7})
    assert row.error == "the ranks' weights differ by up to 3e-07" == row.note


def test_a_failed_torchrun_is_run_once_more_and_its_row_says_so(tmp_path, monkeypatch):
    from simlidar.train import gpu_bench

    figures = {"objective": "completion", "backend": "gloo", "steps": 1, "samples_per_s": 2.0, "peak_gpu_gb": None}
    attempts = []

    def launch(command):
        attempts.append(command)
        if len(attempts) % 2:
            return 1, "rank 1 aborted\nSignal 6 (SIGABRT) received by PID 7\n"
        (tmp_path / "torchrun.json").write_text(json.dumps([{**figures, "ranks": 2, "weight_spread": 0.0}]))
        return 0, ""

    monkeypatch.setattr(gpu_bench, "launch", launch)
    (done,) = gpu_bench.torchrun("shards", tmp_path, 1, (32, 64), 1)
    assert len(attempts) == 2 and done["retried_after"].startswith("torchrun on ")
    assert done["retried_after"].endswith(":\nrank 1 aborted\nSignal 6 (SIGABRT) received by PID 7")
    ranks = torch.cuda.device_count() if torch.cuda.is_available() else 2
    row = torchrun_row(done)
    assert row.error == "" and row.note == (
        "the ranks' weights agree bit for bit; "
        f"a second attempt (the first: torchrun on {ranks} ranks failed (exit 1):)"
    )
    monkeypatch.setattr(gpu_bench, "launch", lambda command: (1, "still broken\n"))
    with pytest.raises(RuntimeError, match="failed \\(exit 1\\):\nstill broken$"):
        gpu_bench.torchrun("shards", tmp_path, 1, (32, 64), 1)


def test_the_steady_window_runs_from_the_first_end_to_the_last_start(tmp_path):
    # Two task slots: shards of 4 photos; the first wave's first shard ends at 10 s.
    spans = [
        ShardSpan(0.0, 10.0, 4, {"total": 10.0, "teacher": 8.0, "cast": 1.0}),
        ShardSpan(0.0, 12.0, 4, {"total": 12.0, "teacher": 9.0, "cast": 2.0}),
        ShardSpan(10.0, 14.0, 4, {"total": 4.0, "teacher": 2.0, "cast": 1.0}),
        ShardSpan(12.0, 16.0, 4, {"total": 4.0, "teacher": 2.0, "cast": 1.0}),
        ShardSpan(14.0, 18.0, 4, {"total": 4.0, "teacher": 2.0, "cast": 1.0}),
    ]
    assert steady_window(spans) == (10.0, 14.0)
    # in 10..14 s: 1/6 of shard 2, all of shard 3, half of shard 4
    assert steady_rate(spans, (10.0, 14.0)) == pytest.approx((4 / 6 + 4 + 2) / 4)
    assert steady_window(spans[:2]) is None  # one wave: no shard starts after another ends
    row = time_shares([span for span in spans if span.start >= 10.0])
    assert row.figures == {"shards": 3, "ms_per_photo": {"teacher": 500.0, "cast": 250.0, "other": 250.0}}
    assert row.note == "teacher 50% (500 ms), cast 25% (250 ms), other 25% (250 ms)"
    stats = tmp_path / "shard-000000.stats.json"
    stats.write_text(json.dumps({"inputs": 4, "seconds": {"total": 2.5, "cast": 1.0}}))
    os.utime(stats, (1000.0, 1000.0))
    assert shard_spans(tmp_path) == [ShardSpan(997.5, 1000.0, 4, {"total": 2.5, "cast": 1.0})]


FAKE_NVIDIA_SMI = """#!/bin/sh
echo "$@" > "$(dirname "$0")/arguments"
printf '37\\n[N/A]\\n55\\n'
exec sleep 30
"""


def sampled_arguments(folder, utilisation: GpuUtilisation) -> list[str]:
    """Run `utilisation`'s block until the fake nvidia-smi has printed its two samples; the
    arguments it was called with."""
    (folder / "arguments").unlink(missing_ok=True)
    deadline = time.monotonic() + 60  # a loaded machine may take seconds to start the fake
    with utilisation:
        while len(utilisation.samples) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    return (folder / "arguments").read_text().split()


def test_gpu_utilisation_is_read_from_nvidia_smi_and_absent_without_it(tmp_path, monkeypatch):
    fake = tmp_path / "nvidia-smi"
    fake.write_text(FAKE_NVIDIA_SMI)
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,3")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    utilisation = GpuUtilisation(interval_ms=50)
    arguments = sampled_arguments(tmp_path, utilisation)
    assert utilisation.mean() == pytest.approx(46.0)  # "[N/A]" is no sample
    assert "--loop-ms=50" in arguments and "--id=1,3" in arguments
    start, seconds = utilisation.started, utilisation.seconds
    utilisation.samples = [(start + 0.1 * index * seconds, 10.0 * index) for index in range(11)]
    assert utilisation.mean(utilisation.middle_half()) == pytest.approx(50.0)  # samples 3..7 of 0..10
    assert "--id=1" in sampled_arguments(tmp_path, GpuUtilisation(devices=1))  # the first GPU torch sees
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert "--id=0" in sampled_arguments(tmp_path, GpuUtilisation(devices=1))
    assert not [argument for argument in sampled_arguments(tmp_path, GpuUtilisation()) if "--id" in argument]
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with GpuUtilisation() as without:
        pass
    assert without.mean() is None


def test_a_gpu_size_without_a_gpu_and_a_bad_json_path_are_refused_before_any_work(cli, tmp_path):
    code, out, err = cli("bench", "gpu", "--size", "gpu", "--json", tmp_path / "x.json")
    assert code == 1 and "--size gpu needs a CUDA GPU" in err and err.count("\n") == 1 and out == ""
    code, out, err = cli("bench", "gpu", "--size", "tiny", "--json", tmp_path)
    assert code == 2 and f"'{tmp_path}' is a directory" in err and out == ""
    (tmp_path / "file").write_text("")
    code, out, err = cli("bench", "gpu", "--size", "tiny", "--json", tmp_path / "file" / "x.json")
    assert code == 1 and f"--json {tmp_path / 'file' / 'x.json'}: cannot make its folder" in err and out == ""
    code, out, err = cli("bench", "--repeats", "3", "gpu", "--size", "tiny", "--json", tmp_path / "x.json")
    assert code == 2 and "No such option '--repeats'" in err and out == ""
    assert not (tmp_path / "x.json").exists()


def test_a_failed_row_makes_the_command_exit_1(cli, tmp_path, monkeypatch):
    """click hands a command's Exit(1) back as a value outside standalone mode: main() exits with it."""
    from simlidar.pipeline.bench import gpu as gpu_bench

    monkeypatch.setattr(gpu_bench, "run_gpu_bench", lambda size, json_path, training: size == "cpu")
    assert cli("bench", "gpu", "--size", "tiny", "--json", tmp_path / "x.json")[0] == 1
    assert cli("bench", "gpu", "--size", "cpu", "--json", tmp_path / "x.json")[0] == 0


@pytest.mark.slow
def test_the_cpu_half_runs_every_part_exits_0_and_writes_every_row(cli, tmp_path):
    report_path = tmp_path / "report" / "bench.json"
    code, out, err = cli("bench", "gpu", "--size", "tiny", "--json", report_path)
    assert code == 0, err
    assert out.startswith("no CUDA GPU here (torch ")
    report = json.loads(report_path.read_text())
    rows = report["rows"]
    assert not [row for row in rows if row["error"]]
    plan = PLANS["tiny"]
    teacher = [row["figures"] for row in rows if row["part"] == "teacher"]
    expected = product(plan.teacher.models, plan.teacher.precisions, plan.teacher.batch_sizes)
    assert [(row["model"], row["precision"], row["batch_size"]) for row in teacher] == list(expected)
    assert [row["parameters"] for row in teacher] == [PUBLISHED_PARAMETERS[row["model"]] for row in teacher]
    alone, run, shares, fed = (row for row in rows if row["part"] == "generate")
    # 2 cores, one holding the teacher actor: one task slot, so the 3 one-photo shards run one
    # after another and the steady window is the second one's span
    assert run["figures"]["photos"] == [0, 3] and run["figures"]["seconds"][0] == 0
    assert run["figures"]["ratio"] == pytest.approx(run["rate"] / alone["rate"])
    assert run["note"].endswith(f"over its steady {run['figures']['window_s']:.1f} s")
    assert shares["figures"]["shards"] == 1
    assert {"read", "teacher", "teacher cache", "cast", "encode"} <= set(shares["figures"]["ms_per_photo"])
    # The actor alone: one call of generate's batch (4), photos made of uint8 model inputs.
    assert fed["figures"]["photos"] == plan.generate.actor_calls * 4 and "uint8" in fed["what"]
    assert fed["figures"]["ratio"] == pytest.approx(fed["rate"] / alone["rate"])
    assert fed["figures"]["forward_ms"] > fed["figures"]["input_ms"] > 0
    train = [row for row in rows if row["part"] == "train"]
    assert [row["what"].split(",")[0] for row in train] == list(OBJECTIVES)
    assert all(row["figures"]["workers_needed"] >= 1 and row["peak_gpu_gb"] is None for row in train)
    ranks = [row["figures"] for row in rows if row["part"] == "torchrun"]
    assert [(row["objective"], row["ranks"], row["backend"]) for row in ranks] == [
        (objective, 2, "gloo") for objective in OBJECTIVES
    ]
    assert all(row["weight_spread"] == 0.0 for row in ranks)
    assert set(report["seconds"]) == {"teacher", "generate", "train", "total"}
    table = out.splitlines()[3:]
    assert sum(line.split()[:1] in (["teacher"], ["generate"], ["train"], ["torchrun"]) for line in table) == len(rows)

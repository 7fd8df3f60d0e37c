"""The training part of `simlidar bench gpu` (pipeline/bench/gpu.py runs it on the shards it
has just generated):

- single_device: per objective, the training loop itself (`train`: AMP and channels-last on
  CUDA, its loader workers, EMA, checkpoints) for a few hundred steps, its samples/s and peak
  GPU memory; its compute alone (bench.training_rate, one batch kept on the device) and one
  loader worker's rate, whose ratio is the loader workers needed to keep up;
- torchrun: the compute-only steps under torchrun on every GPU (nccl; 2 CPU ranks on gloo
  without a GPU), with the samples/s over all ranks and whether the ranks' weights agree.

`python -m torch.distributed.run --nproc_per_node N -m simlidar.train.gpu_bench SPEC.json`
is the ranks' side: each trains, rank 0 writes the figures where SPEC.json says.
"""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import torch

from . import distributed
from .bench import loader_rate, training_rate
from .config import TrainConfig
from .factory import pick_device
from .loop import train
from .shards import index_shards, list_shards

OBJECTIVES = ("completion", "bins-kd")
# A torchrun that has not finished by then is stuck (a rank waiting on a collective for ever).
TORCHRUN_TIMEOUT_S = 300


def reset_peak_gpu_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_gpu_memory_gb(device: torch.device) -> float | None:
    """The most memory tensors held on `device` since the last reset (GB); None off CUDA."""
    return torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else None


def logged_rate(log_csv: Path) -> float:
    """Samples/s over a run's log.csv rows after the first (whose window holds the start-up:
    loader workers starting, the first kernels), weighting each window by its steps."""
    with open(log_csv) as log:
        rows = [(int(row["step"]), float(row["samples_per_s"])) for row in csv.DictReader(log)]
    windows, previous = [], 0
    for step, rate in rows:
        windows.append((step - previous, rate))
        previous = step
    steady = windows[1:] or windows
    # Each window's samples are its steps x the batch, so the batch cancels out of the ratio.
    return sum(steps for steps, _ in steady) / sum(steps / rate for steps, rate in steady)


def single_device(
    shards: str,
    scratch: Path,
    objective: str,
    *,
    steps: int,
    batch_size: int,
    crop: tuple[int, int],
    workers: int | None,
    timed_steps: int,
    loader_samples: int,
) -> dict:
    """The figures of one objective on this process's device (see the module's docstring);
    workers None: one loader process per core but one (the training process's)."""
    index = index_shards(list_shards(shards))
    device = pick_device("auto")
    workers = max(1, (os.cpu_count() or 2) - 1) if workers is None else workers
    config = TrainConfig(
        shards,
        objective=objective,
        out=str(scratch / objective),
        steps=steps,
        batch_size=batch_size,
        crop=tuple(crop),
        workers=workers,
        log_every=max(1, steps // 4),
        save_every=steps,
        device=str(device),
    )
    per_worker = loader_rate(index, config.crop, loader_samples)
    compute_rate = training_rate(index, config, timed_steps, device)[0]  # its model let go before the loop
    reset_peak_gpu_memory(device)
    train(config, progress=False)
    return {
        "what": f"{objective}, batch {batch_size}, crop {crop[0]}x{crop[1]}, {steps} steps of the loop",
        "samples_per_s": logged_rate(Path(config.out) / "log.csv"),
        "peak_gpu_gb": peak_gpu_memory_gb(device),
        "compute_samples_per_s": compute_rate,
        "loader_samples_per_s_per_worker": per_worker,
        "workers_needed": math.ceil(compute_rate / per_worker),
        "workers_used": min(workers, len(index.urls)),
        "amp": amp_name(device),
        "channels_last": device.type == "cuda",
    }


def amp_name(device: torch.device) -> str:
    """The autocast dtype the loop trains in on `device` (train/loop.py's choice)."""
    if device.type != "cuda":
        return "off"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def torchrun(shards: str, scratch: Path, batch_size: int, crop: tuple[int, int], timed_steps: int) -> list[dict]:
    """The compute-only steps of each objective under torchrun with every visible GPU (2 CPU
    ranks without one): one dict per objective. A failed job is run once more (gloo, the CPU
    ranks' backend, now and then aborts a rank as a job ends: pytorch/gloo#168); the figures
    then say so in "retried_after" (None when the first attempt worked). RuntimeError with
    torchrun's last words when both fail."""
    scratch.mkdir(parents=True, exist_ok=True)
    ranks = torch.cuda.device_count() if torch.cuda.is_available() else 2
    spec = {
        "shards": shards,
        "batch_size": batch_size,
        "crop": list(crop),
        "steps": timed_steps,
        "result": str(scratch / "torchrun.json"),
    }
    (scratch / "spec.json").write_text(json.dumps(spec))
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks)]
    command = [*launcher, "-m", "simlidar.train.gpu_bench", str(scratch / "spec.json")]
    failure = None
    for _ in range(2):
        returncode, stderr = launch(command)
        if returncode == 0:
            return [{**figures, "retried_after": failure} for figures in json.loads(Path(spec["result"]).read_text())]
        # The ranks' own errors come before torchrun's 20-line summary of who failed.
        last_words = [line for line in stderr.splitlines() if line.strip()][-200:]
        failure = f"torchrun on {ranks} ranks failed (exit {returncode}):\n" + "\n".join(last_words)
    raise RuntimeError(failure)


def launch(command: list[str]) -> tuple[int, str]:
    """Run a torchrun command in its own process group, so that a stuck run goes with all its
    ranks (a rank left behind would hold its GPU): (exit code, stderr)."""
    launched = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        _, stderr = launched.communicate(timeout=TORCHRUN_TIMEOUT_S)
    except BaseException:
        os.killpg(launched.pid, signal.SIGKILL)
        launched.communicate()
        raise
    return launched.returncode, stderr


def rank_figures(spec: dict) -> list[dict]:
    """This rank's part of `torchrun`: each objective's compute-only steps, then the samples/s
    over all ranks, rank 0's peak GPU memory and the largest difference of a weight between
    the ranks (0: they agree bit for bit)."""
    device = pick_device("auto", int(os.environ.get("LOCAL_RANK", "0")))
    ranks = distributed.setup(device.type == "cuda")
    try:
        index = index_shards(list_shards(spec["shards"]))
        backend = torch.distributed.get_backend() if torch.distributed.is_initialized() else "none"
        figures = []
        for objective in OBJECTIVES:
            config = TrainConfig(
                spec["shards"], objective=objective, batch_size=spec["batch_size"], crop=tuple(spec["crop"])
            )
            reset_peak_gpu_memory(device)
            per_rank, model = training_rate(index, config, spec["steps"], device, ranks)
            figures.append(
                {
                    "objective": objective,
                    "ranks": ranks.world_size,
                    "backend": backend,
                    "samples_per_s": distributed.mean_over_ranks([per_rank], device)[0] * ranks.world_size,
                    "peak_gpu_gb": peak_gpu_memory_gb(device),
                    "weight_spread": distributed.parameter_spread(model),
                    "steps": spec["steps"],
                }
            )
            del model  # not in the next objective's peak memory
        # Every rank is done with its collectives before any closes its connections.
        distributed.barrier()
        return figures
    finally:
        distributed.teardown()


def main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    figures = rank_figures(spec)
    if int(os.environ.get("RANK", "0")) == 0:
        Path(spec["result"]).write_text(json.dumps(figures))


if __name__ == "__main__":
    main(sys.argv[1])

"""Multi-GPU and multi-node training with torchrun (DistributedDataParallel).

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; with WORLD_SIZE > 1 `setup` joins the
process group (nccl on CUDA, gloo on CPU). Each rank reads its own shard positions (see
data.py), computes its batch, and DDP averages the gradients; rank 0 alone writes logs,
checkpoints and runs validation. --batch-size is per rank.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist

from .errors import RankStopped

Result = TypeVar("Result")


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(use_cuda: bool) -> Ranks:
    """This process's place in a torchrun job (a single process: rank 0 of 1)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Ranks()
    ranks = Ranks(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        if use_cuda:
            torch.cuda.set_device(ranks.local_rank)
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return ranks


def wrap(model: torch.nn.Module, ranks: Ranks, device: torch.device) -> torch.nn.Module:
    """The module that trains: the model itself in a single process, DDP around it under torchrun."""
    if ranks.world_size == 1:
        return model
    device_ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def mean_over_ranks(values: list[float], device: torch.device) -> list[float]:
    """Each value averaged over the ranks (the values themselves in a single process);
    device: where the backend reduces (CUDA for nccl)."""
    if not dist.is_initialized():
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return (tensor / dist.get_world_size()).tolist()


def together(ranks: Ranks, action: Callable[[], Result], undo: Callable[[Result], None] | None = None) -> Result:
    """action() on every rank, which then learn whether it failed anywhere: when it did, the
    first rank that failed raises its own error and every other rank RankStopped (after
    undo(its result), if it had one), so that one message is shown and no rank waits
    forever at a later collective for one that left."""
    try:
        result, failure = action(), None
    except Exception as error:
        result, failure = None, error
    if dist.is_initialized():
        failed = [False] * ranks.world_size
        dist.all_gather_object(failed, failure is not None)
        if any(failed) and (failure is None or failed.index(True) != ranks.rank):
            if failure is None and undo is not None:
                undo(result)
            raise RankStopped(failed.index(True))
    if failure is not None:
        raise failure
    return result


def share(stop: bool, events: list) -> tuple[bool, list]:
    """(whether any rank asks to stop, every rank's events in rank order): the same on every
    rank, so that all of them take the same decision at the same step. One small all-reduce
    per call; the events themselves travel only when some rank has any."""
    if not dist.is_initialized():
        return stop, events
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None
    counts = torch.tensor([float(stop), float(len(events))], dtype=torch.float64, device=device)
    dist.all_reduce(counts)
    if counts[1] == 0:
        return bool(counts[0]), []
    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, events)
    return bool(counts[0]), [event for rank_events in gathered for event in rank_events]


def parameter_spread(model: torch.nn.Module) -> float:
    """The largest difference of one weight between the ranks: 0.0 when every rank holds
    the same weights bit for bit, as DDP promises (and always in a single process); NaN
    when a weight is NaN. Every rank must call it (two all-reduces where the weights are)."""
    if not dist.is_initialized():
        return 0.0
    weights = torch.cat([parameter.detach().reshape(-1).float() for parameter in model.parameters()])
    highest, lowest = weights.clone(), weights.clone()
    dist.all_reduce(highest, op=dist.ReduceOp.MAX)
    dist.all_reduce(lowest, op=dist.ReduceOp.MIN)
    return (highest - lowest).max().item()

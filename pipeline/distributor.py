"""Distributors: run the per-shard worker over the pending shards, either in this
process (one worker) or as Ray tasks on every core of this machine or a cluster.

On Ray with a depth model for a teacher and GPUs in the cluster, the model runs in a
pool of GPU actors (one per GPU) that do only the forward: every shard task prepares its
batches' model inputs on its own core, sends them there (uint8 at the model's input
size) and resizes back, converts and caches what comes back, so one model copy per GPU
serves all shards and no photo's CPU work waits in the actor's single process.

Both report progress per input and return the shards that failed; a shard that
fails leaves nothing behind but its reason, so a re-run retries exactly those.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import ray
from simlidar.teachers import Teacher, TeacherUnavailable
from simlidar.teachers.factory import model_of
from simlidar.teachers.hf import HFModel
from simlidar.teachers.model_io import ModelBatch, model_input, outputs_to_host

from .config import Plan
from .errors import PipelineError
from .output.store import Store
from .stages.teacher import TeacherSpec, build_teacher
from .worker import ShardWorker
from .writer import ShardPlan

log = logging.getLogger("simlidar.generate")

# A Ray worker process that dies (OOM kill, node lost) has its shard rerun this often.
RAY_RETRIES = 3
# Calls a teacher actor on a GPU serves at once: one on the GPU, one moving in or out.
ACTOR_CALLS = 2
POLL_SECONDS = 0.5
# What _collect returns for a shard to run again.
RETRY = object()


class Progress(Protocol):
    def inputs_done(self, count: int) -> None: ...

    def shard_done(self) -> None: ...

    def starting(self, what: str) -> None:
        """Say what the run waits for before its first input (Ray's start-up takes seconds)."""


@dataclass
class ShardFailure:
    shard: str
    reason: str


def disk_error(error: OSError, store: Store, plan: ShardPlan) -> PipelineError:
    what = "disk full" if error.errno == errno.ENOSPC else f"cannot write ({error})"
    return PipelineError(
        f"{what} while writing {store.where(plan.tar_name)}; finished shards are kept: "
        "free space or fix the folder, then re-run the same command to resume"
    )


def run_in_process(
    plan: Plan, shards: list[ShardPlan], store: Store, progress: Progress, teacher: Teacher, lock_token: str = ""
) -> list[ShardFailure]:
    """Run shards one after another here with the run's `teacher`; Open3D still casts on every core."""
    worker = ShardWorker(plan, teacher, lock_token=lock_token)
    failures = []
    for shard in shards:
        started = time.perf_counter()
        try:
            stats = worker.run(shard, store, on_input=lambda: progress.inputs_done(1))
        except OSError as error:
            raise disk_error(error, store, shard) from None
        except Exception as error:
            log.error("%s failed:\n%s", shard.name, traceback.format_exc())
            failures.append(ShardFailure(shard.name, f"{type(error).__name__}: {error}"))
            continue
        log.info("%s done: %d samples in %.1f s", shard.name, stats["samples"], time.perf_counter() - started)
        progress.shard_done()
    return failures


def run_on_ray(
    plan: Plan,
    shards: list[ShardPlan],
    store: Store,
    progress: Progress,
    workers: int,
    address: str | None,
    teacher_actors: int | None = None,
    lock_token: str = "",
) -> list[ShardFailure]:
    """Run shards as Ray tasks, one CPU each, at most `workers` at a time (0: one per
    CPU of the cluster), so the images in flight stay bounded (concurrency x teacher
    batch) whatever the input count. `address` joins a running cluster; with none, a
    local Ray starts with `workers` CPUs and stops at the end. teacher_actors: size of
    the teacher actor pool (None: one per GPU for a model teacher, none for sidecars;
    0: each task runs its own teacher)."""
    started_here = not ray.is_initialized()
    if started_here:
        progress.starting(f"starting Ray ({'joining ' + address if address else 'a local cluster'}) ...")
        quiet = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
        if address:
            ray.init(address=address, **quiet)
        else:
            ray.init(num_cpus=workers or os.cpu_count(), **quiet)
    try:
        cluster_cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        concurrency = min(workers, cluster_cpus) if workers else cluster_cpus
        log.info("ray at %s: %d shards at a time", ray.get_runtime_context().gcs_address, concurrency)
        with teacher_pool(plan.teacher, teacher_actors) as actors:
            if actors:
                log.info("teacher: %d actors (%s)", len(actors), "one GPU each" if _cluster_gpus() else "on CPU")
            failures = _run_tasks(plan, shards, store, progress, concurrency, actors, lock_token)
            _log_actor_times(actors)
        return failures
    finally:
        if started_here:
            ray.shutdown()


def _log_actor_times(actors: list) -> None:
    """Where each teacher actor's time went: what caps a GPU besides the forward."""
    for index, spent in enumerate(ray.get([actor.timings.remote() for actor in actors])):
        if spent["photos"]:
            log.info(
                "teacher actor %d: %d photos in %d calls; per photo %.1f ms forward, %.1f ms input to the device",
                index,
                spent["photos"],
                spent["calls"],
                1000 * spent["forward_s"] / spent["photos"],
                1000 * spent["input_s"] / spent["photos"],
            )


def _run_tasks(
    plan: Plan,
    shards: list[ShardPlan],
    store: Store,
    progress: Progress,
    concurrency: int,
    actors: list,
    lock_token: str,
) -> list[ShardFailure]:
    """Keep `concurrency` shard tasks running until every shard is done or failed. A task
    whose worker process dies is run again from here (not by Ray) so each retry is logged."""
    counter = InputCounter.remote()
    run_shard = ray.remote(num_cpus=1, max_retries=0)(_run_shard)
    plan_reference = ray.put(plan)
    queue = list(shards)
    running: dict = {}
    lost: dict[int, int] = {}
    reported = 0
    failures = []
    while queue or running:
        while queue and len(running) < concurrency:
            shard = queue.pop(0)
            running[run_shard.remote(plan_reference, shard, store, counter, actors, lock_token)] = shard
        finished, _ = ray.wait(list(running), num_returns=1, timeout=POLL_SECONDS)
        for reference in finished:
            shard = running.pop(reference)
            failure = _collect(reference, shard, store, progress, lost)
            if failure is RETRY:
                queue.insert(0, shard)
            elif failure is not None:
                failures.append(failure)
        done = ray.get(counter.total.remote())
        progress.inputs_done(done - reported)
        reported = done
    return failures


def _collect(reference, shard: ShardPlan, store: Store, progress: Progress, lost: dict[int, int]):
    """The outcome of one finished task: None (done), RETRY (its worker process died: run it
    again, up to RAY_RETRIES times, each logged) or a ShardFailure. A full disk stops the run."""
    try:
        stats = ray.get(reference)
    except ray.exceptions.RayTaskError as error:
        cause = error.cause
        if isinstance(cause, OSError) and cause.errno == errno.ENOSPC:
            raise disk_error(cause, store, shard) from None
        log.error("%s failed:\n%s", shard.name, error)
        return ShardFailure(shard.name, f"{type(cause).__name__}: {cause}")
    except ray.exceptions.RayError as error:
        lost[shard.index] = lost.get(shard.index, 0) + 1
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if lost[shard.index] <= RAY_RETRIES:
            log.warning("%s: worker lost (%s); retry %d of %d", shard.name, reason, lost[shard.index], RAY_RETRIES)
            return RETRY
        log.error("%s failed: worker lost %d times (%s)", shard.name, RAY_RETRIES + 1, reason)
        return ShardFailure(shard.name, f"worker lost {RAY_RETRIES + 1} times ({reason})")
    log.info("%s done: %d samples in %.1f s", shard.name, stats["samples"], stats["seconds"]["total"])
    progress.shard_done()
    return None


@functools.cache
def process_teacher(spec: TeacherSpec, actor=None) -> Teacher:
    """The run's teacher, built once per process that uses it (Ray reuses its workers); with
    `actor` (a TeacherActor), its model's forward runs there and only its CPU steps here."""
    return build_teacher(spec, ActorRunner(actor) if actor is not None else None)


def _run_shard(plan: Plan, shard: ShardPlan, store: Store, counter, actors: list, lock_token: str) -> dict:
    """One Ray task: one shard, casting on this task's single CPU. Shard i's forwards run on
    actor i mod pool size, so the load spreads (which actor never changes the results)."""
    teacher = process_teacher(plan.teacher, actors[shard.index % len(actors)] if actors else None)
    worker = ShardWorker(plan, teacher, cast_threads=1, lock_token=lock_token)
    done = 0

    def report() -> None:
        nonlocal done
        done += 1
        counter.report.remote(shard.index, done)

    counter.report.remote(shard.index, 0)
    return worker.run(shard, store, on_input=report)


@ray.remote(num_cpus=0)
class InputCounter:
    """Inputs done per shard; a retried shard restarts its own count from zero."""

    def __init__(self):
        self.done_per_shard: dict[int, int] = {}

    def report(self, shard_index: int, done: int) -> None:
        self.done_per_shard[shard_index] = done

    def total(self) -> int:
        return sum(self.done_per_shard.values())


def _cluster_gpus() -> int:
    return int(ray.cluster_resources().get("GPU", 0))


@contextmanager
def teacher_pool(spec: TeacherSpec | None, size: int | None) -> Iterator[list]:
    """`size` TeacherActors for the teacher of `spec`, a GPU each where the cluster has GPUs
    (None: one per GPU for a model teacher, none for sidecars), for the block. They are killed
    at its end: the shard tasks' worker processes outlive the run on a cluster that was already
    running, each keeping its teacher (process_teacher) and so a handle to an actor, which
    would otherwise hold its GPU, or its core, from the next run."""
    gpus = _cluster_gpus()
    if size is None:
        size = gpus if spec is not None and spec.name != "sidecar" else 0
    actor_class = TeacherActor.options(num_gpus=1 if gpus else 0, max_concurrency=ACTOR_CALLS if gpus else 1)
    actors = [actor_class.remote(spec) for _ in range(size)]
    try:
        yield actors
    finally:
        for actor in actors:
            ray.kill(actor)


@ray.remote(num_cpus=1)
class TeacherActor:
    """The run's depth model on one GPU, loaded by the first call: the forward of every shard
    task's batches, which the tasks prepare (resize) and finish (resize back, cache). On a
    GPU it serves ACTOR_CALLS calls at once, so that the next batch is on the GPU while the
    last one's outputs go back; each call is one task's batch, so that a photo's depth never
    depends on which other photos were in flight. `spent` adds up where its time went."""

    def __init__(self, spec: TeacherSpec):
        self.spec = spec
        self.lock = threading.Lock()
        self._model: HFModel | None = None
        self.spent = {"photos": 0, "calls": 0, "input_s": 0.0, "forward_s": 0.0}

    def _loaded(self) -> HFModel:
        with self.lock:
            if self._model is None:
                model = model_of(process_teacher(self.spec))
                if model is None:
                    raise TeacherUnavailable(f"teacher {self.spec.name} has no model to run")
                model.model  # noqa: B018 (loads the weights now, while the other calls wait)
                self._model = model
            return self._model

    def precision(self) -> str:
        return self._loaded().precision

    def run(self, batch: ModelBatch) -> dict[str, np.ndarray]:
        """One task's batch: its pixels onto the device and normalised, the forward, the outputs
        back (on a GPU the forward's time shows when its outputs are copied back)."""
        model = self._loaded()
        started = time.perf_counter()
        pixel_values = model_input(batch, model.device)
        ready = time.perf_counter()
        outputs = outputs_to_host(model.forward(pixel_values))
        with self.lock:
            self.spent["photos"] += len(batch.pixels)
            self.spent["calls"] += 1
            self.spent["input_s"] += ready - started
            self.spent["forward_s"] += time.perf_counter() - ready
        return outputs

    def timings(self) -> dict:
        with self.lock:
            return dict(self.spent)


class ActorRunner:
    """The ModelRunner of a task whose teacher's model is a TeacherActor: every batch of a
    predict goes out at once (one call each), then the task waits for their outputs."""

    def __init__(self, actor):
        self.actor = actor
        self._precision: str | None = None

    @property
    def precision(self) -> str:
        """The actor's (asked once, when a photo first needs the model)."""
        if self._precision is None:
            self._precision = ray.get(self.actor.precision.remote())
        return self._precision

    def run_batches(self, batches: list[ModelBatch]) -> list[dict[str, np.ndarray]]:
        return ray.get([self.actor.run.remote(batch) for batch in batches])

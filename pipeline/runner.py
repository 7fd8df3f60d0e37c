"""The run, the same for `generate` and every `convert`: list the inputs of the run's kind,
plan shards, skip finished ones, hand the rest to a distributor (this process, or Ray),
then record the run in the manifest."""

from __future__ import annotations

import errno
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from simlidar.teachers import Teacher
from tqdm import tqdm

from .config import Plan, RunConfig
from .distributor import run_in_process, run_on_ray
from .errors import PipelineError
from .output.lock import OutputLock
from .output.manifest import (
    ERRORS,
    LOG,
    MANIFEST,
    check_shard,
    finalize_output,
    forget_shard,
    mark_stopped,
    prepare_output,
    read_stats,
    remove_temporaries,
)
from .output.store import Store, as_store
from .stages.teacher import build_teacher, teacher_cache_dir
from .writer import ShardPlan, plan_shards

log = logging.getLogger("simlidar.generate")


@dataclass
class RunSummary:
    """shards_remade: (shard, why) of finished shards found damaged and made again."""

    store: Store
    manifest: dict
    shards_total: int
    shards_resumed: int
    elapsed_s: float
    shards_remade: list[tuple[str, str]]


@dataclass
class _Run:
    """What making the pending shards needs: the plan and its teacher, the folder, the
    shards, how they are distributed (run_info, as recorded) and the lock's token."""

    plan: Plan
    teacher: Teacher
    store: Store
    shards: list[ShardPlan]
    run_info: dict
    lock_token: str
    started: float


def generate(
    config: RunConfig,
    out: Store | str | Path,
    overwrite: bool = False,
    progress: bool = True,
    workers: int = 0,
    address: str | None = None,
    teacher_actors: int | None = None,
) -> RunSummary:
    """Make every missing shard of `config` (generate's, or a converter's) in the folder
    `out` (a store, or a path or URL opened as one), holding its lock meanwhile.

    workers: shards at a time (0: every core); 1 runs in this process without Ray.
    address: a Ray cluster to join (else RAY_ADDRESS, else a local Ray).
    teacher_actors: on Ray, the teacher actor pool's size (None: one per GPU).
    """
    started = time.time()
    store = as_store(out)
    plan = config.resolve()
    items = _inputs(plan, store)
    teacher = build_teacher(plan.teacher)  # finds the weights now: one clear error, not a failed shard each
    teacher_cache_dir(config.teacher_cache, store)  # likewise a --cache URL that cannot work
    if store.is_file():
        raise PipelineError(f"`out` {store} is a file; give a folder")
    with OutputLock(store) as lock:
        prepare_output(store, plan, items, overwrite)
        shards = plan_shards(items, config.shard_size)
        with _log_to(store, LOG):
            if lock.taken_over:
                log.warning("took over the lock of a run that is gone (%s)", lock.taken_over.describe())
            remade = _verify_finished(store, plan.kind, shards)
            pending = [shard for shard in shards if not store.exists(shard.stats_name)]
            address = address or os.environ.get("RAY_ADDRESS") or None
            run_info = {
                "distributor": "ray" if address is not None or (workers != 1 and len(pending) > 1) else "in-process",
                "workers": workers,
                "address": address,
                "teacher_actors": teacher_actors,
                "remade": [{"shard": name, "reason": why} for name, why in remade],
            }
            log.info("run: %d inputs, %d shards, %d to do; %s", len(items), len(shards), len(pending), run_info)
            run = _Run(plan, teacher, store, shards, run_info, lock.token, started)
            finished_inputs = sum(read_stats(store, shard)["inputs"] for shard in shards if shard not in pending)
            with _ProgressBar(plan, len(items), finished_inputs, len(shards), len(pending), progress) as bar:
                failures = _make_shards(run, pending, bar)
            manifest = _finalize(run, failures)
            log.info(
                "run: %s, %d samples, %.1f s", manifest["status"], manifest["totals"]["samples"], time.time() - started
            )
    _raise_for_failures(failures, shards, manifest, len(items), store)
    return RunSummary(store, manifest, len(shards), len(shards) - len(pending), time.time() - started, remade)


def _inputs(plan: Plan, store: Store) -> list:
    """The run's inputs: what its kind lists, the first `limit` of them, none of them from the
    output itself (an --out inside --images would list its own previews)."""
    listed = plan.kind.list_inputs(plan)
    items = [item for item in listed if not store.holds(next(iter(plan.kind.input_files(item))))]
    if not items:
        raise PipelineError(f"every input lies inside `out` {store}; give an `out` outside the inputs")
    if len(items) < len(listed):
        log.warning("%d files inside the output folder %s are its own, not inputs", len(listed) - len(items), store)
    return items[: plan.config.limit]


def _verify_finished(store: Store, kind, shards: list[ShardPlan]) -> list[tuple[str, str]]:
    """Check every finished shard's tar against its stats, and its inputs' files against what
    it was made from; remove the damaged or out-of-date ones (they are made again) and say so
    in the log. Returns (shard, why) of those."""
    remade = []
    for shard in shards:
        done, why = check_shard(store, shard, kind)
        if not done and why:
            log.warning("%s: %s; making it again", shard.name, why)
            forget_shard(store, shard)
            remade.append((shard.name, why))
    return remade


def _make_shards(run: _Run, pending: list[ShardPlan], bar: _ProgressBar) -> list:
    """Run the pending shards; on a stop (disk full, interrupt) log why, clear temporaries
    and record what is done as an incomplete run before letting the error through."""
    info = run.run_info
    try:
        if info["distributor"] == "ray":
            return run_on_ray(
                run.plan,
                pending,
                run.store,
                bar,
                info["workers"],
                info["address"],
                info["teacher_actors"],
                run.lock_token,
            )
        return run_in_process(run.plan, pending, run.store, bar, run.teacher, run.lock_token)
    except BaseException as error:
        why = str(error) or type(error).__name__
        log.error("run stopped: %s", why)
        remove_temporaries(run.store)
        try:
            finalize_output(run.store, run.plan, run.shards, run.started, info, [], why)
        except OSError:
            _mark_stopped_or_log(run.store, why)
        raise


def _finalize(run: _Run, failures: list) -> dict:
    """Write errors.jsonl and the manifest; a disk that fills meanwhile stops the run as it does
    during a shard: one line, and the stop recorded where the running manifest lies."""
    try:
        return finalize_output(run.store, run.plan, run.shards, run.started, run.run_info, failures)
    except OSError as error:
        what = "disk full" if error.errno == errno.ENOSPC else f"cannot write ({error.strerror or error})"
        why = f"{what} while writing {run.store.where(MANIFEST)}"
        log.error("run stopped: %s", why)
        remove_temporaries(run.store)
        _mark_stopped_or_log(run.store, why)
        raise PipelineError(
            f"{why}; every finished shard is kept: free space, then re-run the same command to record the run"
        ) from None


def _mark_stopped_or_log(store: Store, why: str) -> None:
    try:
        mark_stopped(store, why)
    except OSError as error:
        log.error("could not record the stop in %s: %s", MANIFEST, error)


def _raise_for_failures(failures: list, shards: list, manifest: dict, inputs: int, store: Store) -> None:
    if failures:
        raise PipelineError(
            f"{len(failures)} of {len(shards)} shards failed (first: {failures[0].shard}: {failures[0].reason}); "
            f"finished shards are kept; see {store.where(LOG)}, then re-run the same command to retry"
        )
    if manifest["totals"]["samples"] == 0:
        reasons = Counter(json.loads(line)["reason"] for line in store.read_bytes(ERRORS).splitlines())
        why = "".join(f" ({count} of them: {reason})" for reason, count in reasons.most_common(1))
        raise PipelineError(f"no sample could be made from {inputs} inputs{why}; see {store.where(ERRORS)}")


class _ProgressBar:
    """Inputs (photos or frames) done, with rate and ETA, and shards done as a postfix."""

    def __init__(self, plan, inputs: int, inputs_done: int, shards: int, pending_shards: int, enabled: bool):
        self._bar = tqdm(
            total=inputs,
            initial=inputs_done,
            unit=plan.kind.unit,
            desc=plan.config.command.removeprefix("simlidar "),
            disable=not enabled,
            dynamic_ncols=True,
        )
        self._shards_total = shards
        self._shards_done = shards - pending_shards
        self._bar.set_postfix_str(self._postfix())

    def _postfix(self) -> str:
        return f"shards {self._shards_done}/{self._shards_total}"

    def inputs_done(self, count: int) -> None:
        if count:
            self._bar.update(count)

    def shard_done(self) -> None:
        self._shards_done += 1
        self._bar.set_postfix_str(self._postfix())

    def starting(self, what: str) -> None:
        self._bar.set_postfix_str(f"{self._postfix()}, {what}")

    def __enter__(self) -> _ProgressBar:
        return self

    def __exit__(self, *exc_info) -> None:
        self._bar.close()


@contextmanager
def _log_to(store: Store, name: str) -> Iterator[None]:
    """Append this run's log lines to the output's log file `name` (through a local file
    where the store cannot append)."""
    with store.appending(name) as local:
        handler = logging.FileHandler(local)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        try:
            yield
        finally:
            log.removeHandler(handler)
            handler.close()

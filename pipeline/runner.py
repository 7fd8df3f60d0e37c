"""The run: list inputs, plan shards, skip finished ones, hand the rest to a
distributor (this process, or Ray), then record the run in the manifest."""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from simlidar.teachers import Teacher
from tqdm import tqdm

from .config import GenerateConfig, RunPlan
from .distributor import run_in_process, run_on_ray
from .errors import PipelineError
from .output import object_store, store
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
from .sources.calibrated_rig import list_frames
from .sources.image_shards import is_shard_source
from .sources.inputs import has_depth_sidecar, list_sources
from .sources.photos import IMAGE_SUFFIXES
from .sources.urls import is_url
from .stages.teacher import build_teacher, teacher_cache_dir
from .writer import ShardPlan, plan_shards

log = logging.getLogger("simlidar.generate")


@dataclass
class RunSummary:
    """shards_remade: (shard, why) of finished shards found damaged and made again."""

    out_dir: Path
    manifest: dict
    shards_total: int
    shards_resumed: int
    elapsed_s: float
    shards_remade: list[tuple[str, str]]


@dataclass
class _Run:
    """What making the pending shards needs: the plan and its teacher, the folder, the
    shards, how they are distributed (run_info, as recorded) and the lock's token."""

    plan: RunPlan
    teacher: Teacher
    out_dir: Path
    shards: list[ShardPlan]
    run_info: dict
    lock_token: str
    started: float


def generate(
    config: GenerateConfig,
    out_dir: Path,
    overwrite: bool = False,
    progress: bool = True,
    workers: int = 0,
    address: str | None = None,
    teacher_actors: int | None = None,
) -> RunSummary:
    """Make every missing shard of `config` in `out_dir`, holding its lock meanwhile.

    workers: shards at a time (0: every core); 1 runs in this process without Ray.
    address: a Ray cluster to join (else RAY_ADDRESS, else a local Ray).
    teacher_actors: on Ray, the teacher actor pool's size (None: one per GPU).
    """
    started = time.time()
    plan = config.resolve()
    items, unit = list_items(plan)
    teacher = build_teacher(plan.teacher)  # finds the weights now: one clear error, not a failed shard each
    teacher_cache_dir(config.teacher_cache, out_dir)  # likewise a --cache URL that cannot work
    if store.exists(out_dir):
        raise PipelineError(f"--out {out_dir} is a file; give a folder")
    with OutputLock(out_dir) as lock:
        prepare_output(out_dir, config, items, overwrite)
        shards = plan_shards(items, config.shard_size)
        with _log_to(out_dir / LOG):
            if lock.taken_over:
                log.warning("took over the lock of a run that is gone (%s)", lock.taken_over.describe())
            remade = _verify_finished(out_dir, shards)
            pending = [shard for shard in shards if not check_shard(out_dir, shard)[0]]
            address = address or os.environ.get("RAY_ADDRESS") or None
            run_info = {
                "distributor": "ray" if address is not None or (workers != 1 and len(pending) > 1) else "in-process",
                "workers": workers,
                "address": address,
                "teacher_actors": teacher_actors,
                "remade": [{"shard": name, "reason": why} for name, why in remade],
            }
            log.info("run: %d inputs, %d shards, %d to do; %s", len(items), len(shards), len(pending), run_info)
            run = _Run(plan, teacher, out_dir, shards, run_info, lock.token, started)
            finished_inputs = sum(read_stats(out_dir, shard)["inputs"] for shard in shards if shard not in pending)
            with _ProgressBar(len(items), finished_inputs, len(shards), len(pending), progress, unit) as bar:
                failures = _make_shards(run, pending, bar)
            manifest = finalize_output(out_dir, config, plan.sensor, shards, started, run_info, failures)
            log.info(
                "run: %s, %d samples, %.1f s", manifest["status"], manifest["totals"]["samples"], time.time() - started
            )
    _raise_for_failures(failures, shards, manifest, len(items), out_dir)
    return RunSummary(out_dir, manifest, len(shards), len(shards) - len(pending), time.time() - started, remade)


def list_items(plan: RunPlan) -> tuple[list, str]:
    """The run's inputs (photos, or a calibrated rig's frames), sorted and limited, and
    the progress bar's unit; PipelineError when there are none, or no depth sidecars
    for --teacher sidecar."""
    config = plan.config
    if plan.calibration is not None:
        if is_url(config.images) or is_shard_source(config.images):
            raise PipelineError("a calibrated rig's images must be a local folder (ROOT/CAMERA/FRAME.jpg)")
        root, unit = Path(config.images), "frame"
        items = list_frames(root, plan.calibration)
    else:
        (items, root), unit = list_sources(config.images), "img"
    items = items[: config.limit]
    if not items:
        raise PipelineError(f"no images in {config.images} (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    if config.teacher == "sidecar" and not any(has_depth_sidecar(item) for item in items):
        raise PipelineError(
            f"none of the {len(items)} photos in {root} has depth beside it (photo.depth.png or "
            "photo.depth.npy); add those files, or pass --teacher with a depth model"
        )
    return items, unit


def _verify_finished(out_dir: Path, shards: list[ShardPlan]) -> list[tuple[str, str]]:
    """Check every finished shard's tar against its stats; remove the damaged ones (they
    are made again) and say so in the log. Returns (shard, why) of those."""
    remade = []
    for shard in shards:
        done, why = check_shard(out_dir, shard)
        if not done and why:
            log.warning("%s: %s; making it again", shard.name, why)
            forget_shard(out_dir, shard)
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
                run.out_dir,
                bar,
                info["workers"],
                info["address"],
                info["teacher_actors"],
                run.lock_token,
            )
        return run_in_process(run.plan, pending, run.out_dir, bar, run.teacher, run.lock_token)
    except BaseException as error:
        why = str(error) or type(error).__name__
        log.error("run stopped: %s", why)
        remove_temporaries(run.out_dir)
        try:
            finalize_output(run.out_dir, run.plan.config, run.plan.sensor, run.shards, run.started, info, [], why)
        except OSError:
            _mark_stopped_or_log(run.out_dir, why)
        raise


def _mark_stopped_or_log(out_dir: Path, why: str) -> None:
    try:
        mark_stopped(out_dir, why)
    except OSError as error:
        log.error("could not record the stop in %s: %s", MANIFEST, error)


def _raise_for_failures(failures: list, shards: list, manifest: dict, inputs: int, out_dir: Path) -> None:
    if failures:
        raise PipelineError(
            f"{len(failures)} of {len(shards)} shards failed (first: {failures[0].shard}: {failures[0].reason}); "
            f"finished shards are kept; see {out_dir / LOG}, then re-run the same command to retry"
        )
    if manifest["totals"]["samples"] == 0:
        reasons = Counter(json.loads(line)["reason"] for line in store.read_bytes(out_dir / ERRORS).splitlines())
        why = "".join(f" ({count} of them: {reason})" for reason, count in reasons.most_common(1))
        raise PipelineError(f"no sample could be made from {inputs} inputs{why}; see {out_dir / ERRORS}")


class _ProgressBar:
    """Inputs (photos or rig frames) done, with rate and ETA, and shards done as a postfix."""

    def __init__(self, inputs: int, inputs_done: int, shards: int, pending_shards: int, enabled: bool, unit: str):
        self._bar = tqdm(
            total=inputs, initial=inputs_done, unit=unit, desc="generate", disable=not enabled, dynamic_ncols=True
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

    def __enter__(self) -> _ProgressBar:
        return self

    def __exit__(self, *exc_info) -> None:
        self._bar.close()


class _log_to:
    """Append this run's log lines to the output's log file (on an object store: to a
    local file of this process, added to the store's log when the run ends)."""

    def __init__(self, path: Path):
        self._path = path
        self._local = object_store.temporary_name(path) if object_store.is_remote(path) else path
        self._handler = logging.FileHandler(self._local)
        self._handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))

    def __enter__(self) -> None:
        log.addHandler(self._handler)
        log.setLevel(logging.INFO)

    def __exit__(self, *exc_info) -> None:
        log.removeHandler(self._handler)
        self._handler.close()
        if self._local != self._path:
            object_store.append(self._path, self._local.read_bytes())
            self._local.unlink()

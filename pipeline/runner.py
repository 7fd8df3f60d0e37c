"""The run: list inputs, plan shards, skip finished ones, hand the rest to a
distributor (this process, or Ray), then record the run in the manifest."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from .config import GenerateConfig, RunPlan
from .distributor import run_in_process, run_on_ray
from .errors import PipelineError
from .output.manifest import ERRORS, LOG, finalize_output, prepare_output, read_stats, shard_done
from .sources.calibrated_rig import list_frames
from .sources.inputs import has_depth_sidecar, list_sources
from .sources.photos import IMAGE_SUFFIXES
from .stages.teacher import build_teacher
from .writer import plan_shards

log = logging.getLogger("simlidar.generate")


@dataclass
class RunSummary:
    out_dir: Path
    manifest: dict
    shards_total: int
    shards_resumed: int
    elapsed_s: float


def generate(
    config: GenerateConfig,
    out_dir: Path,
    overwrite: bool = False,
    progress: bool = True,
    workers: int = 0,
    address: str | None = None,
    teacher_actors: int | None = None,
) -> RunSummary:
    """Make every missing shard of `config` in `out_dir`.

    workers: shards at a time (0: every core); 1 runs in this process without Ray.
    address: a Ray cluster to join (else RAY_ADDRESS, else a local Ray).
    teacher_actors: on Ray, the teacher actor pool's size (None: one per GPU).
    """
    started = time.time()
    plan = config.resolve()
    items, unit = list_items(plan)
    teacher = build_teacher(plan.teacher)  # finds the weights now: one clear error, not a failed shard each
    prepare_output(out_dir, config, overwrite)
    shards = plan_shards(items, config.shard_size)
    pending = [shard for shard in shards if not shard_done(out_dir, shard)]
    finished_inputs = sum(read_stats(out_dir, shard)["inputs"] for shard in shards if shard not in pending)
    address = address or os.environ.get("RAY_ADDRESS") or None
    on_ray = address is not None or (workers != 1 and len(pending) > 1)
    run_info = {
        "distributor": "ray" if on_ray else "in-process",
        "workers": workers,
        "address": address,
        "teacher_actors": teacher_actors,
    }

    with (
        _log_to(out_dir / LOG),
        _ProgressBar(len(items), finished_inputs, len(shards), len(pending), progress, unit) as bar,
    ):
        log.info("run: %d inputs, %d shards, %d to do; %s", len(items), len(shards), len(pending), run_info)
        if on_ray:
            failures = run_on_ray(plan, pending, out_dir, bar, workers, address, teacher_actors)
        else:
            failures = run_in_process(plan, pending, out_dir, bar, teacher)
        manifest = finalize_output(out_dir, config, plan.sensor, shards, started, run_info, failures)
        log.info(
            "run: %s, %d samples, %.1f s", manifest["status"], manifest["totals"]["samples"], time.time() - started
        )
    if failures:
        raise PipelineError(
            f"{len(failures)} of {len(shards)} shards failed (first: {failures[0].shard}: {failures[0].reason}); "
            f"finished shards are kept; see {out_dir / LOG}, then re-run the same command to retry"
        )
    if manifest["totals"]["samples"] == 0:
        raise PipelineError(f"no sample could be made from {len(items)} inputs; see {out_dir / ERRORS} for why")
    return RunSummary(out_dir, manifest, len(shards), len(shards) - len(pending), time.time() - started)


def list_items(plan: RunPlan) -> tuple[list, str]:
    """The run's inputs (photos, or a calibrated rig's frames), sorted and limited, and
    the progress bar's unit; PipelineError when there are none, or no depth sidecars
    for --teacher sidecar."""
    config = plan.config
    if plan.calibration is not None:
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
    """Append this run's log lines to the output's log file."""

    def __init__(self, path: Path):
        self._handler = logging.FileHandler(path)
        self._handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))

    def __enter__(self) -> None:
        log.addHandler(self._handler)
        log.setLevel(logging.INFO)

    def __exit__(self, *exc_info) -> None:
        log.removeHandler(self._handler)
        self._handler.close()

"""The distributor: plan shards, skip finished ones, run the worker on the rest,
then record the run. This one runs shards one after another in this process."""

from __future__ import annotations

import errno
import time
from dataclasses import dataclass
from pathlib import Path

from simlidar.sensors import load_sensor
from simlidar.teachers import find_depth_sidecar
from tqdm import tqdm

from .config import GenerateConfig
from .errors import PipelineError
from .manifest import ERRORS, finalize_output, prepare_output, read_stats, shard_done
from .reader import IMAGE_SUFFIXES, list_images
from .worker import ShardWorker, plan_shards


@dataclass
class RunSummary:
    out_dir: Path
    manifest: dict
    shards_total: int
    shards_resumed: int
    elapsed_s: float


def generate(config: GenerateConfig, out_dir: Path, overwrite: bool = False, progress: bool = True) -> RunSummary:
    started = time.time()
    sensor = load_sensor(config.sensor)
    images_dir = Path(config.images)
    items = list_images(images_dir)[: config.limit]
    if not items:
        raise PipelineError(f"no images in {images_dir} (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    if config.teacher == "sidecar" and not any(find_depth_sidecar(item.path) for item in items):
        raise PipelineError(
            f"none of the {len(items)} photos in {images_dir} has depth beside it (photo.depth.png or "
            "photo.depth.npy); add those files, or pass --teacher with a depth model"
        )
    prepare_output(out_dir, config, overwrite)
    plans = plan_shards(items, config.shard_size)
    pending = [plan for plan in plans if not shard_done(out_dir, plan)]
    finished_inputs = sum(read_stats(out_dir, plan)["inputs"] for plan in plans if plan not in pending)
    worker = ShardWorker(config)
    with tqdm(
        total=len(items), initial=finished_inputs, unit="img", desc="generate", disable=not progress, dynamic_ncols=True
    ) as bar:
        for plan in pending:
            try:
                worker.run(plan, out_dir, on_input=bar.update)
            except OSError as error:
                kept = sum(shard_done(out_dir, other) for other in plans)
                what = "disk full" if error.errno == errno.ENOSPC else f"cannot write ({error})"
                raise PipelineError(
                    f"{what} while writing {out_dir / plan.name}.tar; the {kept} finished shards are kept: "
                    "free space or fix the folder, then re-run the same command to resume"
                ) from None
    manifest = finalize_output(out_dir, config, sensor, plans, started)
    if manifest["totals"]["samples"] == 0:
        raise PipelineError(f"no sample could be made from {len(items)} inputs; see {out_dir / ERRORS} for why")
    return RunSummary(out_dir, manifest, len(plans), len(plans) - len(pending), time.time() - started)

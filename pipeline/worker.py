"""The per-shard worker: turns one shard of inputs (photos, a rig's frames, KITTI frames)
into one output shard (a tar of samples plus a stats file). Per batch: read, teacher;
then per input: to scene, its samples (simulated or recorded), write. What each step
means for a kind of input is the kind's (sources/kinds.py). Output depends only on the
plan and the inputs, never on which process runs it or in what order."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from simlidar.teachers import IntrinsicsError, Teacher, TeacherError

from .config import Plan
from .errors import UnusableDepth, error_stage
from .output.lock import still_held
from .output.store import Store
from .sources.kinds import Reading
from .sources.photos import BadImage
from .sources.urls import scratch_folder
from .stages.teacher import CachedTeacher, TeacherCache, teacher_cache_dir
from .stages.timing import StageTimes
from .writer import ShardPlan, ShardWriter


class ShardWorker:
    def __init__(self, plan: Plan, teacher: Teacher, cast_threads: int = 0, lock_token: str = ""):
        """teacher: the run's (built once per process), or a proxy to shared GPU actors;
        lock_token: the run's output lock: a shard is renamed into place only while it holds."""
        self.plan, self.config, self.kind = plan, plan.config, plan.kind
        self.teacher = teacher
        self.lock_token = lock_token
        self.cast_threads = cast_threads

    def run(self, shard: ShardPlan, store: Store, on_input: Callable[[], None] = lambda: None) -> dict:
        """Write `shard`'s tar and then its stats file (the pair marks the shard done)."""
        started = time.perf_counter()
        times, errors, counts = StageTimes(), [], []
        teacher = CachedTeacher(self.teacher, TeacherCache(teacher_cache_dir(self.config.teacher_cache, store)))
        batch_size = self.config.teacher_batch_size
        may_publish = (lambda: still_held(store, self.lock_token)) if self.lock_token else (lambda: True)
        staging = tempfile.TemporaryDirectory(dir=scratch_folder())  # for inputs not on this machine
        with ShardWriter(store, shard.tar_name, may_publish) as writer, staging as scratch:
            for start in range(0, len(shard.items), batch_size):
                readings = self._read(shard.items[start : start + batch_size], Path(scratch), errors, times, on_input)
                with times.stage("teacher"):
                    predictions = teacher.predict([each for reading in readings for each in reading.teacher_inputs])
                for reading in readings:
                    cameras = len(reading.teacher_inputs)
                    try:
                        counts += self._write(reading, predictions[:cameras], writer, times)
                    except (TeacherError, IntrinsicsError, UnusableDepth) as error:
                        errors.append({"path": reading.item.relpath, "stage": error_stage(error), "reason": str(error)})
                    predictions = predictions[cameras:]
                    on_input()
        stats = shard_stats(shard, writer, counts, errors, times, time.perf_counter() - started)
        store.write_json_atomically(shard.stats_name, stats)
        return stats

    def _write(self, reading: Reading, predictions: list, writer: ShardWriter, times: StageTimes) -> list[dict]:
        """One input's samples: its scene, then each sample it gives, written; their counts."""
        scene = self.kind.to_scene(reading, predictions, self.plan, times)
        counts = []
        for key, members, sample_counts in self.kind.samples(scene, self.plan, times, self.cast_threads):
            writer.write(key, members)
            counts.append(sample_counts)
        return counts

    def _read(self, items, scratch: Path, errors: list[dict], times: StageTimes, on_input) -> list[Reading]:
        """What the kind reads of every input that reads (made local in `scratch` first when
        it is not); the others recorded in `errors`."""
        readings = []
        for item in items:
            with times.stage("read"):
                try:
                    readings.append(self.kind.read(item, scratch, self.plan))
                except BadImage as error:
                    errors.append({"path": item.relpath, "stage": "read", "reason": str(error)})
                    on_input()
        return readings


def shard_stats(shard: ShardPlan, writer: ShardWriter, counts: list[dict], errors: list, times, seconds) -> dict:
    """The stats file of a written shard: its tar's size and SHA-256, counts, errors, timings."""
    points = [sample["points"] for sample in counts]
    return {
        "shard": f"{shard.name}.tar",
        "inputs": len(shard.items),
        "images_written": len(shard.items) - len(errors),
        "samples": writer.samples,
        "sha256": writer.sha256,
        "bytes": writer.size,
        "points": {"total": sum(points), "min": min(points, default=0), "max": max(points, default=0)},
        "sparse_pixels_total": sum(sample["sparse_pixels"] for sample in counts),
        "errors": errors,
        "seconds": {"total": seconds, **dict(times.seconds)},
    }

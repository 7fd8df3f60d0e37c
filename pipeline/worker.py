"""The per-shard worker: turns one shard of inputs (photos, a rig's frames, KITTI frames)
into one output shard (a tar of samples plus a stats file). First the fingerprint of every
input's files (the stats record what the shard was made from); per batch: read, teacher;
then per input: to scene, its samples (simulated or recorded), write. What each step
means for a kind of input is the kind's (sources/kinds.py). One input never sinks its
shard: whatever fails on it, or a scan that leaves it no LiDAR point, is one errors.jsonl
line, and a sample without a point is not written. Output depends only on the plan and
the inputs, never on which process runs it or in what order."""

from __future__ import annotations

import errno
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from simlidar.teachers import IntrinsicsError, Teacher, TeacherError

from .config import Plan
from .errors import UnusableDepth, error_stage, unexpected_reason
from .output.lock import still_held
from .output.manifest import count_sources, sample_sources
from .output.store import Store
from .sources.fingerprint import input_fingerprints
from .sources.kinds import Reading, Sample
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
        self.empty_samples: list[str] = []  # of the shard being made: samples without a point, not written

    def run(self, shard: ShardPlan, store: Store, on_input: Callable[[], None] = lambda: None) -> dict:
        """Write `shard`'s tar and then its stats file (the pair marks the shard done)."""
        started = time.perf_counter()
        fingerprints = input_fingerprints(self.kind, shard.items)  # before reading: a later edit is seen
        times, errors, counts, sources = StageTimes(), [], [], []
        self.empty_samples = []
        teacher = CachedTeacher(self.teacher, TeacherCache(teacher_cache_dir(self.config.teacher_cache, store)), times)
        batch_size = self.config.teacher_batch_size
        may_publish = (lambda: still_held(store, self.lock_token)) if self.lock_token else (lambda: True)
        staging = tempfile.TemporaryDirectory(dir=scratch_folder())  # for inputs not on this machine
        with ShardWriter(store, shard.tar_name, may_publish) as writer, staging as scratch:
            for start in range(0, len(shard.items), batch_size):
                readings = self._read(shard.items[start : start + batch_size], Path(scratch), errors, times, on_input)
                predictions = teacher.predict([each for reading in readings for each in reading.teacher_inputs])
                for reading in readings:
                    cameras = len(reading.teacher_inputs)
                    samples = self._samples(reading, predictions[:cameras], times, errors)
                    for key, members, sample_counts in samples:
                        writer.write(key, members)
                        counts.append(sample_counts)
                        sources.append(sample_sources(members))
                    predictions = predictions[cameras:]
                    on_input()
        stats = shard_stats(shard, writer, counts, errors, times, time.perf_counter() - started)
        stats.update(input_fingerprints=fingerprints, empty_samples=self.empty_samples, sources=count_sources(sources))
        store.write_json_atomically(shard.stats_name, stats)
        return stats

    def _samples(self, reading: Reading, predictions: list, times: StageTimes, errors: list[dict]) -> list[Sample]:
        """One input's samples that hold a LiDAR point, made whole before any is written; when
        it gives none, or anything fails on it, its errors.jsonl line goes to `errors`."""

        def skip(stage: str, reason: str) -> list:
            errors.append({"path": reading.item.relpath, "stage": stage, "reason": reason})
            return []

        times.failed_stage = ""
        try:
            scene = self.kind.to_scene(reading, predictions, self.plan, times)
            samples = list(self.kind.samples(scene, self.plan, times, self.cast_threads))
        except (TeacherError, IntrinsicsError, UnusableDepth) as error:
            return skip(error_stage(error), str(error))
        except Exception as error:  # whatever an input holds, the rest of its shard is made
            if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
                raise
            return skip(times.failed_stage or "scene", unexpected_reason(error))
        kept = [sample for sample in samples if sample[2]["sparse_pixels"] > 0]
        if not kept:
            return skip("scan", f"no LiDAR return lands in the image in any of its {len(samples)} samples")
        self.empty_samples += [key for key, _, counts in samples if counts["sparse_pixels"] == 0]
        return kept

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
    """The stats file of a written shard: its tar's size and SHA-256, counts, errors, timings
    (the caller adds the fingerprints of what it was made from)."""
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

"""The per-shard worker: turns one shard of inputs (photos or a rig's frames) into one
output shard (a tar of samples plus a stats file): read, teacher in batches, then per
input one Scene through the one chain of stages/scene.py. Output depends only on the
plan and the inputs, never on which process runs it or in what order."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from simlidar.teachers import IntrinsicsError, Teacher, TeacherError, TeacherInput, resolve_intrinsics, to_metric

from .config import RunPlan
from .errors import UnusableDepth, error_stage
from .output.lock import still_held
from .output.store import Store
from .sources.calibrated_rig import RigFrame, load_frame
from .sources.inputs import InputItem, stage
from .sources.photos import BadImage, LoadedImage, load_image
from .sources.urls import scratch_folder
from .stages.mesh import check_depth_usable
from .stages.scene import Scene, SceneCamera, ViewMaker, image_rng, simulate_scene
from .stages.teacher import CachedTeacher, TeacherCache, teacher_cache_dir
from .stages.timing import StageTimes
from .stages.views import CalibratedViews, PhotoViews, VirtualRigViews
from .writer import ShardPlan, ShardWriter

# An input read: the item, (path, image) of each of its cameras, what its source said about it.
Loaded = tuple[InputItem | RigFrame, list[tuple[Path, LoadedImage]], dict | None]


def view_maker(plan: RunPlan) -> ViewMaker:
    """What one scan gives for this run's kind of input."""
    if plan.calibration is not None:
        return CalibratedViews(plan.calibration)
    if plan.rig is not None:
        return VirtualRigViews(plan.rig, plan.config.jpeg_quality)
    return PhotoViews(plan.calibration_error)


class ShardWorker:
    def __init__(self, plan: RunPlan, teacher: Teacher, cast_threads: int = 0, lock_token: str = ""):
        """teacher: the run's (built once per process), or a proxy to shared GPU actors;
        lock_token: the run's output lock: a shard is renamed into place only while it holds."""
        self.plan, self.config = plan, plan.config
        self.teacher = teacher
        self.lock_token = lock_token
        self.cast_threads = cast_threads
        self.views = view_maker(plan)

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
                loaded = self._read(shard.items[start : start + batch_size], Path(scratch), errors, times, on_input)
                with times.stage("teacher"):
                    inputs = [TeacherInput(path, image.rgb) for _, images, _ in loaded for path, image in images]
                    predictions = teacher.predict(inputs)
                for item, images, source_meta in loaded:
                    item_predictions, predictions = predictions[: len(images)], predictions[len(images) :]
                    try:
                        scene = self._scene(item, images, item_predictions, source_meta, times)
                        for key, members, sample_counts in simulate_scene(scene, self.plan, times, self.cast_threads):
                            writer.write(key, members)
                            counts.append(sample_counts)
                    except (TeacherError, IntrinsicsError, UnusableDepth) as error:
                        errors.append({"path": item.relpath, "stage": error_stage(error), "reason": str(error)})
                    on_input()
        stats = shard_stats(shard, writer, counts, errors, times, time.perf_counter() - started)
        store.write_json_atomically(shard.stats_name, stats)
        return stats

    def _read(self, items, scratch: Path, errors: list[dict], times: StageTimes, on_input) -> list[Loaded]:
        """(item, [(path, image)], source_meta) of every input that reads (made local in
        `scratch` first when it is not); the others recorded in `errors`."""
        loaded = []
        for item in items:
            with times.stage("read"):
                try:
                    quality, max_pixels = self.config.jpeg_quality, self.config.max_pixels
                    if self.plan.calibration is not None:
                        loaded.append((item, load_frame(item, self.plan.calibration, quality, max_pixels), None))
                    else:
                        staged = stage(item, scratch)
                        image = load_image(staged.path, quality, max_pixels)
                        loaded.append((item, [(staged.path, image)], staged.source_meta))
                except BadImage as error:
                    errors.append({"path": item.relpath, "stage": "read", "reason": str(error)})
                    on_input()
        return loaded

    def _scene(self, item, images: list[tuple[Path, LoadedImage]], predictions: list, source_meta, times) -> Scene:
        """The input as a Scene: its teacher depth made metric (one conversion draw for
        every camera of a frame: one scale for the scene) and each camera's K."""
        metric = []
        for prediction in predictions:
            if isinstance(prediction, TeacherError):
                raise prediction
            with times.stage("teacher"):
                metric.append(to_metric(prediction, self.plan.conversion, image_rng(self.config.seed, item.key)))
            check_depth_usable(metric[-1].depth, self.plan.sensor.min_range_m, self.plan.sensor.max_range_m)
        calibration = self.plan.calibration
        if calibration is not None:
            cameras = tuple(
                SceneCamera(image, camera.K, "calibration", prediction, relpath, camera.name, camera.T_rig_cam)
                for camera, (_, image), prediction, relpath in zip(
                    calibration.cameras, images, metric, item.images, strict=True
                )
            )
            return Scene(item.key, cameras, self.views, 1, calibration.T_rig_lidar)
        (path, image), prediction = images[0], metric[0]
        height, width = image.rgb.shape[:2]
        K, intrinsics_source = resolve_intrinsics(
            path,
            width,
            height,
            self.config.intrinsics,
            self.config.fov_deg,
            policy=self.plan.intrinsics_policy,
            fov_range_deg=self.plan.fov_range_deg,
            teacher_focal_px=prediction.focal_px,
            rng=image_rng(self.config.seed, item.key, "intrinsics"),
        )
        camera = SceneCamera(image, K, intrinsics_source, prediction, item.relpath, source_meta=source_meta)
        return Scene(item.key, (camera,), self.views, self.config.views if self.plan.rig is None else 1)


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

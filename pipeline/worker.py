"""The per-shard worker: turns one shard of input photos into one output shard
(a tar of samples plus a stats file). Output depends only on the config and the
inputs, never on which process runs it or in what order."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from simlidar.sensors import MOUNTS, mount_pose, sample_mount_jitter
from simlidar.sensors.camera import sparse_depth_image
from simlidar.sensors.effects import luma
from simlidar.sensors.mount import jittered_pose
from simlidar.sensors.raycast import MeshScene
from simlidar.teachers import (
    IntrinsicsError,
    Teacher,
    TeacherError,
    TeacherInput,
    depth_conversion,
    parse_fov_range,
    parse_policy,
    resolve_intrinsics,
    to_metric,
)

from . import schema
from .config import GenerateConfig
from .mesh import UnusableDepth, check_depth_usable, depth_to_mesh
from .output import store
from .output.lock import still_held
from .reader import BadImage, LoadedImage, SourceItem, load_image
from .real_rig import Calibration, RigFrame, is_calibration, load_calibration, load_frame, merge_meshes
from .rig import load_rig, render_view, rig_cameras
from .simulate import ScanCamera, simulate_rig_scan, simulate_scan, with_calibration_error
from .teacher_cache import CachedTeacher, TeacherCache, build_teacher, teacher_cache_dir
from .timing import StageTimes
from .writer import ShardWriter


@dataclass(frozen=True)
class ShardPlan:
    """Shard `index` holds inputs [index * n, (index + 1) * n) of the sorted list."""

    index: int
    items: tuple[SourceItem, ...]

    @property
    def name(self) -> str:
        return f"shard-{self.index:06d}"


def plan_shards(items: list[SourceItem], shard_size: int) -> list[ShardPlan]:
    return [
        ShardPlan(index, tuple(items[start : start + shard_size]))
        for index, start in enumerate(range(0, len(items), shard_size))
    ]


def tar_path(out_dir: Path, plan: ShardPlan) -> Path:
    return out_dir / f"{plan.name}.tar"


def stats_path(out_dir: Path, plan: ShardPlan) -> Path:
    return out_dir / f"{plan.name}.stats.json"


def _stable_int(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def sample_rng(seed: int, key: str, view: int, sensor_name: str) -> np.random.Generator:
    """The one generator of a (run seed, source key, view, sensor) sample."""
    return np.random.default_rng(np.random.SeedSequence([seed, _stable_int(key), view, _stable_int(sensor_name)]))


def image_rng(seed: int, key: str, purpose: str = "teacher") -> np.random.Generator:
    """The generator of a (run seed, source key) draw shared by every view and sensor:
    the teacher's depth conversion, the random intrinsics; `purpose` keeps them apart."""
    return np.random.default_rng(np.random.SeedSequence([seed, _stable_int(key), _stable_int(purpose)]))


class ShardWorker:
    def __init__(
        self, config: GenerateConfig, cast_threads: int = 0, teacher: Teacher | None = None, lock_token: str = ""
    ):
        """teacher: one to use instead of the config's own (e.g. a proxy to shared GPU actors);
        lock_token: the run's output lock: a shard is renamed into place only while it holds."""
        self.config = config
        self.lock_token = lock_token
        self.sensor = config.sensor_model()
        self.mount = MOUNTS[config.mount or self.sensor.default_mount]
        self.jitter = config.jitter
        self.calibration_error = config.calibration_error_ranges
        self.teacher = teacher or build_teacher(config)
        self.conversion = depth_conversion(
            config.depth_range, config.disparity_percentiles, config.sky_threshold, config.metric_scale
        )
        self.intrinsics_policy = parse_policy(config.intrinsics_policy, config.fov_deg)
        self.fov_range_deg = parse_fov_range(config.fov_range)
        self.cast_threads = cast_threads
        real = bool(config.rig) and is_calibration(config.rig)
        self.rig = load_rig(config.rig) if config.rig and not real else None
        self.calibration: Calibration | None = load_calibration(config.rig) if real else None

    def run(self, plan: ShardPlan, out_dir: Path, on_input: Callable[[], None] = lambda: None) -> dict:
        """Write `plan`'s tar and then its stats file (the pair marks the shard done)."""
        started = time.perf_counter()
        times = StageTimes()
        errors: list[dict] = []
        point_counts: list[int] = []
        sparse_pixels: list[int] = []
        batch_size = self.config.teacher_batch_size
        teacher = CachedTeacher(self.teacher, TeacherCache(teacher_cache_dir(self.config.teacher_cache, out_dir)))
        may_publish = (lambda: still_held(out_dir, self.lock_token)) if self.lock_token else (lambda: True)
        with ShardWriter(tar_path(out_dir, plan), may_publish) as writer:
            for start in range(0, len(plan.items), batch_size):
                loaded: list[tuple[SourceItem | RigFrame, list[tuple[Path, LoadedImage]]]] = []
                for item in plan.items[start : start + batch_size]:
                    with times.stage("read"):
                        try:
                            loaded.append((item, self._load(item)))
                        except BadImage as error:
                            errors.append({"path": item.relpath, "stage": "read", "reason": str(error)})
                            on_input()
                with times.stage("teacher"):
                    predictions = teacher.predict(
                        [TeacherInput(path, image.rgb) for _, images in loaded for path, image in images]
                    )
                position = 0
                for item, images in loaded:
                    item_predictions = predictions[position : position + len(images)]
                    position += len(images)
                    try:
                        # Every camera of a frame draws the same conversion: one scale for the scene.
                        metric = []
                        for prediction in item_predictions:
                            if isinstance(prediction, TeacherError):
                                raise prediction
                            with times.stage("teacher"):
                                rng = image_rng(self.config.seed, item.key)
                                metric.append(to_metric(prediction, self.conversion, rng))
                            check_depth_usable(metric[-1].depth, self.sensor.min_range_m, self.sensor.max_range_m)
                        if self.calibration is not None:
                            samples = self._write_frame_samples(item, images, metric, writer, times)
                        else:
                            samples = self._write_samples(item, images[0][1], metric[0], writer, times)
                        for counts in samples:
                            point_counts.append(counts["points"])
                            sparse_pixels.append(counts["sparse_pixels"])
                    except (TeacherError, IntrinsicsError, UnusableDepth) as error:
                        stage = "depth" if isinstance(error, UnusableDepth) else "intrinsics"
                        stage = "teacher" if isinstance(error, TeacherError) else stage
                        errors.append({"path": item.relpath, "stage": stage, "reason": str(error)})
                    on_input()
        stats = {
            "shard": f"{plan.name}.tar",
            "inputs": len(plan.items),
            "images_written": len(plan.items) - len(errors),
            "samples": writer.samples,
            "sha256": writer.sha256,
            "bytes": writer.size,
            "points": {
                "total": sum(point_counts),
                "min": min(point_counts, default=0),
                "max": max(point_counts, default=0),
            },
            "sparse_pixels_total": sum(sparse_pixels),
            "errors": errors,
            "seconds": {"total": time.perf_counter() - started, **dict(times.seconds)},
        }
        store.write_json_atomically(stats_path(out_dir, plan), stats)
        return stats

    def _load(self, item: SourceItem | RigFrame) -> list[tuple[Path, LoadedImage]]:
        """(path, image) of a photo, or of every camera of a real rig's frame; BadImage for
        one with more than max_pixels (meshing it could exhaust memory)."""
        if self.calibration is not None:
            images = load_frame(item, self.calibration, self.config.jpeg_quality)
        else:
            images = [(item.path, load_image(item.path, self.config.jpeg_quality))]
        for path, image in images:
            height, width = image.rgb.shape[:2]
            if height * width > self.config.max_pixels:
                raise BadImage(
                    f"{path.name} is {width}x{height} ({height * width / 1e6:.1f} MP), above max_pixels "
                    f"({self.config.max_pixels / 1e6:.1f} MP): shrink it, or raise --max-pixels where memory allows"
                )
        return images

    def _write_samples(self, item, image, prediction, writer: ShardWriter, times: StageTimes):
        config, sensor = self.config, self.sensor
        height, width = image.rgb.shape[:2]
        K, intrinsics_source = resolve_intrinsics(
            item.path,
            width,
            height,
            config.intrinsics,
            config.fov_deg,
            policy=self.intrinsics_policy,
            fov_range_deg=self.fov_range_deg,
            teacher_focal_px=prediction.focal_px,
            rng=image_rng(config.seed, item.key, "intrinsics"),
        )
        with times.stage("mesh"):
            mesh = depth_to_mesh(prediction.depth, K, config.mesh_options)
        with times.stage("scene"):
            scene = MeshScene(mesh.vertices_cam, mesh.triangles)
        if self.rig is not None:
            yield from self._write_rig_samples(
                item, image, prediction, K, intrinsics_source, mesh, scene, writer, times
            )
            return
        with times.stage("encode"):
            dense_png = schema.encode_depth_png(prediction.depth)
        reflectance = luma(image.rgb) if config.reflectance == "luma" else None
        for view in range(config.views):
            rng = sample_rng(config.seed, item.key, view, sensor.name)
            translation_jitter, rotation_jitter = sample_mount_jitter(self.jitter, rng)
            T_cam_lidar = mount_pose(self.mount, translation_jitter, rotation_jitter)
            scan = simulate_scan(
                scene, K, width, height, sensor, T_cam_lidar, rng, times, self.cast_threads, reflectance
            )
            calibration = {}
            if self.calibration_error is not None:
                T_error = jittered_pose(np.eye(4), *sample_mount_jitter(self.calibration_error, rng))
                calibration = {"T_cam_lidar_true": T_cam_lidar.tolist()}
                scan, T_cam_lidar = with_calibration_error(scan, T_cam_lidar, K, width, height, T_error)
            key = f"{item.key}-v{view}"
            meta = {
                "key": key,
                "source_path": item.relpath,
                "image_size": [width, height],
                "K": K.tolist(),
                "intrinsics_source": intrinsics_source,
                "T_cam_lidar": T_cam_lidar.tolist(),
                **calibration,
                "sensor": self._sensor_meta(),
                "mount": self._mount_meta(translation_jitter, rotation_jitter),
                **scan.phase,
                "teacher": prediction.describe(),
                "seed": config.seed,
                "view": view,
                "mesh": mesh.summary(),
                "counts": scan.counts,
                "image_reencoded": image.reencoded,
            }
            with times.stage("encode"):
                members = {
                    schema.IMAGE: image.jpeg,
                    schema.SPARSE: schema.encode_depth_png(scan.sparse_depth_m),
                    schema.DENSE: dense_png,
                    schema.META: json.dumps(meta, sort_keys=True).encode(),
                }
                if config.save_points:
                    members[schema.POINTS] = _npy_bytes(scan.points_lidar)
            with times.stage("write"):
                writer.write(key, members)
            yield scan.counts

    def _sensor_meta(self) -> dict:
        sensor = self.sensor
        return {
            "name": sensor.name,
            "kind": sensor.kind,
            "spec_hash": sensor.spec_hash(),
            "effects": dataclasses.asdict(sensor.effects),
            "reflectance": self.config.reflectance,
        }

    def _mount_meta(self, translation_jitter: np.ndarray, rotation_jitter: np.ndarray) -> dict:
        return {
            "name": self.mount.name,
            "jitter_translation_m": translation_jitter.tolist(),
            "jitter_roll_pitch_yaw_deg": np.rad2deg(rotation_jitter).tolist(),
        }

    def _write_rig_samples(self, item, image, prediction, K, intrinsics_source, mesh, scene, writer, times):
        """--rig: ONE LiDAR scan in the photo's camera serves every view of the rig. Per view
        a sample `<key>-r<index>`: the photo's RGB and dense depth resampled into the view,
        the scan's points re-projected with the view's own z-buffer, and the teacher's
        relative disparity in the view (teacher.png, for distillation). The json carries
        the scene (the photo's key), the view's own K and T_cam_lidar, and the rig."""
        config, sensor = self.config, self.sensor
        height, width = image.rgb.shape[:2]
        rng = sample_rng(config.seed, item.key, 0, sensor.name)
        translation_jitter, rotation_jitter = sample_mount_jitter(self.jitter, rng)
        T_cam_lidar = mount_pose(self.mount, translation_jitter, rotation_jitter)
        reflectance = luma(image.rgb) if config.reflectance == "luma" else None
        scan = simulate_scan(scene, K, width, height, sensor, T_cam_lidar, rng, times, self.cast_threads, reflectance)
        points_cam = scan.points_lidar[:, :3].astype(np.float64) @ T_cam_lidar[:3, :3].T + T_cam_lidar[:3, 3]
        cameras = rig_cameras(self.rig, K, width, height)
        mount = self._mount_meta(translation_jitter, rotation_jitter)
        for camera in cameras:
            with times.stage("rig"):
                view = render_view(camera, K, image.rgb, prediction.depth, points_cam)
            R_view_photo = camera.R_photo_view.T
            T_view_lidar = np.eye(4)
            T_view_lidar[:3] = R_view_photo @ T_cam_lidar[:3]
            with times.stage("encode"):
                buffer = io.BytesIO()
                Image.fromarray(view.rgb).save(buffer, format="JPEG", quality=config.jpeg_quality)
            meta = {
                "key": f"{item.key}-r{camera.index}",
                "scene": item.key,
                "source_path": item.relpath,
                "image_size": [camera.width, camera.height],
                "K": camera.K.tolist(),
                "intrinsics_source": intrinsics_source,
                "photo": {"image_size": [width, height], "K": K.tolist()},
                "rig": {
                    "name": self.rig.name,
                    "view": camera.index,
                    "views": len(cameras),
                    "yaw_deg": float(np.rad2deg(camera.yaw_rad)),
                    "R_view_photo": R_view_photo.tolist(),
                    "neighbours": list(camera.neighbours),
                    "outside_pixels": view.outside_pixels,
                },
                "T_cam_lidar": T_view_lidar.tolist(),
                "mount": mount,
                "mesh": mesh.summary(),
                "image_reencoded": True,
            }
            jpeg = buffer.getvalue()
            yield self._write_rig_view(meta, jpeg, view.dense_m, view.sparse_m, scan, prediction, writer, times)

    def _write_frame_samples(self, frame: RigFrame, images, predictions, writer: ShardWriter, times: StageTimes):
        """A real rig's frame: every camera's teacher depth meshed and moved into the rig
        frame, all of them ONE scene; ONE LiDAR scan from the calibration's T_rig_lidar
        (plus the mount jitter) cast into it; per camera a sample `<frame key>-r<index>`
        with its own image, dense depth and the scan's points in its own z-buffer."""
        config, calibration = self.config, self.calibration
        with times.stage("mesh"):
            meshes = [
                depth_to_mesh(prediction.depth, camera.K, config.mesh_options)
                for camera, prediction in zip(calibration.cameras, predictions, strict=True)
            ]
        with times.stage("scene"):
            scene = MeshScene(
                *merge_meshes(
                    [
                        (mesh.vertices_cam, mesh.triangles, camera.T_rig_cam)
                        for camera, mesh in zip(calibration.cameras, meshes, strict=True)
                    ]
                )
            )
        rng = sample_rng(config.seed, frame.key, 0, self.sensor.name)
        translation_jitter, rotation_jitter = sample_mount_jitter(self.jitter, rng)
        T_rig_lidar = jittered_pose(calibration.T_rig_lidar, translation_jitter, rotation_jitter)
        scan_cameras = [
            ScanCamera(
                camera.K,
                camera.width,
                camera.height,
                camera.T_cam_rig,
                luma(image.rgb) if config.reflectance == "luma" else None,
            )
            for camera, (_, image) in zip(calibration.cameras, images, strict=True)
        ]
        scan = simulate_rig_scan(scene, scan_cameras, self.sensor, T_rig_lidar, rng, times, self.cast_threads)
        mount = {**self._mount_meta(translation_jitter, rotation_jitter), "name": "calibration"}
        for index, camera in enumerate(calibration.cameras):
            scan_camera, (_, image), prediction = scan_cameras[index], images[index], predictions[index]
            with times.stage("rig"):
                sparse_m, _ = sparse_depth_image(
                    scan_camera.from_scene(scan.points_scene), camera.K, camera.width, camera.height
                )
            R_rig_cam = camera.T_rig_cam[:3, :3]
            neighbours = calibration.neighbours[index]
            meta = {
                "key": f"{frame.key}-r{index}",
                "scene": frame.key,
                "source_path": frame.images[index],
                "image_size": [camera.width, camera.height],
                "K": camera.K.tolist(),
                "intrinsics_source": "calibration",
                "rig": {
                    "name": calibration.name,
                    "camera": camera.name,
                    "view": index,
                    "views": len(calibration.cameras),
                    "T_rig_cam": camera.T_rig_cam.tolist(),
                    "T_rig_lidar": T_rig_lidar.tolist(),
                    "neighbours": list(neighbours),
                    # Directions of each neighbour's frame in this camera's, in the order of neighbours.
                    "R_cam_neighbours": [
                        (R_rig_cam.T @ calibration.cameras[other].T_rig_cam[:3, :3]).tolist() for other in neighbours
                    ],
                },
                "T_cam_lidar": (scan_camera.T_cam_scene @ T_rig_lidar).tolist(),
                "mount": mount,
                "mesh": meshes[index].summary(),
                "image_reencoded": image.reencoded,
            }
            yield self._write_rig_view(meta, image.jpeg, prediction.depth, sparse_m, scan, prediction, writer, times)

    def _write_rig_view(self, meta: dict, jpeg: bytes, dense_m, sparse_m, scan, prediction, writer, times) -> dict:
        """One camera of a rig (virtual or real) as a sample: `meta` (its own fields: key,
        scene, K, rig, T_cam_lidar, ...) completed with the scan's counts and phase, the
        sensor and teacher records; dense_m and sparse_m (H, W) metres; teacher.png, the
        teacher's relative disparity in the view (for distillation). Returns the counts."""
        counts = {**scan.counts, "sparse_pixels": int(np.count_nonzero(sparse_m))}
        valid = dense_m > 0
        disparity = np.where(valid, 1.0 / np.where(valid, dense_m, 1.0), 0.0)
        with times.stage("encode"):
            teacher_png, low, high = schema.encode_relative_png(disparity, valid)
            meta = {
                **meta,
                "sensor": self._sensor_meta(),
                **scan.phase,
                "teacher": prediction.describe(),
                "teacher_relative": {
                    "teacher": prediction.teacher,
                    "stored": "disparity",
                    "from": "1 / dense: the teacher's depth in the view",
                    "normalisation": "min-max per image, 1..65535 = 0..1, 0 = none",
                    "min": low,
                    "max": high,
                },
                "seed": self.config.seed,
                "view": 0,
                "counts": counts,
            }
            members = {
                schema.IMAGE: jpeg,
                schema.SPARSE: schema.encode_depth_png(sparse_m),
                schema.DENSE: schema.encode_depth_png(dense_m),
                schema.TEACHER: teacher_png,
                schema.META: json.dumps(meta, sort_keys=True).encode(),
            }
            if self.config.save_points:
                members[schema.POINTS] = _npy_bytes(scan.points_lidar)
        with times.stage("write"):
            writer.write(meta["key"], members)
        return counts


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()

"""One scene model for every input. A Scene is a list of cameras (image, K, T_scene_cam,
teacher depth) and the views to write: a photo is a rig of one camera, `--rig virtual`
cuts views out of one camera, a calibrated rig has several cameras. Every kind goes
through one chain: each camera's depth, its smeared jumps cut (edges.py), a ray target ->
one target in the scene frame -> one LiDAR scan per scan index -> one build_sample per view."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
from simlidar.sensors import mount_pose, sample_mount_jitter
from simlidar.sensors.camera import invert_pose
from simlidar.sensors.mount import jittered_pose
from simlidar.sensors.sweep import sample_sweep_motion
from simlidar.sensors.targets import RayTarget, TargetUnion
from simlidar.teachers import DepthPrediction, SidecarTeacher, TeacherInput, resolve_intrinsics

from .. import schema
from ..sources.photos import LoadedImage, load_image
from .edges import EdgeOptions, edge_record, handle_edges
from .mesh import MeshOptions
from .sample import ScanRecord, View, build_sample
from .scan import Scan, ScanCamera, photo_scan_camera, simulate_rig_scan
from .target import CameraTarget, ray_target
from .timing import StageTimes

if TYPE_CHECKING:
    from ..config import RunPlan


def _stable_int(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def sample_rng(seed: int, key: str, view: int, sensor_name: str) -> np.random.Generator:
    """The one generator of a (run seed, source key, view, sensor) sample."""
    return np.random.default_rng(np.random.SeedSequence([seed, _stable_int(key), view, _stable_int(sensor_name)]))


def image_rng(seed: int, key: str, purpose: str = "teacher") -> np.random.Generator:
    """The generator of a (run seed, source key) draw shared by every view and sensor:
    the teacher's depth conversion, the random intrinsics; `purpose` keeps them apart."""
    return np.random.default_rng(np.random.SeedSequence([seed, _stable_int(key), _stable_int(purpose)]))


@dataclass
class SceneCamera:
    """One camera of a scene: its image, K (3, 3) pixels (and where K came from), its
    teacher prediction (metric depth (H, W) m), the input path the json names, its name
    in a calibration, T_scene_cam (4, 4) into the scene's frame (None: the scene's
    frame is this camera's), what its source said about it (a WebDataset input's
    json and txt; None: nothing) and the record of the edge rule its depth went through
    (None: not yet)."""

    image: LoadedImage
    K: np.ndarray
    intrinsics_source: str
    prediction: DepthPrediction
    source_path: str
    name: str = ""
    T_scene_cam: np.ndarray | None = None
    source_meta: dict | None = None
    edges: dict | None = None

    @property
    def width(self) -> int:
        return self.image.rgb.shape[1]

    @property
    def height(self) -> int:
        return self.image.rgb.shape[0]

    @cached_property
    def dense_png(self) -> bytes:
        """The teacher's depth as a sample's dense.png, encoded once for every view."""
        return schema.encode_depth_png(self.prediction.depth)

    def with_edges_cut(self, options: EdgeOptions, threads: int = 0) -> SceneCamera:
        """This camera with its depth's smeared jumps cut at its photo's edges
        (stages/edges.py, on `threads` threads, 0: every core): the depth it is meshed
        from and its samples' dense target."""
        result = handle_edges(self.prediction.depth, self.image.rgb, options, threads)
        prediction = dataclasses.replace(self.prediction, depth=result.depth_m)
        return dataclasses.replace(self, prediction=prediction, edges=edge_record(options, result))

    def scan_camera(self, reflectance: str) -> ScanCamera:
        """This camera as a scan serves it; reflectance: "luma" (from its image) or "uniform"."""
        T_cam_scene = None if self.T_scene_cam is None else invert_pose(self.T_scene_cam)
        if reflectance == "luma":
            return photo_scan_camera(self.K, self.image.rgb, T_cam_scene)
        return ScanCamera(self.K, self.width, self.height, T_cam_scene)


class ViewMaker(Protocol):
    """Turns one scan of a scene into the views (samples) it gives."""

    def views(self, context: ScanContext) -> list[View]: ...


@dataclass(frozen=True)
class Scene:
    """key: the sample key stem; cameras: in index order; views: what each scan gives;
    scans: LiDAR frames to draw (a photo's --views; one for a rig); T_scene_lidar (4, 4):
    a calibrated LiDAR mount (None: the run's mount on the first camera)."""

    key: str
    cameras: tuple[SceneCamera, ...]
    views: ViewMaker
    scans: int = 1
    T_scene_lidar: np.ndarray | None = None


@dataclass
class ScanContext:
    """What a ViewMaker gets for one scan: the scene, its per-camera targets, the scan and
    the pose it was cast from, the scan's index and generator (for the draws after the
    scan), the run's plan and timings."""

    scene: Scene
    targets: list[CameraTarget]
    scan: Scan
    T_scene_lidar: np.ndarray
    index: int
    rng: np.random.Generator
    plan: RunPlan
    times: StageTimes


def sidecar_camera(path: Path, times: StageTimes) -> SceneCamera:
    """A photo with sidecar depth and intrinsics as a scene's one camera (for bench and
    `sensors show`), timing the 'read' and 'teacher' stages."""
    with times.stage("read"):
        image = load_image(path, 95)
    with times.stage("teacher"):
        prediction = SidecarTeacher().predict([TeacherInput(path, image.rgb)])[0]
    height, width = prediction.depth.shape
    K, intrinsics_source = resolve_intrinsics(path, width, height, None, None)
    return SceneCamera(image, K, intrinsics_source, prediction, path.name)


def scene_target(scene: Scene, options: MeshOptions, times: StageTimes) -> tuple[RayTarget, list[CameraTarget]]:
    """Each camera's teacher depth as a ray target in the scene's frame, and all of them as
    one target (a rig's: each ray's nearest hit among its cameras')."""
    targets = [
        ray_target(camera.prediction.depth, camera.K, options, camera.T_scene_cam, times) for camera in scene.cameras
    ]
    return (targets[0].target if len(targets) == 1 else TargetUnion([each.target for each in targets])), targets


def place_lidar(scene: Scene, plan: RunPlan, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """T_scene_lidar (4, 4) of one scan, the mount drawn from `rng` with the run's jitter,
    and the mount's json record."""
    translation_jitter, rotation_jitter = sample_mount_jitter(plan.jitter, rng)
    if scene.T_scene_lidar is None:
        T_scene_lidar, name = mount_pose(plan.mount, translation_jitter, rotation_jitter), plan.mount.name
    else:
        T_scene_lidar, name = jittered_pose(scene.T_scene_lidar, translation_jitter, rotation_jitter), "calibration"
    record = {
        "name": name,
        "jitter_translation_m": translation_jitter.tolist(),
        "jitter_roll_pitch_yaw_deg": np.rad2deg(rotation_jitter).tolist(),
    }
    return T_scene_lidar, record


def sensor_record(plan: RunPlan) -> dict:
    sensor = plan.sensor
    return {
        "name": sensor.name,
        "kind": sensor.kind,
        "spec_hash": sensor.spec_hash(),
        "effects": dataclasses.asdict(sensor.effects),
        "reflectance": plan.config.reflectance,
        **({"ray_drop": {"model": "fitted", "source": sensor.ray_drop.source}} if sensor.ray_drop else {}),
    }


def simulate_scene(
    scene: Scene, plan: RunPlan, times: StageTimes, threads: int = 0
) -> Iterator[tuple[str, dict[str, bytes], dict]]:
    """(key, members, counts) of every sample of `scene`: cut each camera's smeared depth
    jumps, its ray target, then per scan index place the LiDAR, cast one scan that serves
    every camera, and build each view's sample."""
    with times.stage("edges"):
        cameras = tuple(camera.with_edges_cut(plan.edges, threads) for camera in scene.cameras)
        scene = dataclasses.replace(scene, cameras=cameras)
    target, targets = scene_target(scene, plan.mesh, times)
    cameras = [camera.scan_camera(plan.config.reflectance) for camera in scene.cameras]
    sensor = sensor_record(plan)
    for index in range(scene.scans):
        rng = sample_rng(plan.config.seed, scene.key, index, plan.sensor.name)
        T_scene_lidar, mount = place_lidar(scene, plan, rng)
        motion = None if plan.ego_motion is None else sample_sweep_motion(plan.ego_motion, plan.config.deskew, rng)
        scan = simulate_rig_scan(target, cameras, plan.sensor, T_scene_lidar, rng, times, threads, motion)
        record = ScanRecord(index, sensor, mount, plan.config.seed)
        context = ScanContext(scene, targets, scan, T_scene_lidar, index, rng, plan, times)
        for view in scene.views.views(context):
            with times.stage("encode"):
                members, counts = build_sample(view, context.scan, record, plan.config.save_points)
            with times.stage("write"):
                yield view.key, members, counts

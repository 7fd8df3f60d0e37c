"""Every kind of input behind one interface, so that one runner, distributor, worker, writer
and manifest serve them all: photos (folders, globs, lists, URLs, WebDataset shards of
images), virtual rigs cut out of photos, calibrated rigs, the KITTI depth-completion tree
and calibrated rigs with real LiDAR.

A kind lists its inputs (sorted, each with a key and a relpath), reads one (BadImage: the
input is recorded in errors.jsonl and skipped), turns what it read and the teacher's
predictions into a scene, and gives that scene's samples: simulated for photos and rigs
(stages/scene.py), recorded for KITTI and real sweeps (stages/recorded.py). It also says
what made its output, for the dataset card. `generate_kind` is the one place a kind is
chosen from generate's options; each `convert` command names its own."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from simlidar.sensors import MountJitter
from simlidar.teachers import DepthPrediction, TeacherError, TeacherInput

from ..errors import OptionError, PipelineError
from ..stages.camera import calibrated_cameras, photo_camera
from ..stages.recorded import kitti_sample, sweep_sample
from ..stages.scene import Scene, simulate_scene
from ..stages.timing import StageTimes
from ..stages.views import CalibratedViews, PhotoViews, VirtualRigViews
from .calibrated_rig import Calibration, is_calibration, list_frames, load_calibration, load_frame, rig_folder
from .calibrated_rig_lidar import find_lidar_folder, read_frame_sweep, sweep_candidates
from .inputs import list_sources
from .kitti import KittiFrame, list_kitti_frames, read_kitti_frame
from .photos import IMAGE_SUFFIXES, LoadedImage, load_image
from .urls import is_url
from .virtual_rig import Rig, load_rig

if TYPE_CHECKING:
    from ..config import ConvertKittiConfig, ConvertRigConfig, GenerateConfig

# (key, members, counts) of one sample, as the writer takes it.
Sample = tuple[str, dict[str, bytes], dict]


@dataclass
class Reading:
    """One input as read: its item and what the teacher sees of it (one input per camera,
    in camera order; none when the run has no teacher). Each kind adds what it read."""

    item: Any
    teacher_inputs: list[TeacherInput]


class InputKind(Protocol):
    """A kind of input; `unit` names one input for the progress bar ("img", "frame")."""

    unit: str

    def list_inputs(self, plan) -> list:
        """Every input, sorted, each with `key` and `relpath`; PipelineError when there is none."""
        ...

    def input_files(self, item) -> dict[str, str | None]:
        """Every file (path or URL) the input is read from, present or not, the first its main
        one, with its state as listed (None: to be looked up): what its fingerprint covers
        (sources/fingerprint.py)."""
        ...

    def read(self, item, scratch: Path, plan) -> Reading:
        """One input's files, made local in `scratch` first when they are not; BadImage when unusable."""
        ...

    def to_scene(self, reading: Reading, predictions: list[DepthPrediction | TeacherError], plan, times: StageTimes):
        """What the samples are made from; TeacherError, IntrinsicsError or UnusableDepth for an unusable input."""
        ...

    def samples(self, scene, plan, times: StageTimes, threads: int) -> Iterator[Sample]: ...

    def made_by(self, plan) -> dict:
        """What made the output, for the dataset card: summary (a sentence), rows (label, value)."""
        ...


@dataclass
class PhotoReading(Reading):
    """A photo: its decoded image and what its source said about it (a shard's json and txt)."""

    image: LoadedImage
    source_meta: dict | None


def _with_sidecar_depth(items: list, teacher: str, root) -> list:
    """`items`, or PipelineError when --teacher sidecar finds no depth beside any of them."""
    if teacher == "sidecar" and not any(item.has_depth_sidecar() for item in items):
        raise PipelineError(
            f"none of the {len(items)} photos in {root} has depth beside it (photo.depth.png or "
            "photo.depth.npy); add those files, or pass `teacher` with a depth model"
        )
    return items


def _no_rig_options(config: GenerateConfig, calibration_error: MountJitter | None, why: str) -> None:
    """Options a rig's one scan per frame cannot honour."""
    if config.views != 1:
        raise OptionError(f"`rig` makes one LiDAR scan per {why} for all views: keep `views` 1")
    if calibration_error is not None:
        raise OptionError("`calibration_error` is for single cameras; drop it or `rig`")


@dataclass(frozen=True)
class Photos:
    """Photos: each a scene of one camera, scanned `--views` times (a sample per scan)."""

    unit = "img"

    def list_inputs(self, plan) -> list:
        items, root = list_sources(plan.config.images)
        if not items:
            looked_for = ", ".join(sorted(IMAGE_SUFFIXES))
            raise PipelineError(f"no images in {plan.config.images} (looked for {looked_for})")
        return _with_sidecar_depth(items, plan.config.teacher, root)

    def input_files(self, item) -> dict[str, str | None]:
        return item.files()

    def read(self, item, scratch: Path, plan) -> PhotoReading:
        staged = item.stage(scratch)
        image = load_image(staged.path, plan.config.jpeg_quality, plan.config.max_pixels)
        return PhotoReading(item, [TeacherInput(staged.path, image.rgb)], image, staged.source_meta)

    def _camera(self, reading: PhotoReading, predictions: list, plan, times: StageTimes):
        (teacher_input,), (prediction,) = reading.teacher_inputs, predictions
        return photo_camera(
            teacher_input.path,
            reading.image,
            prediction,
            plan,
            reading.item.key,
            times,
            reading.item.relpath,
            reading.source_meta,
        )

    def to_scene(self, reading: PhotoReading, predictions: list, plan, times: StageTimes) -> Scene:
        camera = self._camera(reading, predictions, plan, times)
        return Scene(reading.item.key, (camera,), PhotoViews(plan.calibration_error), plan.config.views)

    def samples(self, scene: Scene, plan, times: StageTimes, threads: int) -> Iterator[Sample]:
        return simulate_scene(scene, plan, times, threads)

    def made_by(self, plan) -> dict:
        return _simulated(plan, "ordinary photos", "photo", "photos", False)


@dataclass(frozen=True)
class VirtualRig(Photos):
    """`--rig virtual|FILE.toml`: one scan of each photo serves the rig's views cut out of it."""

    rig: Rig

    def to_scene(self, reading: PhotoReading, predictions: list, plan, times: StageTimes) -> Scene:
        camera = self._camera(reading, predictions, plan, times)
        return Scene(reading.item.key, (camera,), VirtualRigViews(self.rig, plan.config.jpeg_quality))

    def made_by(self, plan) -> dict:
        what = f"ordinary photos, each cut into the views of the virtual rig `{self.rig.name}`"
        return _simulated(plan, what, "view", "photos", True)


@dataclass
class FrameReading(Reading):
    """A rig's frame: every camera's image, in the calibration's order."""

    images: list[LoadedImage]


@dataclass(frozen=True)
class CalibratedRig:
    """`--rig calibration.json`: a real rig's frames, each camera's teacher depth placed in
    the rig frame; one scan per frame serves every camera."""

    calibration: Calibration
    unit = "frame"

    def list_inputs(self, plan) -> list:
        frames = list_frames(plan.config.images, self.calibration)
        return _with_sidecar_depth(frames, plan.config.teacher, plan.config.images)

    def input_files(self, item) -> dict[str, str | None]:
        return item.files()

    def read(self, item, scratch: Path, plan) -> FrameReading:
        loaded = load_frame(item, self.calibration, plan.config.jpeg_quality, plan.config.max_pixels)
        teacher_inputs = [TeacherInput(path, image.rgb) for path, image in loaded]
        return FrameReading(item, teacher_inputs, [image for _, image in loaded])

    def to_scene(self, reading: FrameReading, predictions: list, plan, times: StageTimes) -> Scene:
        item = reading.item
        cameras = calibrated_cameras(reading.images, predictions, self.calibration, plan, item.key, times, item.images)
        return Scene(item.key, cameras, CalibratedViews(self.calibration), 1, self.calibration.T_rig_lidar)

    def samples(self, scene: Scene, plan, times: StageTimes, threads: int) -> Iterator[Sample]:
        return simulate_scene(scene, plan, times, threads)

    def made_by(self, plan) -> dict:
        what = f"the frames of the calibrated rig `{self.calibration.name}`, one teacher depth per camera"
        return _simulated(plan, what, "camera", "frames", True)


def generate_kind(config: GenerateConfig, calibration_error: MountJitter | None) -> Photos | VirtualRig | CalibratedRig:
    """The kind of input generate's options name: --rig a calibration .json, a virtual rig
    (a preset or a .toml), or none (photos); calibration_error: the run's (None: exact)."""
    if is_calibration(config.rig):
        if config.mount or config.intrinsics:
            raise OptionError(
                "a rig calibration gives the cameras' K and the LiDAR's T_rig_lidar: drop `mount` and `intrinsics`"
            )
        _no_rig_options(config, calibration_error, "frame")
        if config.ego_motion.strip().lower() not in ("none", ""):
            raise OptionError(
                "`ego_motion` is for one camera's scans: a rig calibration's cameras fire at their own times; "
                "drop `ego_motion` or `rig`"
            )
        return CalibratedRig(load_calibration(config.rig))
    if config.rig:
        _no_rig_options(config, calibration_error, "photo")
        return VirtualRig(load_rig(config.rig))
    return Photos()


def kind_files(config: GenerateConfig) -> dict[str, str]:
    """The file --rig names, when it names one (a virtual rig's .toml, a calibration .json)."""
    return {"rig": config.rig} if config.rig.endswith((".toml", ".json")) else {}


def _jitter(config: GenerateConfig) -> str:
    jitter = config.mount_jitter.strip()
    return "no per-view jitter" if jitter.lower() in ("none", "") else f"per-view jitter {jitter}"


def _simulated(plan, what: str, per: str, unit: str, rig_members: bool) -> dict:
    """The card's record of a simulated output made from `what`, one sample per `per` and
    scan; rig_members: whether samples carry teacher.png (rigs do, for distillation)."""
    sensor, config = plan.sensor, plan.config
    intrinsics = "per image, as each sample's json records (`intrinsics_source`)"
    if config.intrinsics:
        intrinsics = "fixed: fx, fy, cx, cy = " + ", ".join(f"{value:g}" for value in config.intrinsics)
    members = [
        ["jpg", "the camera image"],
        ["sparse.png", "simulated LiDAR depth: uint16, metres = value / 256, 0 = no return"],
        ["dense.png", "teacher depth, same encoding"],
        *([["teacher.png", "the teacher's relative disparity, min-max normalised"]] if rig_members else []),
        ["json", "K, image size, T_cam_lidar, sensor, teacher, depth conversion, seed, source path, counts"],
        *(
            [["points.npy", "N x 7 float32 in the LiDAR frame (columns in the json's `points_layout`)"]]
            if config.save_points
            else []
        ),
    ]
    return {
        "command": config.command,
        "summary": (
            f"from {what}: a depth teacher predicts dense depth for each image, the depth becomes a ray-casting "
            f"target (a mesh, or the depth map's grid cast in place), a simulated **{sensor.name}** LiDAR is "
            f"ray-cast into it and its returns are projected into the camera, one sample per {per} and scan. Each "
            "sample pairs the image with the *sparse* simulated LiDAR depth and the *dense* teacher depth."
        ),
        "unit": unit,
        "tags": ["simulated"],
        "rows": [
            [
                "sensor",
                f"`{sensor.name}`: {sensor.channels} channels, {sensor.points_per_frame} points per frame, "
                f"spec hash `{sensor.spec_hash()}`",
            ],
            ["mount", f"`{plan.mount.name}`{'' if config.mount else ' (the sensor default)'}, {_jitter(config)}"],
            ["intrinsics", intrinsics],
            ["views per image", str(config.views)],
            ["seed", str(config.seed)],
        ],
        "members": members,
    }


@dataclass
class KittiReading(Reading):
    recording: Any


@dataclass(frozen=True)
class KittiDepth:
    """`convert kitti`: the KITTI depth-completion tree's frames, one sample each."""

    root: Path
    split: str
    raw: Path | None
    unit = "frame"

    def list_inputs(self, plan) -> list[KittiFrame]:
        return list_kitti_frames(self.root, self.split, self.raw)

    def input_files(self, item: KittiFrame) -> dict[str, str | None]:
        return item.files()

    def read(self, item: KittiFrame, scratch: Path, plan) -> KittiReading:
        recording = read_kitti_frame(item)
        teacher_inputs = [TeacherInput(item.image, recording.rgb)] if plan.teacher is not None else []
        return KittiReading(item, teacher_inputs, recording)

    def to_scene(self, reading: KittiReading, predictions: list, plan, times: StageTimes):
        return reading, _recorded_predictions(predictions, 1)

    def samples(self, scene, plan, times: StageTimes, threads: int) -> Iterator[Sample]:
        reading, (prediction,) = scene
        members, counts = kitti_sample(reading.item, self.split, reading.recording, prediction)
        yield reading.item.key, members, counts

    def made_by(self, plan) -> dict:
        return _recorded(
            plan,
            f"from the KITTI depth-completion benchmark's {self.split} split: each frame's real HDL-64E scan "
            "projected into its camera as *sparse* depth, the annotated semi-dense ground truth as *dense* depth.",
            ["png", "the camera image, KITTI's own bytes (jpg where the tree holds JPEGs)"],
            "KITTI's velodyne_raw: the real scan projected into the camera",
            "the annotated semi-dense ground truth",
            "K, image size, split, source path, counts",
        )


@dataclass
class SweepReading(FrameReading):
    sweep: Any


@dataclass(frozen=True)
class RigLidar:
    """`convert rig`: a calibrated rig's frames with their real LiDAR sweep, a sample per camera."""

    calibration: Calibration
    root: Path
    lidar_folder: Path
    columns: str
    unit = "frame"

    def list_inputs(self, plan) -> list:
        return list_frames(self.root, self.calibration)

    def input_files(self, item) -> dict[str, str | None]:
        return {**item.files(), **dict.fromkeys(str(path) for path in sweep_candidates(self.lidar_folder, item))}

    def read(self, item, scratch: Path, plan) -> SweepReading:
        loaded = load_frame(item, self.calibration, plan.config.jpeg_quality, plan.config.max_pixels)
        sweep = read_frame_sweep(self.root, self.lidar_folder, item, self.columns)
        teacher_inputs = [TeacherInput(path, image.rgb) for path, image in loaded] if plan.teacher is not None else []
        return SweepReading(item, teacher_inputs, [image for _, image in loaded], sweep)

    def to_scene(self, reading: SweepReading, predictions: list, plan, times: StageTimes):
        return reading, _recorded_predictions(predictions, len(reading.images))

    def samples(self, scene, plan, times: StageTimes, threads: int) -> Iterator[Sample]:
        reading, predictions = scene
        for index, (image, prediction) in enumerate(zip(reading.images, predictions, strict=True)):
            yield sweep_sample(reading.item, index, self.calibration, image, reading.sweep, prediction)

    def made_by(self, plan) -> dict:
        return _recorded(
            plan,
            f"from the frames of the calibrated rig `{self.calibration.name}` with their real LiDAR sweeps: each "
            "sweep projected into every camera with a z-buffer is both the *sparse* and the *dense* depth.",
            ["jpg", "the camera image (its own bytes where it is a JPEG)"],
            "the real sweep projected into the camera (nearest point per pixel)",
            "the same projection (ground truth)",
            "K, image size, T_cam_lidar, rig record and neighbours, sweep path and columns, counts",
        )


def kitti_kind(config: ConvertKittiConfig) -> KittiDepth:
    if is_url(config.root):
        raise OptionError(f"{config.root}: the KITTI tree must be a local folder")
    return KittiDepth(Path(config.root), config.split, Path(config.raw) if config.raw else None)


def rig_lidar_kind(config: ConvertRigConfig) -> RigLidar:
    """The rig's calibration read and its LiDAR folder found before any work."""
    calibration = load_calibration(config.rig)
    root = rig_folder(config.root)
    lidar_folder = find_lidar_folder(root, calibration, config.lidar_folder or None)
    return RigLidar(calibration, root, lidar_folder, config.lidar_columns)


def _recorded_predictions(predictions: list, cameras: int) -> list[DepthPrediction | None]:
    """One prediction per camera (None: no teacher); the TeacherError of a camera it failed on."""
    for prediction in predictions:
        if isinstance(prediction, TeacherError):
            raise prediction
    return predictions or [None] * cameras


def _recorded(plan, summary: str, image: list, sparse: str, dense: str, json_record: str) -> dict:
    """The card's record of an output of recorded LiDAR (nothing simulated)."""
    teacher = plan.config.teacher
    members = [
        image,
        ["sparse.png", f"{sparse}: uint16, metres = value / 256, 0 = no return"],
        ["dense.png", f"{dense}, same encoding"],
        *([["teacher.png", f"the relative disparity of `{teacher}`, min-max normalised"]] if teacher else []),
        ["json", json_record],
    ]
    return {
        "command": plan.config.command,
        "summary": summary,
        "unit": "frames",
        "tags": ["real"],
        "rows": [["LiDAR", "recorded: real scans, nothing simulated"]],
        "members": members,
    }

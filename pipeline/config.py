"""The run configs: every option that shapes an output, for `simlidar generate` and each
`simlidar convert` command, and the plans they resolve into.

A config is recorded in full in manifest.json; a re-run on the same output resumes only
if its fields are unchanged.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import ClassVar

from simlidar.sensors import (
    DEFAULT_MOUNT_JITTER,
    MOUNTS,
    RETURN_MODES,
    MountJitter,
    Sensor,
    configure_sensor,
    load_sensor,
    parse_mount_jitter,
)
from simlidar.sensors.calibration import KITTI_CAMERAS, CalibrationError, mount_from_calibration
from simlidar.sensors.mount import Mount
from simlidar.sensors.sweep import EgoMotion, parse_ego_motion
from simlidar.teachers import (
    DepthConversion,
    check_teacher_name,
    depth_conversion,
    known_teachers,
    parse_fov_range,
    parse_policy,
)
from simlidar.teachers.intrinsics import MAX_FOV_DEG, MIN_FOV_DEG

from .errors import OptionError, PipelineError
from .sources.calibrated_rig_lidar import LIDAR_COLUMNS
from .sources.fingerprint import named_file_hashes
from .sources.kinds import InputKind, generate_kind, kind_files, kitti_kind, rig_lidar_kind
from .sources.kitti import SPLITS
from .sources.photos import MIN_IMAGE_SIDE
from .stages.edges import RULES as EDGE_RULES
from .stages.edges import EdgeOptions
from .stages.mesh import METHODS, MeshOptions
from .stages.recorded import RECORDED_SENSOR
from .stages.teacher import TeacherSpec

TEACHERS = known_teachers()
# Where a return's reflectance comes from: the photo's luma, or one value everywhere.
REFLECTANCE_SOURCES = ("luma", "uniform")
# Which model decides the returns of beams that hit: the sensor file's fitted ray drop
# (auto: where it has one), or the weak-return drop of the luma signal.
RAY_DROP_MODELS = ("auto", "fitted", "weak-return")
# Photos larger than this are recorded, not meshed: a photo's run holds ~250 bytes per
# pixel at its peak (measured: 0.67 GB for 1.5 MP, 1.8 GB for 6 MP), so 24 MP is ~6 GB per
# worker. A fixed figure, not one read from the machine: output never depends on the machine.
DEFAULT_MAX_PIXELS = 24_000_000
# Fields that do not change what is written: a resumed run may change them.
RUNTIME_FIELDS = ("teacher_batch_size", "teacher_device", "teacher_cache")


@dataclass(frozen=True)
class RunPlan:
    """A GenerateConfig resolved once, before any work: typed and picklable, what every
    worker, task and actor receives (nothing downstream parses the config's strings).

    config: what the user said (seed, views, jpeg quality, ... as recorded); sensor with
    the run's overrides; mount and its jitter ranges; calibration_error: ranges of the
    recorded extrinsics' error (None: exact); ego_motion: the ranges each scan's motion
    during the sweep is drawn from (None: still); teacher: how to build it; conversion:
    relative-to-metric; intrinsics_policy and fov_range_deg; edges: how each camera's depth
    discontinuities are cut before meshing; mesh options; kind: the kind of input (photos, a
    virtual rig, a calibrated rig); config_files: the content hashes of the files the config
    names (part of the run's identity)."""

    config: GenerateConfig
    sensor: Sensor
    mount: Mount
    jitter: MountJitter
    calibration_error: MountJitter | None
    ego_motion: EgoMotion | None
    teacher: TeacherSpec
    conversion: DepthConversion
    intrinsics_policy: tuple[str, ...]
    fov_range_deg: tuple[float, float]
    edges: EdgeOptions
    mesh: MeshOptions
    kind: InputKind
    config_files: dict = field(default_factory=dict)

    def resolved_mount(self) -> str:
        """The mount the run used: a named mount (kitti for the sensor's default) or a calibration file."""
        return self.mount.name

    def manifest_sensor(self) -> dict:
        """The manifest's record of the simulated sensor."""
        return {
            "name": self.sensor.name,
            "spec_hash": self.sensor.spec_hash(),
            "channels": self.sensor.channels,
            "points_per_frame": self.sensor.points_per_frame,
        }


class RunConfig:
    """What every run's config does: it names its command, is recorded in manifest.json as
    a dict and lists its differences from a recorded one (what a resume refuses)."""

    command: ClassVar[str]

    def to_dict(self) -> dict:
        return {name: list(value) if isinstance(value, tuple) else value for name, value in asdict(self).items()}

    @classmethod
    def from_dict(cls, record: dict):
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(record) - known)
        if unknown:
            raise PipelineError(f"unknown config fields: {', '.join(unknown)}")
        return cls(**{name: tuple(value) if isinstance(value, list) else value for name, value in record.items()})

    def named_files(self) -> dict[str, str]:
        """{role: path} of the files this config names (sensor, mount, rig, calibration)."""
        return {}

    def differences(self, other: RunConfig) -> list[str]:
        """'field: old -> new' for every field that differs from `other`."""
        mine, theirs = self.to_dict(), other.to_dict()
        return [
            f"{name}: {theirs.get(name)!r} -> {mine[name]!r}"
            for name in mine
            if name not in RUNTIME_FIELDS and mine[name] != theirs.get(name)
        ]


@dataclass(frozen=True)
class GenerateConfig(RunConfig):
    command: ClassVar[str] = "simlidar generate"

    images: str
    sensor: str = "hdl64"
    mount: str = ""
    mount_camera: int = 2
    teacher: str = "auto"
    seed: int = 0
    limit: int | None = None
    shard_size: int = 500
    views: int = 1
    rig: str = ""
    fov_deg: float | None = None
    intrinsics: tuple[float, float, float, float] | None = None
    save_points: bool = False
    edges: str = EdgeOptions.rule
    max_depth_jump: float = MeshOptions.max_depth_jump
    max_grazing_deg: float = MeshOptions.max_grazing_deg
    occlusion_fill_px: int = MeshOptions.occlusion_fill_px
    mesh: str = MeshOptions.method
    mesh_stride: int = MeshOptions.stride
    mesh_faces: float = MeshOptions.target_faces
    poisson_depth: int = MeshOptions.poisson_depth
    poisson_trim_px: float = MeshOptions.poisson_trim_px
    mount_jitter: str = DEFAULT_MOUNT_JITTER
    calibration_error: str = "none"
    ego_motion: str = "none"
    deskew: bool = False
    ray_drop: str = "auto"
    range_noise_m: float | None = None
    drop_rate: float | None = None
    detection_range_m: float | None = None
    divergence_mrad: float | None = None
    sub_rays: int | None = None
    returns: str | None = None
    reflectance: str = "luma"
    integration_time_s: float | None = None
    jpeg_quality: int = 95
    max_pixels: int = DEFAULT_MAX_PIXELS
    teacher_batch_size: int = 4
    teacher_output: str = ""
    teacher_revision: str = ""
    teacher_device: str = "auto"
    teacher_dtype: str = "auto"
    teacher_max_size: int = 1536
    teacher_cache: str = ""
    depth_range: str = "street"
    disparity_percentiles: str = "2,98"
    sky_threshold: float = 0.02
    metric_scale: str = "1,1"
    intrinsics_policy: str = "auto"
    fov_range: str = "50,80"

    def __post_init__(self) -> None:
        checks = [
            (self.shard_size >= 1, "`shard_size` must be at least 1"),
            (self.views >= 1, "`views` must be at least 1"),
            (self.limit is None or self.limit >= 1, "`limit` must be at least 1"),
            (self.seed >= 0, "`seed` must not be negative"),
            (self.edges in EDGE_RULES, f"`edges` must be one of {', '.join(EDGE_RULES)}"),
            (self.max_depth_jump > 0, "`max_depth_jump` must be positive"),
            (0 < self.max_grazing_deg <= 90, "`max_grazing_deg` must be in (0, 90]"),
            (self.occlusion_fill_px >= 0, "`occlusion_fill_px` must not be negative"),
            (self.mesh in METHODS, f"unknown `mesh` method {self.mesh!r}; known methods: {', '.join(METHODS)}"),
            (self.mesh_stride >= 1, "`mesh_stride` must be at least 1"),
            (self.mesh_faces > 0, "`mesh_faces` must be positive (a face count, or a fraction below 1)"),
            (1 <= self.poisson_depth <= 16, "`poisson_depth` must be in 1..16"),
            (self.poisson_trim_px > 0, "`poisson_trim_px` must be positive"),
            (
                self.range_noise_m is None or 0 <= self.range_noise_m < math.inf,
                "`range_noise_m` must be a finite number of metres, 0 or more",
            ),
            (self.drop_rate is None or 0 <= self.drop_rate < 1, "`drop_rate` must be in [0, 1)"),
            (
                self.detection_range_m is None or 0 <= self.detection_range_m < math.inf,
                "`detection_range_m` must be a finite number of metres, 0 or more",
            ),
            (
                self.divergence_mrad is None or 0 <= self.divergence_mrad <= 50,
                "`divergence_mrad` must be in [0, 50] mrad",
            ),
            (self.sub_rays is None or 1 <= self.sub_rays <= 32, "`sub_rays` must be in 1..32"),
            (self.returns in (None, *RETURN_MODES), f"`returns` must be one of {', '.join(RETURN_MODES)}"),
            (self.ray_drop in RAY_DROP_MODELS, f"`ray_drop` must be one of {', '.join(RAY_DROP_MODELS)}"),
            (not self.deskew or self.ego_motion.strip().lower() not in ("none", ""), "`deskew` needs `ego_motion`"),
            (self.reflectance in REFLECTANCE_SOURCES, f"`reflectance` must be one of {', '.join(REFLECTANCE_SOURCES)}"),
            (1 <= self.jpeg_quality <= 100, "`jpeg_quality` must be in 1..100"),
            (self.max_pixels >= MIN_IMAGE_SIDE**2, f"`max_pixels` must be at least {MIN_IMAGE_SIDE**2}"),
            (
                self.fov_deg is None or MIN_FOV_DEG <= self.fov_deg <= MAX_FOV_DEG,
                f"`fov_deg` must be between {MIN_FOV_DEG:g} and {MAX_FOV_DEG:g} degrees, got {self.fov_deg}",
            ),
            (self.teacher_batch_size >= 1, "`teacher_batch_size` must be at least 1"),
            (self.teacher_max_size >= 0, "`teacher_max_size` must not be negative (0 = never shrink)"),
            (
                self.mount == "" or self.mount in MOUNTS or Path(self.mount).is_file(),
                f"unknown `mount` {self.mount!r}: give one of {', '.join(MOUNTS)} or a calibration file (KITTI "
                "calib.txt or calib_velo_to_cam.txt, or .json/.toml with T_cam_lidar)",
            ),
            (self.mount_camera in KITTI_CAMERAS, f"`mount_camera` must be one of {KITTI_CAMERAS}"),
        ]
        _check(checks)

    def named_files(self) -> dict[str, str]:
        named = {}
        if self.sensor.endswith(".toml"):
            named["sensor"] = self.sensor
        if self.mount and self.mount not in MOUNTS:
            named["mount"] = self.mount
            if not self.mount.endswith((".json", ".toml")):  # a KITTI raw calibration reads the file beside it
                named["mount's calib_cam_to_cam.txt"] = str(Path(self.mount).with_name("calib_cam_to_cam.txt"))
        return {**named, **kind_files(self)}

    def mount_model(self, sensor: Sensor) -> Mount:
        """The named mount, the mount a calibration file states (into image camera
        mount_camera), or the sensor's own."""
        if self.mount in MOUNTS or not self.mount:
            return MOUNTS[self.mount or sensor.default_mount]
        try:
            return mount_from_calibration(self.mount, self.mount_camera)
        except CalibrationError as error:
            raise PipelineError(f"`mount`: {error}") from None

    def resolve(self) -> RunPlan:
        """Parse every option once into the run's plan; OptionError (one line, naming the
        flag) on a bad value. A sensor or calibration file that cannot be read is a
        SensorSpecError or PipelineError: the CLI prints them as one line too."""
        try:
            jitter = parse_mount_jitter(self.mount_jitter)
            calibration_error = parse_mount_jitter(self.calibration_error, "`calibration_error`")
            ego_motion = parse_ego_motion(self.ego_motion, "`ego_motion`")
            check_teacher_name(self.teacher, self.teacher_output)
            conversion = depth_conversion(
                self.depth_range, self.disparity_percentiles, self.sky_threshold, self.metric_scale
            )
            intrinsics_policy = parse_policy(self.intrinsics_policy, self.fov_deg)
            fov_range_deg = parse_fov_range(self.fov_range)
        except ValueError as error:  # TeacherError and IntrinsicsError are ValueErrors too
            raise OptionError(str(error)) from None
        calibration_error = calibration_error if any(asdict(calibration_error).values()) else None
        sensor = self.sensor_model()
        return RunPlan(
            config=self,
            sensor=sensor,
            mount=self.mount_model(sensor),
            jitter=jitter,
            calibration_error=calibration_error,
            ego_motion=ego_motion,
            teacher=TeacherSpec(
                self.teacher,
                self.teacher_output or None,
                self.teacher_device,
                self.teacher_dtype,
                self.teacher_batch_size,
                self.teacher_max_size,
                self.teacher_revision or None,
            ),
            conversion=conversion,
            intrinsics_policy=intrinsics_policy,
            fov_range_deg=fov_range_deg,
            edges=EdgeOptions(rule=self.edges),
            mesh=MeshOptions(
                self.max_depth_jump,
                self.max_grazing_deg,
                self.occlusion_fill_px,
                self.mesh,
                self.mesh_stride,
                self.mesh_faces,
                self.poisson_depth,
                self.poisson_trim_px,
            ),
            kind=generate_kind(self, calibration_error),
            config_files=named_file_hashes(self.named_files()),  # once each file has been read, bounded
        )

    def sensor_model(self) -> Sensor:
        """The sensor from --sensor with this run's ray-drop model, return-effect and
        integration-time overrides."""
        sensor = load_sensor(self.sensor)
        if self.ray_drop == "fitted" and sensor.ray_drop is None:
            raise OptionError(
                f"`ray_drop` fitted: sensor {sensor.name} has no fitted ray drop; fit one with `simlidar sensors "
                "fit-drop`, or use `ray_drop` weak-return"
            )
        if self.ray_drop == "weak-return":
            sensor = replace(sensor, ray_drop=None)
        try:  # the overrides are options: one that does not fit the sensor is a usage error
            return configure_sensor(
                sensor,
                integration_time_s=self.integration_time_s,
                range_noise_m=self.range_noise_m,
                drop_rate=self.drop_rate,
                detection_range_m=self.detection_range_m,
                divergence_mrad=self.divergence_mrad,
                sub_rays=self.sub_rays,
                returns=self.returns,
            )
        except ValueError as error:
            raise OptionError(str(error)) from None


@dataclass(frozen=True)
class ConvertPlan:
    """A converter's config resolved: the kind of input and its teacher (None: no teacher.png)."""

    config: ConvertKittiConfig | ConvertRigConfig
    kind: InputKind
    teacher: TeacherSpec | None
    config_files: dict = field(default_factory=dict)

    def resolved_mount(self) -> str:
        return "recorded: each frame's own calibration"

    def manifest_sensor(self) -> dict:
        return RECORDED_SENSOR


def _converter_checks(config: ConvertKittiConfig | ConvertRigConfig) -> list[tuple[bool, str]]:
    return [
        (config.shard_size >= 1, "`shard_size` must be at least 1"),
        (config.limit is None or config.limit >= 1, "`limit` must be at least 1"),
        (config.teacher_batch_size >= 1, "`teacher_batch_size` must be at least 1"),
    ]


def _converter_teacher(config: ConvertKittiConfig | ConvertRigConfig) -> TeacherSpec | None:
    """The spec of the teacher of teacher.png, None when the run has none."""
    if not config.teacher:
        if config.teacher_output:
            raise OptionError("`teacher_output` is for an hf:ORG/NAME `teacher`; give one, or drop it")
        return None
    try:
        check_teacher_name(config.teacher, config.teacher_output)
    except ValueError as error:
        raise OptionError(str(error)) from None
    return TeacherSpec(
        config.teacher, config.teacher_output or None, config.teacher_device, "auto", config.teacher_batch_size
    )


def _check(checks: list[tuple[bool, str]]) -> None:
    for ok, message in checks:
        if not ok:
            raise OptionError(message)


@dataclass(frozen=True)
class ConvertKittiConfig(RunConfig):
    """`simlidar convert kitti`: ROOT, its split, the raw images' folder ("" = ROOT/raw) and
    the teacher of teacher.png ("" = none)."""

    command: ClassVar[str] = "simlidar convert kitti"

    root: str
    split: str = "train"
    raw: str = ""
    teacher: str = ""
    teacher_output: str = ""
    shard_size: int = 1000
    limit: int | None = None
    teacher_batch_size: int = 4
    teacher_device: str = "auto"
    teacher_cache: str = ""

    def __post_init__(self) -> None:
        _check([*_converter_checks(self), (self.split in SPLITS, f"`split` must be one of {', '.join(SPLITS)}")])

    def resolve(self) -> ConvertPlan:
        return ConvertPlan(self, kitti_kind(self), _converter_teacher(self))


@dataclass(frozen=True)
class ConvertRigConfig(RunConfig):
    """`simlidar convert rig`: ROOT, its calibration, the LiDAR folder ("" = the one with
    sweeps), the .bin sweeps' columns and the teacher of teacher.png ("" = none)."""

    command: ClassVar[str] = "simlidar convert rig"

    root: str
    rig: str
    teacher: str = ""
    teacher_output: str = ""
    lidar_folder: str = ""
    lidar_columns: str = "auto"
    shard_size: int = 100
    limit: int | None = None
    jpeg_quality: int = 95
    max_pixels: int = DEFAULT_MAX_PIXELS
    teacher_batch_size: int = 4
    teacher_device: str = "auto"
    teacher_cache: str = ""

    def __post_init__(self) -> None:
        columns = (self.lidar_columns in LIDAR_COLUMNS, f"`lidar_columns` must be one of {', '.join(LIDAR_COLUMNS)}")
        _check([*_converter_checks(self), columns])

    def named_files(self) -> dict[str, str]:
        return {"rig calibration": self.rig}

    def resolve(self) -> ConvertPlan:
        kind = rig_lidar_kind(self)  # reads the calibration, bounded, before it is hashed
        return ConvertPlan(self, kind, _converter_teacher(self), named_file_hashes(self.named_files()))


# What the runner, distributor, worker and manifest take: any command's resolved config.
Plan = RunPlan | ConvertPlan

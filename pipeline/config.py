"""The run config of `simlidar generate`: every option that shapes the output.

It is recorded in full in manifest.json; a re-run on the same output resumes only
if these fields are unchanged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from simlidar.sensors import MOUNTS, MountJitter

from .errors import PipelineError
from .mesh import METHODS, MeshOptions

TEACHERS = ("sidecar",)


@dataclass(frozen=True)
class GenerateConfig:
    images: str
    sensor: str = "hdl64"
    mount: str = ""
    teacher: str = "sidecar"
    seed: int = 0
    limit: int | None = None
    shard_size: int = 500
    views: int = 1
    fov_deg: float | None = None
    intrinsics: tuple[float, float, float, float] | None = None
    save_points: bool = False
    max_depth_jump: float = MeshOptions.max_depth_jump
    max_grazing_deg: float = MeshOptions.max_grazing_deg
    occlusion_fill_px: int = MeshOptions.occlusion_fill_px
    mesh: str = MeshOptions.method
    mesh_stride: int = MeshOptions.stride
    mesh_faces: float = MeshOptions.target_faces
    poisson_depth: int = MeshOptions.poisson_depth
    poisson_trim_px: float = MeshOptions.poisson_trim_px
    jitter_translation_m: float = MountJitter.translation_m
    jitter_rotation_deg: float = MountJitter.rotation_deg
    jpeg_quality: int = 95
    teacher_batch_size: int = 4

    def __post_init__(self) -> None:
        checks = [
            (self.shard_size >= 1, "--shard-size must be at least 1"),
            (self.views >= 1, "--views must be at least 1"),
            (self.limit is None or self.limit >= 1, "--limit must be at least 1"),
            (self.seed >= 0, "--seed must not be negative"),
            (self.max_depth_jump > 0, "--max-depth-jump must be positive"),
            (0 < self.max_grazing_deg <= 90, "--max-grazing-deg must be in (0, 90]"),
            (self.occlusion_fill_px >= 0, "--occlusion-fill must not be negative"),
            (self.mesh in METHODS, f"unknown mesh method {self.mesh!r}; known methods: {', '.join(METHODS)}"),
            (self.mesh_stride >= 1, "--mesh-stride must be at least 1"),
            (self.mesh_faces > 0, "--mesh-faces must be positive (a face count, or a fraction below 1)"),
            (1 <= self.poisson_depth <= 16, "--poisson-depth must be in 1..16"),
            (self.poisson_trim_px > 0, "--poisson-trim must be positive"),
            (self.jitter_translation_m >= 0, "--jitter-translation must not be negative"),
            (self.jitter_rotation_deg >= 0, "--jitter-rotation must not be negative"),
            (1 <= self.jpeg_quality <= 100, "--jpeg-quality must be in 1..100"),
            (self.teacher_batch_size >= 1, "--batch-size must be at least 1"),
            (self.teacher in TEACHERS, f"unknown teacher {self.teacher!r}; known teachers: {', '.join(TEACHERS)}"),
            (
                self.mount == "" or self.mount in MOUNTS,
                f"unknown mount {self.mount!r}; known mounts: {', '.join(MOUNTS)}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise PipelineError(message)

    @property
    def mesh_options(self) -> MeshOptions:
        return MeshOptions(
            self.max_depth_jump,
            self.max_grazing_deg,
            self.occlusion_fill_px,
            self.mesh,
            self.mesh_stride,
            self.mesh_faces,
            self.poisson_depth,
            self.poisson_trim_px,
        )

    @property
    def jitter(self) -> MountJitter:
        return MountJitter(self.jitter_translation_m, self.jitter_rotation_deg)

    def to_dict(self) -> dict:
        record = asdict(self)
        record["intrinsics"] = list(self.intrinsics) if self.intrinsics else None
        return record

    @classmethod
    def from_dict(cls, record: dict) -> GenerateConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(record) - known)
        if unknown:
            raise PipelineError(f"unknown config fields: {', '.join(unknown)}")
        values = dict(record)
        if values.get("intrinsics") is not None:
            values["intrinsics"] = tuple(values["intrinsics"])
        return cls(**values)

    def differences(self, other: GenerateConfig) -> list[str]:
        """'field: old -> new' for every field that differs from `other`."""
        mine, theirs = self.to_dict(), other.to_dict()
        return [f"{name}: {theirs[name]!r} -> {mine[name]!r}" for name in mine if mine[name] != theirs[name]]

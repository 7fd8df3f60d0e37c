"""load_teacher: every `--teacher` value to a Teacher."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .base import DepthPrediction, Teacher, TeacherError, TeacherInput, TeacherUnavailable, cache_id
from .model_io import ModelRunner
from .registry import DEFAULT_MODEL, HF_PREFIX, MODELS, check_teacher_name, is_hf_name
from .sidecar import SidecarTeacher, find_depth_sidecar


def load_teacher(
    name: str,
    *,
    output: str | None = None,
    device: str | None = None,
    dtype: str | None = None,
    batch_size: int = 4,
    max_size: int = 1536,
    revision: str | None = None,
    runner: ModelRunner | None = None,
) -> Teacher:
    """The teacher called `name`: a short name of `simlidar teachers list`,
    hf:ORG/NAME (or hf:/path/to/model) with output metric|disparity|depth, 'sidecar'
    (depth files beside the photos) or 'auto' (a sidecar where a photo has one, else
    the default model, loaded only when a photo needs it). device: auto, cpu, cuda[:N],
    mps; dtype: auto (fp16 on CUDA), fp32, fp16, bf16; max_size: long side above which
    a photo is shrunk before the model (0 = never); revision: a branch, tag or commit
    of the weights (default: the registry's, else main); runner: where a model's forward
    runs (None: here, on device in dtype; see HFTeacher). Raises TeacherError
    (unknown name) or TeacherUnavailable (weights not reachable, not a depth model). device and dtype None mean auto."""
    from .hf import HFTeacher, select_amp_dtype, select_device

    check_teacher_name(name, output or "")
    options = {"device": device or "auto", "dtype": dtype or "auto", "batch_size": batch_size, "max_size": max_size}
    if name == "sidecar":
        return SidecarTeacher()
    if name == "auto":
        if runner is None:  # the model loads only when a photo needs it, but a bad device or dtype is refused now
            select_amp_dtype(options["dtype"], select_device(options["device"]))
        return AutoTeacher(lambda: load_teacher(DEFAULT_MODEL, revision=revision, runner=runner, **options))
    if is_hf_name(name):
        return HFTeacher(name, name[len(HF_PREFIX) :], output, revision or "main", runner=runner, **options)
    entry = MODELS[name]
    return HFTeacher(name, entry.repo_id, entry.output, revision or entry.revision, runner=runner, **options)


class AutoTeacher:
    """Sidecar depth where a photo has it, the default model for the others. When the
    model cannot be loaded (no cached weights offline), each photo without a sidecar
    gets a TeacherError that says so and how to fetch the model, and the others are made."""

    name = "auto"

    def __init__(self, load_model: Callable[[], Teacher]):
        self.sidecar = SidecarTeacher()
        self._load_model = load_model
        self._model: Teacher | None = None
        self._unavailable: TeacherUnavailable | None = None

    @property
    def model(self) -> Teacher:
        """The model, loaded once; raises TeacherUnavailable (every time) when it cannot be."""
        if self._unavailable is not None:
            raise self._unavailable
        if self._model is None:
            try:
                self._model = self._load_model()
            except TeacherUnavailable as error:
                self._unavailable = error
                raise
        return self._model

    def cache_id(self, item: TeacherInput) -> str | None:
        if find_depth_sidecar(item.path):
            return None
        try:
            return cache_id(self.model, item)
        except TeacherUnavailable:
            return None

    def predict(self, batch: Sequence[TeacherInput]) -> list[DepthPrediction | TeacherError]:
        with_sidecar = [find_depth_sidecar(item.path) is not None for item in batch]
        from_sidecar = iter(self.sidecar.predict([item for item, has in zip(batch, with_sidecar, strict=True) if has]))
        others = [item for item, has in zip(batch, with_sidecar, strict=True) if not has]
        from_model = iter(self._predict_with_model(others))
        return [next(from_sidecar) if has else next(from_model) for has in with_sidecar]

    def _predict_with_model(self, batch: list[TeacherInput]) -> list[DepthPrediction | TeacherError]:
        if not batch:
            return []
        try:
            model = self.model
        except TeacherUnavailable as error:
            reason = TeacherError(f"no depth sidecar (photo.depth.png or photo.depth.npy) and {error}")
            return [reason] * len(batch)
        return model.predict(batch)


def model_of(teacher: Teacher):
    """The HFModel that runs `teacher`'s forward in this process (an auto teacher's default
    model loaded for it), or None for a teacher without a model (sidecars). Raises
    TeacherUnavailable when the model cannot be found."""
    from .hf import HFModel, HFTeacher

    if isinstance(teacher, AutoTeacher):
        teacher = teacher.model
    if isinstance(teacher, HFTeacher) and isinstance(teacher.runner, HFModel):
        return teacher.runner
    return None

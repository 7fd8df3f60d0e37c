"""Short names for depth models that transformers loads with its depth-estimation
classes, and the parsing of every accepted `teacher` value.

Sizes are parameter counts of the released checkpoints; licences are those of the
weights as stated on their model cards (code licences may differ).
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import DepthKind, TeacherError

DEPTH_KINDS: tuple[DepthKind, ...] = ("metric", "disparity", "depth")
DEFAULT_MODEL = "depth-anything-v2-small"
HF_PREFIX = "hf:"


@dataclass(frozen=True)
class ModelEntry:
    """name: the short name; repo_id: the Hugging Face model repo; output: what the
    model predicts; params_m: millions of parameters; licence: of the weights;
    revision: the branch, tag or commit pulled."""

    name: str
    repo_id: str
    output: DepthKind
    params_m: float
    licence: str
    revision: str = "main"
    note: str = ""


def _depth_anything(size: str, params_m: float, licence: str) -> list[ModelEntry]:
    title = size.capitalize()
    relative = ModelEntry(
        f"depth-anything-v2-{size}", f"depth-anything/Depth-Anything-V2-{title}-hf", "disparity", params_m, licence
    )
    metric = [
        ModelEntry(
            f"depth-anything-v2-metric-{scene}-{size}",
            f"depth-anything/Depth-Anything-V2-Metric-{scene.capitalize()}-{title}-hf",
            "metric",
            params_m,
            licence,
            note=f"fine-tuned on {dataset}, depth up to {max_depth} m",
        )
        for scene, dataset, max_depth in (("indoor", "Hypersim", 20), ("outdoor", "Virtual KITTI 2", 80))
    ]
    return [relative, *metric]


MODELS: dict[str, ModelEntry] = {
    entry.name: entry
    for entry in [
        *_depth_anything("small", 24.8, "Apache-2.0"),
        *_depth_anything("base", 97.5, "CC-BY-NC-4.0"),
        *_depth_anything("large", 335.3, "CC-BY-NC-4.0"),
        ModelEntry(
            "depth-pro", "apple/DepthPro-hf", "metric", 951.9, "apple-amlr", note="estimates the focal length too"
        ),
        ModelEntry("dpt-large", "Intel/dpt-large", "disparity", 342.3, "Apache-2.0", note="MiDaS 3.0"),
        ModelEntry("dpt-hybrid-midas", "Intel/dpt-hybrid-midas", "disparity", 123.1, "Apache-2.0", note="MiDaS 3.0"),
        ModelEntry("zoedepth-nyu", "Intel/zoedepth-nyu", "metric", 345.4, "MIT", note="indoor"),
        ModelEntry("zoedepth-kitti", "Intel/zoedepth-kitti", "metric", 345.4, "MIT", note="street"),
        ModelEntry("zoedepth-nyu-kitti", "Intel/zoedepth-nyu-kitti", "metric", 345.9, "MIT", note="indoor and street"),
    ]
}

SPECIAL_TEACHERS = ("auto", "sidecar")


def known_teachers() -> tuple[str, ...]:
    """Every short name `teacher` accepts (besides hf:ORG/NAME)."""
    return (*SPECIAL_TEACHERS, *MODELS)


def is_hf_name(name: str) -> bool:
    return name.startswith(HF_PREFIX)


def check_teacher_name(name: str, output: str = "") -> None:
    """Raise TeacherError unless `name` (and `output`, the `teacher_output` of an
    hf: model) is something load_teacher can make."""
    if is_hf_name(name):
        model_id = name[len(HF_PREFIX) :]
        if "/" not in model_id:
            raise TeacherError(f"`teacher` {name!r}: write hf:ORG/NAME (a Hugging Face model id) or hf:/path/to/model")
        if output not in DEPTH_KINDS:
            raise TeacherError(
                f"`teacher` {name} needs `teacher_output` {'|'.join(DEPTH_KINDS)}: whether the model predicts "
                "metric depth, relative disparity (larger = nearer) or relative depth"
            )
        return
    if name not in known_teachers():
        raise TeacherError(
            f"unknown teacher {name!r}; known teachers: {', '.join(known_teachers())}, or hf:ORG/NAME "
            "(see `simlidar teachers list`)"
        )
    if output:
        raise TeacherError(f"`teacher_output` is for hf:ORG/NAME models; {name} predicts {output_of(name)}")


def output_of(name: str) -> str:
    entry = MODELS.get(name)
    return entry.output if entry else "metric"

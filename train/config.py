"""A training run's options and their checks, importable without torch (the CLI reads the
defaults; the checks run before any work starts, each failure one line naming the flag)."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from .errors import TrainError, TrainOptionError

STAGES = ("pretrain", "finetune")
LOSS_NAMES = ("l1", "l2")
# completion: the depth-completion network (stage 1 / 2); bins-kd: a light student with a
# depth-bin head, cross-interaction KD from the teacher (and view-relational KD).
OBJECTIVES = ("completion", "bins-kd")
STUDENTS = ("completion", "mono")
# The learning rate's decay after the warm-up (schedule.get_lr).
DECAYS = ("cosine", "linear")
DEFAULT_WIDTH = 32


@dataclass
class TrainConfig:
    shards: str
    stage: str = "pretrain"
    out: str = "runs/pretrain"
    init: str | None = None
    steps: int = 20000
    batch_size: int = 8
    crop: tuple[int, int] = (256, 512)
    width: int | None = None
    lr: float = 1e-3
    min_lr: float = 0.0
    decay: str = "cosine"
    weight_decay: float = 0.01
    warmup: float = 0.05
    clip: float = 1.0
    ema: float = 0.999
    loss: str = "l1"
    ssi_weight: float = 1.0
    gradient_weight: float = 0.5
    trim: float = 0.2
    objective: str = "completion"
    student: str = "completion"
    bins: int = 64
    bin_range: tuple[float, float] = (0.5, 100.0)
    # Relative depth (log) units; chosen by `simlidar bench kd-target` (README).
    temperature: float = 0.03
    chamfer_weight: float = 0.1
    kd_weight: float = 1.0
    view_relational: bool = False
    relational_weight: float = 1.0
    seed: int = 0
    workers: int = 4
    shuffle_buffer: int = 256
    log_every: int = 20
    save_every: int = 1000
    val_shards: str | None = None
    val_every: int = 1000
    # The share of samples that may fail to decode (each skipped and recorded) before the run stops.
    max_bad_samples: float = 0.01
    device: str = "auto"


# Options that do not change what a run computes: a run may resume with others.
# Not --workers: each loader worker reads its own shards, so the count sets which
# samples make up each batch.
# --steps may change too (raised to train longer): the schedule is recomputed and recorded.
FREE_TO_CHANGE = {"log_every", "save_every", "val_shards", "val_every", "device", "steps", "max_bad_samples"}


def check_options(config: TrainConfig, stop_at: int | None = None) -> None:
    """Every option in its range, as one line naming the flag (a usage error: exit 2)."""
    for option in fields(config):
        values = getattr(config, option.name)
        for value in values if isinstance(values, tuple) else (values,):
            if isinstance(value, float) and not math.isfinite(value):
                raise TrainOptionError(f"--{option.name.replace('_', '-')} must be a finite number (got {value})")
    choices = {"stage": STAGES, "loss": LOSS_NAMES, "objective": OBJECTIVES, "student": STUDENTS, "decay": DECAYS}
    for name, allowed in choices.items():
        if getattr(config, name) not in allowed:
            raise TrainOptionError(f"--{name} {getattr(config, name)!r} is unknown: use one of {', '.join(allowed)}")
    at_least = {
        "steps": 1,
        "batch_size": 1,
        "log_every": 1,
        "save_every": 1,
        "val_every": 1,
        "shuffle_buffer": 1,
        "workers": 0,
        "seed": 0,
        "width": 1,
        "weight_decay": 0,
        "clip": 0,
        "min_lr": 0,
        "ssi_weight": 0,
        "gradient_weight": 0,
        "chamfer_weight": 0,
        "kd_weight": 0,
        "relational_weight": 0,
    }
    for name, low in at_least.items():
        value = getattr(config, name)
        if value is not None and value < low:
            raise TrainOptionError(f"--{name.replace('_', '-')} must be at least {low} (got {value})")
    if min(config.crop) < 1:
        raise TrainOptionError(f"--crop H W must be positive (got {config.crop[0]} {config.crop[1]})")
    if stop_at is not None and stop_at < 1:
        raise TrainOptionError(f"--stop-at must be at least 1 (got {stop_at})")
    if not config.lr > 0 or config.min_lr > config.lr:
        raise TrainOptionError(
            f"--lr must be positive and at least --min-lr (got --lr {config.lr}, --min-lr {config.min_lr})"
        )
    for name in ("warmup", "max_bad_samples"):
        value = getattr(config, name)
        if not 0 <= value <= 1:
            raise TrainOptionError(f"--{name.replace('_', '-')} must lie in [0, 1] (got {value})")
    for name in ("trim", "ema"):
        value = getattr(config, name)
        if not 0 <= value < 1:
            raise TrainOptionError(f"--{name} must lie in [0, 1) (got {value})")
    if config.stage == "finetune" and config.init is None:
        raise TrainOptionError("--stage finetune needs --init CKPT (a pretrained one, e.g. runs/pretrain/last.pt)")
    if config.view_relational and config.objective != "bins-kd":
        raise TrainOptionError("--view-relational distils into a bin student: add --objective bins-kd")
    if config.objective == "bins-kd":
        check_bins(config.bins)
        if not 0 < config.bin_range[0] < config.bin_range[1]:
            raise TrainOptionError(f"--bin-range must be 0 < MIN < MAX metres (got {config.bin_range})")
        if config.temperature <= 0:
            raise TrainOptionError(f"--temperature must be positive (got {config.temperature})")


def check_data(config: TrainConfig, index) -> None:
    """What the shards must hold for the run's options; index: the shards' ShardIndex
    (its bad samples already recorded)."""
    shards = config.shards
    if index.unit_count == 0:
        what = "complete scene (every scene misses a view)" if index.scenes else "sample that can be read"
        raise TrainError(f"{shards} holds no {what}: see errors.jsonl in --out; regenerate the shards")
    allowed = bad_samples_allowed(config, index.samples)
    if len(index.bad) > allowed:
        raise TrainError(
            f"{len(index.bad)} of {index.samples} samples in {shards} are unusable, more than --max-bad-samples "
            f"{config.max_bad_samples} allows ({allowed}): see errors.jsonl in --out; regenerate those shards"
        )
    if config.view_relational and len(index.views) > 1 and config.batch_size > 1:
        raise TrainError(
            f"the scenes have {' and '.join(map(str, index.views))} views: batches of several scenes need one "
            "view count; pass --batch-size 1 or shards of one rig"
        )
    if config.stage == "finetune" and config.ssi_weight > 0 and index.teacher_samples == 0:
        raise TrainError(
            f"{shards} has no teacher.png, so the SSI term would be 0: convert with "
            "`simlidar convert kitti ... --teacher NAME`, or pass --ssi-weight 0 to fine-tune on the ground truth alone"
        )
    distils = config.kd_weight > 0 or (config.view_relational and config.relational_weight > 0)
    if config.objective == "bins-kd" and distils and index.teacher_sources == 0:
        raise TrainError(
            f"{shards} has no teacher (no teacher.png, no teacher record in the json), so --objective bins-kd's "
            "KD and relational terms would be 0: convert with `--teacher NAME`, or pass --kd-weight 0 without "
            "--view-relational to train the student on the ground truth alone"
        )


def bad_samples_allowed(config: TrainConfig, samples: int) -> int:
    """How many of `samples` may be bad before the run stops (--max-bad-samples)."""
    return math.floor(config.max_bad_samples * samples)


def check_init(config: TrainConfig, model_config: dict) -> None:
    """--init's model (its checkpoint's model_config) must be the one the options train:
    the same family, and for a student the same kind, bins and range (they shape its head)."""
    student = model_config.get("student")
    if config.objective == "completion" and student is not None:
        raise TrainError(
            f"--init {config.init} holds a {student} bin student, not the completion network: pass "
            f"--objective bins-kd --student {student} to train it on, or a completion network's checkpoint"
        )
    if config.objective == "bins-kd" and student is None:
        raise TrainError(
            f"--init {config.init} holds the completion network, not a bin student: leave out --objective bins-kd "
            "to train it on, or pass a student's checkpoint"
        )
    if student is not None:
        own = (student, model_config["bins"], (model_config["min_depth"], model_config["max_depth"]))
        if own != (config.student, config.bins, tuple(config.bin_range)):
            raise TrainError(
                f"--init {config.init} holds a {student} student with {own[1]} bins over {own[2][0]:g}-{own[2][1]:g} "
                f"m: pass --student {student} --bins {own[1]} --bin-range {own[2][0]:g} {own[2][1]:g} to train it on"
            )


def check_batch_norm(config: TrainConfig, stride: int, views: int) -> None:
    """Batch norm needs two values per channel at the model's deepest level, which is the
    crop / stride (rounded up) per sample, and a batch holds batch_size * views samples."""
    height, width = config.crop
    deepest = (-(-height // stride), -(-width // stride))
    if config.batch_size * views * deepest[0] * deepest[1] < 2:
        raise TrainError(
            f"--crop {height} {width} with --batch-size {config.batch_size} leaves the model's deepest features "
            f"{deepest[0]} x {deepest[1]}, one value per channel, too few for batch norm: pass a --crop above "
            f"{stride} on one side, or --batch-size 2"
        )


def check_view_overlap(config: TrainConfig, offsets) -> None:
    """offsets: (M, 2) |column|, |row| distances between the pixels at which adjacent views
    of the first scenes see one LiDAR point (correspondence.match_offsets). The relational
    term needs a pair inside one crop (every view is cropped by the same window)."""
    if not (config.view_relational and config.relational_weight > 0):
        return
    if len(offsets) == 0:
        raise TrainError(
            "--view-relational: adjacent views of the first scenes see no LiDAR point in common (or their json "
            "has no K and T_cam_lidar), so the relational term would be 0; pass --relational-weight 0 or other shards"
        )
    height, width = config.crop
    columns, rows = offsets[:, 0], offsets[:, 1]
    if not ((columns < width) & (rows < height)).any():
        need = min(zip(rows + 1, columns + 1, strict=True), key=lambda size: max(size[0], height) * max(size[1], width))
        raise TrainError(
            f"--view-relational with --crop {height} {width}: no crop holds a LiDAR point that two adjacent views "
            f"share (every view is cropped by one window), so the relational term would be 0 on every step; "
            f"pass --crop {max(int(need[0]), height)} {max(int(need[1]), width)} or larger"
        )


def check_val(config: TrainConfig, bad: int, samples: int, with_ground_truth: int) -> None:
    """What the validation shards must hold: samples with ground truth, few bad ones."""
    if with_ground_truth == 0:
        raise TrainError(
            f"no sample in --val-shards {config.val_shards} has ground truth (dense.png is empty everywhere, or no "
            "sample decodes: see errors.jsonl in --out); pass shards with ground truth (`convert kitti --split val`)"
        )
    allowed = bad_samples_allowed(config, samples + bad)
    if bad > allowed:
        raise TrainError(
            f"{bad} of {samples + bad} samples in --val-shards {config.val_shards} cannot be decoded, more than "
            f"--max-bad-samples {config.max_bad_samples} allows ({allowed}): see errors.jsonl in --out"
        )


def check_stop_at(stop_at: int | None, step: int, steps: int) -> None:
    if stop_at is not None and stop_at <= step < steps:
        raise TrainError(
            f"--stop-at {stop_at} is at or below the run's step {step}: pass a --stop-at above {step}, "
            "or none to train on to --steps"
        )


def check_bins(bins: int) -> None:
    if bins < 2:
        raise TrainOptionError(f"--bins must be at least 2 (got {bins}): a single bin cannot order depths")

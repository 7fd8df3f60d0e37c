"""A training run's options and their checks, importable without torch (the CLI reads the
defaults; the checks run before any work starts, each failure one line naming the flag)."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import TrainError

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
    # Relative depth (log) units; chosen by `simlidar bench-kd-target` (README).
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
    device: str = "auto"


# Options that do not change what a run computes: a run may resume with others.
# Not --workers: each loader worker reads its own shards, so the count sets which
# samples make up each batch.
# --steps may change too (raised to train longer): the schedule is recomputed and recorded.
FREE_TO_CHANGE = {"log_every", "save_every", "val_shards", "val_every", "device", "steps"}


def check_options(config: TrainConfig, stop_at: int | None = None) -> None:
    """Every option in its range, as one line naming the flag."""
    choices = {"stage": STAGES, "loss": LOSS_NAMES, "objective": OBJECTIVES, "student": STUDENTS, "decay": DECAYS}
    for name, allowed in choices.items():
        if getattr(config, name) not in allowed:
            raise TrainError(f"--{name} {getattr(config, name)!r} is unknown: use one of {', '.join(allowed)}")
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
            raise TrainError(f"--{name.replace('_', '-')} must be at least {low} (got {value})")
    if min(config.crop) < 1:
        raise TrainError(f"--crop H W must be positive (got {config.crop[0]} {config.crop[1]})")
    if stop_at is not None and stop_at < 1:
        raise TrainError(f"--stop-at must be at least 1 (got {stop_at})")
    if not config.lr > 0 or config.min_lr > config.lr:
        raise TrainError(
            f"--lr must be positive and at least --min-lr (got --lr {config.lr}, --min-lr {config.min_lr})"
        )
    if not 0 <= config.warmup <= 1:
        raise TrainError(f"--warmup must lie in [0, 1] (got {config.warmup})")
    for name in ("trim", "ema"):
        value = getattr(config, name)
        if not 0 <= value < 1:
            raise TrainError(f"--{name} must lie in [0, 1) (got {value})")
    if config.stage == "finetune" and config.init is None:
        raise TrainError("--stage finetune needs --init CKPT (a pretrained checkpoint, e.g. runs/pretrain/last.pt)")
    if config.view_relational and config.objective != "bins-kd":
        raise TrainError("--view-relational distils into a bin student: add --objective bins-kd")
    if config.objective == "bins-kd":
        check_bins(config.bins)
        if not 0 < config.bin_range[0] < config.bin_range[1]:
            raise TrainError(f"--bin-range must be 0 < MIN < MAX metres (got {config.bin_range})")
        if config.temperature <= 0:
            raise TrainError(f"--temperature must be positive (got {config.temperature})")


def check_data(config: TrainConfig, index) -> None:
    """What the shards must hold for the run's options; index: the shards' data.ShardIndex."""
    if config.view_relational and len(index.views) > 1 and config.batch_size > 1:
        raise TrainError(
            f"the scenes have {' and '.join(map(str, index.views))} views: batches of several scenes need one "
            "view count; pass --batch-size 1 or shards of one rig"
        )
    if config.stage == "finetune" and config.ssi_weight > 0 and index.teacher_samples == 0:
        raise TrainError(
            f"{config.shards} has no teacher.png, so the SSI term would be 0: convert with "
            "`simlidar convert kitti ... --teacher NAME`, or pass --ssi-weight 0 to fine-tune on the ground truth alone"
        )


def check_bins(bins: int) -> None:
    if bins < 2:
        raise TrainError(f"--bins must be at least 2 (got {bins}): a single bin cannot order depths")

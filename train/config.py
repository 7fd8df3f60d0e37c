"""A training run's options, importable without torch (the CLI reads the defaults)."""

from __future__ import annotations

from dataclasses import dataclass

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
    device: str = "auto"


# Options that do not change what a run computes: a run may resume with others.
# Not --workers: each loader worker reads its own shards, so the count sets which
# samples make up each batch.
# --steps may change too (raised to train longer): the schedule is recomputed and recorded.
FREE_TO_CHANGE = {"log_every", "save_every", "val_shards", "val_every", "device", "steps"}

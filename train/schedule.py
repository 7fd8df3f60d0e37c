"""The learning-rate schedule and the EMA decay, as plain functions of the step.

get_lr(step): a linear warm-up over a whole number of steps, round(warmup * steps), from
lr / (warmup_steps + 1) up to just below lr, then a cosine (or linear) decay from lr at
the first step after the warm-up towards min_lr at `steps`. `step` is the 0-based index
of the optimizer step about to be taken; every step in [0, steps) has a rate, for any
steps >= 1 and warm-up share in [0, 1] (warm-up 1.0: the whole run warms up). The rate
depends only on (step, steps): raising --steps on resume recomputes it for the new length.
"""

from __future__ import annotations

import math


def warmup_steps(steps: int, warmup: float) -> int:
    """The warm-up's whole number of steps."""
    return min(steps, int(warmup * steps + 0.5))


def get_lr(step: int, steps: int, lr: float, warmup: float, min_lr: float = 0.0, decay: str = "cosine") -> float:
    """The learning rate of optimizer step `step` (0-based) of a `steps`-step run."""
    warm = warmup_steps(steps, warmup)
    if step < warm:
        return lr * (step + 1) / (warm + 1)
    progress = (step - warm) / max(1, steps - warm)
    coefficient = 0.5 * (1.0 + math.cos(math.pi * progress)) if decay == "cosine" else 1.0 - progress
    return min_lr + coefficient * (lr - min_lr)


def ema_decay(step: int, decay: float) -> float:
    """The EMA decay used at update `step` (0-based): warmed up as (1 + step) / (10 + step),
    so early averages are not dominated by the initial weights, capped at `decay`."""
    return min(decay, (1 + step) / (10 + step))

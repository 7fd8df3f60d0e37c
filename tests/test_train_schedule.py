"""The learning-rate schedule, the EMA warm-up, and the rate each step logs."""

import csv
import math

import pytest
import torch
from simlidar.train.checkpoint import EMA
from simlidar.train.loop import train
from simlidar.train.schedule import ema_decay, get_lr, warmup_steps

from .test_train_checkpoint import tiny_config
from .train_shards import write_ramp_shards


def rates(steps, warmup, decay="cosine", min_lr=0.0):
    return [get_lr(step, steps, 1.0, warmup, min_lr, decay) for step in range(steps)]


def test_one_step_and_a_whole_number_of_warmup_steps():
    assert rates(1, 0.05) == [1.0]  # OneCycleLR divided by zero here
    assert rates(1, 1.0) == [0.5]
    assert [warmup_steps(steps, 0.05) for steps in (9, 10, 19, 20, 29, 30, 40)] == [0, 1, 1, 1, 1, 2, 2]
    assert warmup_steps(10, 0.1) == warmup_steps(100, 0.01) == 1


def test_twenty_steps_at_the_default_warmup():
    lr = rates(20, 0.05)
    # one warm-up step at half the peak, the peak, then a cosine over the remaining 19 steps
    assert lr[0] == 0.5 and lr[1] == 1.0
    assert lr[10] == pytest.approx(0.5 * (1 + math.cos(math.pi * 9 / 19)))
    assert lr[19] == pytest.approx(0.5 * (1 + math.cos(math.pi * 18 / 19))) and 0 < lr[19] < 0.01
    assert all(a >= b for a, b in zip(lr[1:], lr[2:], strict=False))
    linear = rates(20, 0.05, "linear", min_lr=0.1)
    assert linear[1] == 1.0 and linear[10] == pytest.approx(0.1 + 0.9 * (1 - 9 / 19))


def test_warmup_over_the_whole_run_never_overshoots():
    lr = rates(4, 1.0)
    assert lr == pytest.approx([0.2, 0.4, 0.6, 0.8])


def test_ema_decay_warms_up():
    assert ema_decay(0, 0.999) == pytest.approx(0.1)
    assert ema_decay(90, 0.999) == pytest.approx(0.91)
    assert ema_decay(100000, 0.999) == 0.999
    model = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.constant_(model.weight, 0.0)
    ema = EMA(model, 0.999)
    torch.nn.init.constant_(model.weight, 1.0)
    ema.update(model, 0)
    # decay 0.1 at the first update: 0.1 * 0 + 0.9 * 1 (a fixed 0.999 would give 0.001)
    assert ema.model.weight.item() == pytest.approx(0.9)
    for step in range(1, 1000):
        ema.update(model, step)
    # after 1000 updates the initial weights' share is the product of the decays: ~1e-3, not 37 %
    assert 1.0 - ema.model.weight.item() < 0.01


@pytest.mark.parametrize(("steps", "warmup"), [(1, 0.05), (3, 1.0)])
def test_each_logged_row_shows_the_rate_its_step_used(tmp_path, steps, warmup):
    shards = write_ramp_shards(tmp_path / "shards", shards=1)
    result = train(tiny_config(shards, tmp_path / "run", steps=steps, warmup=warmup), progress=False)
    assert result["step"] == steps and (tmp_path / "run" / "last.pt").is_file()
    with open(tmp_path / "run" / "log.csv") as log:
        logged = [float(row["lr"]) for row in csv.DictReader(log)]
    assert logged == pytest.approx([get_lr(step, steps, 1e-3, warmup) for step in range(steps)], rel=1e-5)

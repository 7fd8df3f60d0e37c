"""Checkpoints: exact resume, weights_only loading, a model of another width."""

import csv

import pytest
import torch
from simlidar.train.checkpoint import FORMAT
from simlidar.train.config import TrainConfig
from simlidar.train.errors import TrainError
from simlidar.train.loop import train

from .train_shards import write_ramp_shards


def tiny_config(shards, out, **overrides):
    options = dict(
        shards=str(shards),
        out=str(out),
        steps=4,
        batch_size=2,
        crop=(16, 16),
        width=4,
        workers=0,
        log_every=1,
        save_every=100,
        shuffle_buffer=4,
        ema=0.9,
    )
    return TrainConfig(**{**options, **overrides})


def assert_same_run(one, other):
    assert one["step"] == other["step"]
    for part in ("model", "ema"):
        for name, tensor in one[part].items():
            assert torch.equal(tensor, other[part][name]), (part, name)
    for state, other_state in zip(
        one["optimizer"]["state"].values(), other["optimizer"]["state"].values(), strict=True
    ):
        assert torch.equal(state["exp_avg"], other_state["exp_avg"])


@pytest.mark.parametrize(("workers", "stop_at"), [(0, 2), (2, 3)])
def test_two_halves_with_a_resume_equal_one_run(tmp_path, workers, stop_at):
    # workers 2, stop at 3: the resumed loader used to swap batches 4 and 5 (weights 0.065 off).
    shards = write_ramp_shards(tmp_path / "shards", shards=3)
    config = dict(workers=workers, steps=5, shuffle_buffer=3)
    train(tiny_config(shards, tmp_path / "straight", **config), progress=False)
    train(tiny_config(shards, tmp_path / "halves", **config), stop_at=stop_at, progress=False)
    assert torch.load(tmp_path / "halves" / "last.pt", weights_only=True)["step"] == stop_at
    train(tiny_config(shards, tmp_path / "halves", **config), progress=False)
    straight = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)
    halves = torch.load(tmp_path / "halves" / "last.pt", weights_only=True)
    assert straight["format"] == FORMAT and straight["step"] == 5
    assert_same_run(straight, halves)
    rows = (tmp_path / "halves" / "log.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows] == ["step", "1", "2", "3", "4", "5"]
    assert (tmp_path / "halves" / "log.csv").read_text().count("\n") == 6


def test_raising_steps_on_resume_recomputes_and_records_the_schedule(tmp_path, capsys):
    shards = write_ramp_shards(tmp_path / "shards")
    train(tiny_config(shards, tmp_path / "run", steps=4, warmup=0.0), progress=False)
    result = train(tiny_config(shards, tmp_path / "run", steps=4, warmup=0.0), progress=False)
    assert result == {"step": 4, "loss": None, "done_before": True, "main": True}
    assert "already at step 4: nothing to do" in capsys.readouterr().err
    train(tiny_config(shards, tmp_path / "run", steps=8, warmup=0.0), progress=False)
    assert "--steps 4 -> 8 at step 4" in capsys.readouterr().err
    checkpoint = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert checkpoint["step"] == 8
    assert checkpoint["schedule"] == [{"from_step": 0, "steps": 4}, {"from_step": 4, "steps": 8}]
    rows = list(csv.DictReader(open(tmp_path / "run" / "log.csv")))
    # step 5 (index 4) of an 8-step cosine from 1e-3: 1e-3 * (1 + cos(pi * 4 / 8)) / 2 = 5e-4
    assert [row["step"] for row in rows] == [str(step) for step in range(1, 9)]
    assert float(rows[4]["lr"]) == pytest.approx(5e-4)
    with pytest.raises(TrainError, match="at step 8: --steps 6 is behind it"):
        train(tiny_config(shards, tmp_path / "run", steps=6, warmup=0.0), progress=False)


def test_checkpoint_of_another_width_and_other_options_are_one_line_errors(cli, tmp_path):
    shards = write_ramp_shards(tmp_path / "shards")
    train(tiny_config(shards, tmp_path / "run", steps=1), progress=False)
    checkpoint = tmp_path / "run" / "last.pt"
    common = [
        "--shards",
        shards,
        "--steps",
        "1",
        "--batch-size",
        "2",
        "--crop",
        "16",
        "16",
        "--workers",
        "0",
        "--quiet",
    ]
    code, _, err = cli(
        "train", "--stage", "finetune", "--init", checkpoint, "--width", "8", "--out", tmp_path / "ft", *common
    )
    assert code == 1 and err.count("\n") == 1
    assert "holds a model of width 4, not 8: pass --width 4" in err
    code, _, err = cli("train", "--out", tmp_path / "run", "--lr", "0.5", *common)
    assert code == 1 and "holds a different run (" in err and "; --lr 0.001 -> 0.5;" in err and err.count("\n") == 1
    code, _, err = cli("eval", "--checkpoint", tmp_path / "missing.pt", "--shards", shards)
    assert code == 1 and "no checkpoint at" in err
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    code, _, err = cli("eval", "--checkpoint", tmp_path / "junk.pt", "--shards", shards)
    assert code == 1 and "is not a loadable simlidar checkpoint" in err and err.count("\n") == 1
    code, _, err = cli("train", "--shards", tmp_path / "nothing-here", "--quiet")
    assert code == 1 and "neither a shard folder" in err


def test_finetune_needs_init(tmp_path):
    with pytest.raises(TrainError, match="needs --init"):
        train(tiny_config(tmp_path, tmp_path / "x", stage="finetune"), progress=False)

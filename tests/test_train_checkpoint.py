"""Checkpoints: exact resume, weights_only loading, a model of another width."""

import pytest
import torch
from simlidar.train.checkpoint import FORMAT
from simlidar.train.config import TrainConfig
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


def test_two_halves_with_a_resume_equal_one_run(tmp_path):
    shards = write_ramp_shards(tmp_path / "shards")
    train(tiny_config(shards, tmp_path / "straight"), progress=False)
    train(tiny_config(shards, tmp_path / "halves"), stop_at=2, progress=False)
    assert torch.load(tmp_path / "halves" / "last.pt", weights_only=True)["step"] == 2
    train(tiny_config(shards, tmp_path / "halves"), progress=False)
    straight = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)
    halves = torch.load(tmp_path / "halves" / "last.pt", weights_only=True)
    assert straight["format"] == FORMAT and halves["step"] == straight["step"] == 4
    for part in ("model", "ema"):
        for name, tensor in straight[part].items():
            assert torch.allclose(tensor.float(), halves[part][name].float(), atol=1e-6), (part, name)
    for state, other in zip(
        straight["optimizer"]["state"].values(), halves["optimizer"]["state"].values(), strict=True
    ):
        assert torch.allclose(state["exp_avg"], other["exp_avg"], atol=1e-6)
    assert straight["scheduler"]["last_epoch"] == halves["scheduler"]["last_epoch"]
    rows = (tmp_path / "halves" / "log.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows] == ["step", "1", "2", "3", "4"]


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
    assert code == 2 and err.count("\n") == 1
    assert "holds a model of width 4, not 8: pass --width 4" in err
    code, _, err = cli("train", "--out", tmp_path / "run", "--lr", "0.5", *common)
    assert code == 2 and "holds a run with other options" in err and err.count("\n") == 1
    code, _, err = cli("eval", "--checkpoint", tmp_path / "missing.pt", "--shards", shards)
    assert code == 2 and "no checkpoint at" in err
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    code, _, err = cli("eval", "--checkpoint", tmp_path / "junk.pt", "--shards", shards)
    assert code == 2 and "is not a loadable simlidar checkpoint" in err and err.count("\n") == 1
    code, _, err = cli("train", "--shards", tmp_path / "nothing-here", "--quiet")
    assert code == 2 and "neither a shard folder" in err


def test_finetune_needs_init(tmp_path):
    from simlidar.train.errors import TrainError

    with pytest.raises(TrainError, match="needs --init"):
        train(tiny_config(tmp_path, tmp_path / "x", stage="finetune"), progress=False)

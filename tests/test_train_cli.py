"""`simlidar train` on the command line: out-of-range options, a finished run, Ctrl-C,
the same shards named two ways, fine-tuning on shards without a teacher."""

import os
import signal

import pytest
import torch
from simlidar.train import loop

from .test_train_checkpoint import assert_same_run
from .train_shards import write_ramp_shards

TINY = ["--batch-size", "2", "--crop", "16", "16", "--width", "4", "--workers", "0", "--quiet"]


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--log-every", "0"], "--log-every must be at least 1 (got 0)"),
        (["--save-every", "0"], "--save-every must be at least 1 (got 0)"),
        (["--val-every", "0"], "--val-every must be at least 1 (got 0)"),
        (["--lr", "-1"], "--lr must be positive and at least --min-lr"),
        (["--min-lr", "0.1"], "--lr must be positive and at least --min-lr"),
        (["--warmup", "1.5"], "--warmup must lie in [0, 1] (got 1.5)"),
        (["--ema", "1"], "--ema must lie in [0, 1) (got 1.0)"),
        (["--trim", "1"], "--trim must lie in [0, 1) (got 1.0)"),
        (["--steps", "0"], "--steps must be at least 1 (got 0)"),
        (["--batch-size", "0"], "--batch-size must be at least 1 (got 0)"),
        (["--workers", "-1"], "--workers must be at least 0 (got -1)"),
        (["--seed", "-1"], "--seed must be at least 0 (got -1)"),
        (["--clip", "-1"], "--clip must be at least 0 (got -1.0)"),
        (["--shuffle-buffer", "0"], "--shuffle-buffer must be at least 1 (got 0)"),
        (["--ssi-weight", "-0.1"], "--ssi-weight must be at least 0 (got -0.1)"),
        (["--crop", "0", "16"], "--crop H W must be positive (got 0 16)"),
        (["--stop-at", "0"], "--stop-at must be at least 1 (got 0)"),
        (["--width", "0"], "--width must be at least 1 (got 0)"),
    ],
)
def test_out_of_range_options_are_one_line_errors(cli, tmp_path, option, message):
    code, _, err = cli("train", "--shards", tmp_path, "--out", tmp_path / "run", *TINY, *option)
    assert code == 2 and message in err and err.count("\n") == 1, err


def test_a_finished_run_ctrl_c_and_the_same_shards_named_two_ways(cli, tmp_path, monkeypatch):
    write_ramp_shards(tmp_path / "K16")
    monkeypatch.chdir(tmp_path)
    real_loss, calls = loop.compute_loss, []

    def ctrl_c_during_the_second_step(*args):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return real_loss(*args)

    monkeypatch.setattr(loop, "compute_loss", ctrl_c_during_the_second_step)
    code, out, err = cli("train", "--shards", "K16", "--steps", "3", "--out", "run", *TINY)
    # The step in progress finishes, is saved, and the run says so.
    assert code == 130 and "stopped by SIGINT at step 2: saved run/last.pt; re-run the command to resume" in err
    assert "finished shards" not in err and torch.load("run/last.pt", weights_only=True)["step"] == 2
    monkeypatch.setattr(loop, "compute_loss", real_loss)
    code, out, err = cli("train", "--shards", "./K16", "--steps", "3", "--out", "run", *TINY)
    assert code == 0 and out.startswith("step 3: loss ") and "holds a different run" not in err
    code, _, _ = cli("train", "--shards", "K16", "--steps", "3", "--out", "straight", *TINY)
    assert code == 0
    assert_same_run(torch.load("run/last.pt", weights_only=True), torch.load("straight/last.pt", weights_only=True))
    code, out, err = cli("train", "--shards", str(tmp_path / "K16"), "--steps", "3", "--out", "run", *TINY)
    assert code == 0 and out == "" and "already at step 3: nothing to do (raise --steps" in err
    assert "None" not in out + err


def test_finetune_on_shards_without_a_teacher_is_refused(cli, tmp_path):
    shards = write_ramp_shards(tmp_path / "shards", teacher=False)
    code, _, _ = cli("train", "--shards", shards, "--steps", "1", "--out", tmp_path / "pre", *TINY)
    assert code == 0
    finetune = ["train", "--shards", shards, "--stage", "finetune", "--init", tmp_path / "pre" / "last.pt", *TINY]
    code, _, err = cli(*finetune, "--steps", "1", "--out", tmp_path / "ft")
    assert code == 1 and "has no teacher.png, so the SSI term would be 0" in err and "--ssi-weight 0" in err
    assert err.count("\n") == 1
    code, _, err = cli(*finetune, "--steps", "1", "--out", tmp_path / "ft", "--ssi-weight", "0")
    assert code == 0, err

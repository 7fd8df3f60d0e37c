"""Light students end to end: rig shards from photos -> bins-kd training with
view-relational KD -> eval; bad input."""

import json

import numpy as np
import pytest

from .helpers import assert_every_term_falls, write_photo

K = np.array([[60.0, 0, 47.5], [0, 60.0, 23.5], [0, 0, 1]])
TINY = ["--crop", "32", "32", "--workers", "0", "--log-every", "1", "--quiet", "--ema", "0"]


def photo_depth(seed):
    """A wall at 10-14 m with a box at 4-6 m."""
    depth = np.full((48, 96), 10.0 + 2 * (seed % 3), np.float32)
    depth[12:36, 20 + 10 * seed : 50 + 10 * seed] = 4.0 + seed
    return depth


@pytest.fixture
def rig_shards(cli, tmp_path):
    for seed in range(3):
        write_photo(tmp_path / "photos", f"p{seed}.jpg", photo_depth(seed), K=K, seed=seed)
    options = ("--teacher", "sidecar", "--quiet", "--workers", "1", "--rig", "virtual")
    code, _, err = cli("generate", "--images", tmp_path / "photos", "--out", tmp_path / "rig", *options)
    assert code == 0, err
    return tmp_path / "rig"


@pytest.mark.slow
def test_a_tiny_bins_kd_run_lowers_every_term_and_evaluates(cli, rig_shards, tmp_path):
    run = tmp_path / "student"
    args = ["--shards", rig_shards, "--objective", "bins-kd", "--view-relational", "--bins", "16", "--width", "8"]
    # Batches of all three scenes: every step sees the same content, so the terms fall smoothly.
    options = ["--steps", "30", "--batch-size", "3", "--lr", "3e-3", "--kd-weight", "10", "--bin-range", "1", "20"]
    weights = ["--chamfer-weight", "1", "--relational-weight", "10"]
    code, out, err = cli("train", *args, *options, *weights, "--out", run, *TINY)
    assert code == 0, err
    assert_every_term_falls(run / "log.csv", 30)
    assert json.loads((run / "config.json").read_text())["view_relational"] is True

    code, out, err = cli(
        "eval", "--checkpoint", run / "last.pt", "--shards", rig_shards, "--out", tmp_path / "eval", "--quiet"
    )
    assert code == 0, err
    result = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert result["images"] == 9 and 0 < result["mean"]["rmse_mm"] < 20000


def test_bad_student_options_are_one_line_errors(cli, rig_shards, tmp_path):
    base = ["train", "--shards", rig_shards, "--objective", "bins-kd", "--steps", "1", "--out", tmp_path / "r", *TINY]
    code, _, err = cli(*base, "--bins", "1")
    assert code == 2 and "--bins must be at least 2" in err and err.count("\n") == 1
    code, _, err = cli("train", "--shards", rig_shards, "--view-relational", "--out", tmp_path / "r2", *TINY)
    assert code == 2 and "--objective bins-kd" in err and err.count("\n") == 1


def test_view_relational_on_single_view_scenes_is_a_one_line_error(cli, tmp_path):
    write_photo(tmp_path / "photos", "p.jpg", photo_depth(0), K=K)
    options = ("--teacher", "sidecar", "--quiet", "--workers", "1")
    code, _, err = cli("generate", "--images", tmp_path / "photos", "--out", tmp_path / "plain", *options)
    assert code == 0, err
    args = ["--objective", "bins-kd", "--view-relational", "--steps", "1", "--out", tmp_path / "r", *TINY]
    code, _, err = cli("train", "--shards", tmp_path / "plain", *args)
    assert code == 1 and "single view" in err and "--rig" in err and err.count("\n") == 1

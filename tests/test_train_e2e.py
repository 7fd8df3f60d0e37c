"""The whole training story at toy size: demo shards -> pretrain -> convert a KITTI tree
-> finetune with SSI -> eval."""

import csv
import json

import pytest

from .helpers import REPO
from .kitti_tree import write_kitti_tree

TINY = ["--batch-size", "2", "--crop", "32", "64", "--workers", "0", "--log-every", "1", "--quiet"]


@pytest.mark.slow
def test_pretrain_convert_finetune_eval(cli, tmp_path):
    demo = tmp_path / "demo"
    code, _, err = cli("generate", "--images", REPO / "examples" / "scenes", "--out", demo, "--quiet")
    assert code == 0, err
    code, out, err = cli(
        "train",
        "--shards",
        demo,
        "--stage",
        "pretrain",
        "--steps",
        "3",
        "--width",
        "4",
        "--out",
        tmp_path / "pretrain",
        *TINY,
    )
    assert code == 0, err
    assert "step 3" in out and (tmp_path / "pretrain" / "last.pt").is_file()

    kitti = write_kitti_tree(tmp_path / "kitti", frames=(5, 6, 7))
    code, _, err = cli("convert", "kitti", kitti, "--out", tmp_path / "kitti_shards", "--teacher", "sidecar", "--quiet")
    assert code == 0, err
    code, _, err = cli(
        "train",
        "--shards",
        tmp_path / "kitti_shards",
        "--stage",
        "finetune",
        "--steps",
        "3",
        "--init",
        tmp_path / "pretrain" / "last.pt",
        "--out",
        tmp_path / "finetune",
        *TINY,
    )
    assert code == 0, err
    with open(tmp_path / "finetune" / "log.csv") as log:
        rows = list(csv.DictReader(log))
    # The crop holds pixels without GT where the teacher has a value: the SSI term is live.
    assert len(rows) == 3 and all(float(row["ssi"]) > 0 for row in rows)

    code, out, err = cli(
        "eval",
        "--checkpoint",
        tmp_path / "finetune" / "last.pt",
        "--shards",
        tmp_path / "kitti_shards",
        "--out",
        tmp_path / "eval",
        "--quiet",
    )
    assert code == 0, err
    result = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert result["images"] == 3 and result["step"] == 3 and result["weights"] == "ema"
    mean = result["mean"]
    assert set(mean) == {"rmse_mm", "mae_mm", "irmse_per_km", "imae_per_km", "rel", "delta1"}
    assert 0 <= mean["mae_mm"] <= mean["rmse_mm"] and 0 <= mean["delta1"] <= 1
    assert f"RMSE {mean['rmse_mm']:.1f} mm" in out
    assert len(list((tmp_path / "eval" / "previews").glob("*.png"))) == 3

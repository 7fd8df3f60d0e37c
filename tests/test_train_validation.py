"""Validation during training: KITTI metrics in val.csv and TensorBoard, best.pt by RMSE."""

import csv

import pytest
import torch
from simlidar.train.loop import train
from simlidar.train.validate import model_metrics
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from .test_train_checkpoint import tiny_config
from .train_shards import write_ramp_shards


def test_validation_logs_metrics_keeps_the_best_and_survives_a_resume(tmp_path):
    shards = write_ramp_shards(tmp_path / "shards", shards=1)
    val = write_ramp_shards(tmp_path / "val", shards=1, per_shard=2)
    config = tiny_config(shards, tmp_path / "run", steps=4, val_shards=str(val), val_every=2, lr=3e-2)
    train(config, stop_at=2, progress=False)
    train(config, progress=False)
    with open(tmp_path / "run" / "val.csv") as log:
        rows = list(csv.DictReader(log))
    assert [row["step"] for row in rows] == ["2", "4"] and all(row["images"] == "2" for row in rows)
    rmse = [float(row["rmse_mm"]) for row in rows]
    best = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    last = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert best["step"] == (2 if rmse[0] <= rmse[1] else 4) and last["best_val_rmse_mm"] == pytest.approx(min(rmse))
    assert [row["best"] for row in rows] == ["1", "1" if rmse[1] < rmse[0] else "0"]
    # The logged RMSE is the EMA weights' on the validation shards, recomputed here.
    from simlidar.train.factory import load_model

    model = load_model(last, "last.pt", ema=True)
    per_image, _ = model_metrics(model, [str(val / "shard-000000.tar")], torch.device("cpu"))
    assert sum(image["rmse_mm"] for image in per_image) / 2 == pytest.approx(rmse[1], rel=1e-4)

    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"), size_guidance={"images": 0}).Reload()
    assert [event.step for event in events.Scalars("val/rmse_mm")] == [2, 4]
    assert [event.step for event in events.Scalars("lr")] == [1, 2, 3, 4]
    assert {"loss/total", "loss/supervised", "loss/ssi"} <= set(events.Tags()["scalars"])
    assert len(events.Tags()["images"]) == 2  # previews of both validation samples

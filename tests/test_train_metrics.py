"""KITTI devkit metrics on hand-computed examples."""

import math

import numpy as np
import pytest
from simlidar.train.metrics import image_metrics, mean_metrics


def test_image_metrics_by_hand():
    gt = np.array([[10.0, 20.0], [0.0, 40.0]], np.float32)
    prediction = np.array([[11.0, 18.0], [5.0, 40.0]], np.float32)  # the 5 m has no GT: ignored
    metrics = image_metrics(prediction, gt)
    # errors +1 m, -2 m, 0 m
    assert metrics["mae_mm"] == pytest.approx(1000.0)
    assert metrics["rmse_mm"] == pytest.approx(1000.0 * math.sqrt(5 / 3))
    # inverse errors 1/11 - 1/10 = -1/110, 1/18 - 1/20 = 1/180, 0 (1/m); x 1000 -> 1/km
    assert metrics["imae_per_km"] == pytest.approx(1000.0 * (1 / 110 + 1 / 180) / 3)
    assert metrics["irmse_per_km"] == pytest.approx(1000.0 * math.sqrt((1 / 110**2 + 1 / 180**2) / 3))
    assert metrics["rel"] == pytest.approx((1 / 10 + 2 / 20 + 0) / 3)
    assert metrics["delta1"] == pytest.approx(1.0)


def test_delta_and_per_image_averaging():
    gt = np.array([[10.0, 10.0]])
    far_off = image_metrics(np.array([[13.0, 10.0]]), gt)  # 1.3 > 1.25: half the pixels pass
    assert far_off["delta1"] == pytest.approx(0.5)
    exact = image_metrics(gt.copy(), gt)
    assert exact["rmse_mm"] == 0.0
    # The devkit averages per-image values: RMSE of the two images is (2121.3 + 0) / 2,
    # not the RMSE of all pixels pooled (1500).
    assert far_off["rmse_mm"] == pytest.approx(1000 * math.sqrt(4.5))
    assert mean_metrics([far_off, exact])["rmse_mm"] == pytest.approx(1000 * math.sqrt(4.5) / 2)
    assert image_metrics(gt, np.zeros_like(gt)) is None

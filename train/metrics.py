"""Depth-completion metrics as the KITTI devkit defines them: computed per image on
pixels with ground truth (gt > 0), then averaged over images.

RMSE and MAE in mm, iRMSE and iMAE in 1/km (inverse depth), REL = mean |d - gt| / gt,
delta1 = share of pixels with max(d / gt, gt / d) < 1.25.
"""

from __future__ import annotations

import numpy as np

METRIC_NAMES = ("rmse_mm", "mae_mm", "irmse_per_km", "imae_per_km", "rel", "delta1")


def image_metrics(prediction_m: np.ndarray, gt_m: np.ndarray) -> dict[str, float] | None:
    """prediction_m, gt_m: (H, W) metres; gt 0 = no value. Predictions are clamped to
    >= 1 mm so inverse depth stays finite. None when the image has no ground truth."""
    valid = gt_m > 0
    if not valid.any():
        return None
    d = np.maximum(prediction_m[valid].astype(np.float64), 1e-3)
    gt = gt_m[valid].astype(np.float64)
    error = d - gt
    inverse_error = 1.0 / d - 1.0 / gt
    ratio = np.maximum(d / gt, gt / d)
    return {
        "rmse_mm": float(np.sqrt(np.mean(error**2)) * 1000),
        "mae_mm": float(np.mean(np.abs(error)) * 1000),
        "irmse_per_km": float(np.sqrt(np.mean(inverse_error**2)) * 1000),
        "imae_per_km": float(np.mean(np.abs(inverse_error)) * 1000),
        "rel": float(np.mean(np.abs(error) / gt)),
        "delta1": float(np.mean(ratio < 1.25)),
    }


def mean_metrics(per_image: list[dict[str, float]]) -> dict[str, float]:
    """The devkit's summary: each metric averaged over images."""
    return {name: float(np.mean([metrics[name] for metrics in per_image])) for name in METRIC_NAMES}

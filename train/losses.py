"""Losses. Maps are (B, 1, H, W); masks are (B, 1, H, W) 0/1 floats.

- masked L1 / L2 on metric depth, averaged over valid pixels of the batch;
- multi-scale: coarse predictions are upsampled to the target's size (a sparse target
  cannot be downsampled without inventing or losing points);
- SSI, MiDaS's scale-and-shift-invariant loss (Ranftl et al., TPAMI 2022): per image,
  prediction and target are each aligned by their median t and mean absolute deviation
  s, x -> (x - t) / s, on the valid pixels. The data term is the mean absolute residual,
  1/(2M) sum |residual| over the M valid pixels of the batch, keeping per image only the
  (1 - trim) smallest residuals (trim 0.2 is MiDaS's ssitrim, trim 0 its ssimae). The
  gradient term is sum_k sum |d/dx R_k| + |d/dy R_k| / M_k on the residual R_k at 1/2^k
  resolution, M_k its valid pixels (MiDaS's batch-based reduction). A prediction that runs
  against the target (-target) keeps a positive scale, so it pays and gets a gradient.
- `units="prediction"` expresses the residual in the prediction's own units (the
  normalised residual times the prediction's MAD, not differentiated): on metric depth
  a pixel's SSI gradient is then, like the supervised L1's, a constant per pixel at every
  depth, instead of shrinking as 1/depth^2 as it does in disparity.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

# Fewer valid pixels than this in an image: no scale and shift can be fitted, the
# image adds nothing to the SSI loss.
MIN_SSI_PIXELS = 8
SSI_UNITS = ("normalised", "prediction")


def masked_l1(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return ((prediction - target).abs() * mask).sum() / mask.sum().clamp(min=1)


def masked_l2(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return ((prediction - target) ** 2 * mask).sum() / mask.sum().clamp(min=1)


def multiscale(
    loss_fn, predictions: list[torch.Tensor], target: torch.Tensor, mask: torch.Tensor, weights=(1.0, 0.5, 0.25)
) -> torch.Tensor:
    """sum_k weights[k] * loss_fn(predictions[k] upsampled to the target's size, ...)."""
    total = predictions[0].new_zeros(())
    for prediction, weight in zip(predictions, weights, strict=False):
        if prediction.shape[-2:] != target.shape[-2:]:
            prediction = F.interpolate(prediction, size=target.shape[-2:], mode="bilinear", align_corners=False)
        total = total + weight * loss_fn(prediction, target, mask)
    return total


def masked_median(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per image, the (lower) median of values (B, 1, H, W) over mask; (B, 1, 1, 1), 0
    for an image with no valid pixel."""
    flat, valid = values.flatten(1), mask.flatten(1) > 0
    ranked = torch.where(valid, flat, torch.full_like(flat, float("inf"))).sort(1).values
    middle = ((valid.sum(1) - 1).clamp(min=0) // 2)[:, None]
    median = ranked.gather(1, middle)
    return torch.where(valid.any(1, keepdim=True), median, torch.zeros_like(median)).view(-1, 1, 1, 1)


def median_mad_align(values: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """MiDaS's alignment: (values - median) / MAD per image on mask, with MAD the mean
    absolute deviation from the median. Returns (aligned (B, 1, H, W), MAD (B, 1, 1, 1),
    fitted (B, 1, 1, 1) 0/1: the image has MIN_SSI_PIXELS valid pixels and a spread)."""
    count = mask.sum((1, 2, 3), keepdim=True)
    median = masked_median(values, mask)
    mad = ((values - median).abs() * mask).sum((1, 2, 3), keepdim=True) / count.clamp(min=1)
    fitted = (count >= MIN_SSI_PIXELS) & (mad > 1e-6 * median.abs().clamp(min=1e-6))
    # A safe denominator: torch.where would still send NaN gradients through a 0 / 0.
    safe_mad = torch.where(fitted, mad, torch.ones_like(mad))
    return (values - median) / safe_mad, mad, fitted.to(values.dtype)


def fit_scale_shift(source: torch.Tensor, target: torch.Tensor, mask: torch.Tensor):
    """Per image, the least-squares s, t with s * source + t ~ target on mask, closed form.
    Returns (s, t, fitted) of shape (B, 1, 1, 1); fitted is 0 where the image has too few
    valid pixels, no spread, or s <= 0 (source running against the target)."""
    n = mask.sum((1, 2, 3), keepdim=True)
    count = n.clamp(min=1)
    # Centred sums: the raw normal equations cancel catastrophically when the source's
    # spread is small next to its mean.
    mean_s = (mask * source).sum((1, 2, 3), keepdim=True) / count
    mean_t = (mask * target).sum((1, 2, 3), keepdim=True) / count
    centred_s, centred_t = (source - mean_s) * mask, (target - mean_t) * mask
    variance = (centred_s * centred_s).sum((1, 2, 3), keepdim=True) / count
    covariance = (centred_s * centred_t).sum((1, 2, 3), keepdim=True) / count
    spread = (n >= MIN_SSI_PIXELS) & (variance > 1e-12 * (mean_s * mean_s).clamp(min=1e-12))
    scale = torch.where(spread, covariance / torch.where(spread, variance, torch.ones_like(variance)), 0 * variance)
    fitted = spread & (scale > 0)
    return scale, mean_t - scale * mean_s, fitted.to(source.dtype)


def trimmed_absolute(residual: torch.Tensor, mask: torch.Tensor, trim: float) -> torch.Tensor:
    """1/(2M) * the sum, per image, of the (1 - trim) * M_i smallest |residual| on mask,
    M = sum M_i (MiDaS's trimmed data term)."""
    flat_abs, flat_mask = residual.abs().flatten(1), mask.flatten(1)
    keep = torch.floor(flat_mask.sum(1) * (1 - trim))
    # Invalid pixels sort last; the `keep` smallest valid residuals are kept.
    ranked = torch.where(flat_mask > 0, flat_abs, torch.full_like(flat_abs, float("inf"))).sort(1).values
    kept = torch.arange(ranked.shape[1], device=ranked.device)[None] < keep[:, None]
    return torch.where(kept, ranked, torch.zeros_like(ranked)).sum() / (2 * flat_mask.sum()).clamp(min=1)


def gradient_matching(residual: torch.Tensor, mask: torch.Tensor, scales: int = 4) -> torch.Tensor:
    """MiDaS's multi-scale gradient term: at 1, 1/2, 1/4, ... resolution (nearest
    subsampling), sum |d/dx R| + |d/dy R| over pixel pairs that are both valid, divided by
    the valid pixels at that resolution."""
    total = residual.new_zeros(())
    for k in range(scales):
        step = 2**k
        r, m = residual[..., ::step, ::step] * mask[..., ::step, ::step], mask[..., ::step, ::step]
        mask_x = m[..., :, 1:] * m[..., :, :-1]
        mask_y = m[..., 1:, :] * m[..., :-1, :]
        grad = ((r[..., :, 1:] - r[..., :, :-1]).abs() * mask_x).sum() + (
            (r[..., 1:, :] - r[..., :-1, :]).abs() * mask_y
        ).sum()
        total = total + grad / m.sum().clamp(min=1)
    return total


@dataclass(frozen=True)
class SSILoss:
    """MiDaS's SSI loss between a prediction and a target (both depths, or both
    disparities). trim: the share of largest residuals left out per image (0.2 =
    ssitrim). gradient_weight: weight of the gradient term (MiDaS: 0.5). units:
    "normalised" (MiDaS's, residuals in MADs) or "prediction" (residuals in the
    prediction's units, see the module docstring)."""

    trim: float = 0.2
    gradient_weight: float = 0.5
    gradient_scales: int = 4
    units: str = "normalised"

    def __call__(self, prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        aligned_prediction, mad, prediction_fitted = median_mad_align(prediction, mask)
        aligned_target, _, target_fitted = median_mad_align(target, mask)
        mask = mask * prediction_fitted * target_fitted
        residual = aligned_prediction - aligned_target
        if self.units == "prediction":
            residual = residual * mad.detach()
        data = trimmed_absolute(residual, mask, self.trim)
        if self.gradient_weight == 0:
            return data
        return data + self.gradient_weight * gradient_matching(residual, mask, self.gradient_scales)


def depth_to_disparity(depth_m: torch.Tensor) -> torch.Tensor:
    """1 / depth (1/m); the model's depth is positive by construction."""
    return 1.0 / depth_m.clamp(min=1e-3)


def teacher_depth(
    teacher: torch.Tensor, teacher_valid: torch.Tensor, gt_m: torch.Tensor, max_depth_m: float = 250.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """A teacher's relative disparity (B, 1, H, W) made metric depth: per image, the
    least-squares scale and shift that map it onto 1 / ground truth on pixels with both,
    then inverted. Returns (depth (B, 1, H, W) m, valid (B, 1, H, W) 0/1): invalid where
    the teacher has no value, the fit failed (too little ground truth, a scale <= 0) or
    the depth falls outside (0, max_depth_m]."""
    gt_mask = (gt_m > 0).to(teacher.dtype)
    both = teacher_valid * gt_mask
    scale, shift, fitted = fit_scale_shift(teacher, depth_to_disparity(gt_m) * gt_mask, both)
    disparity = scale * teacher + shift
    valid = teacher_valid * fitted * (disparity >= 1.0 / max_depth_m).to(teacher.dtype)
    depth = torch.where(valid > 0, 1.0 / disparity.clamp(min=1.0 / max_depth_m), torch.zeros_like(disparity))
    return depth, valid

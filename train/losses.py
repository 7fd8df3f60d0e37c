"""Losses. Maps are (B, 1, H, W); masks are (B, 1, H, W) 0/1 floats.

- masked L1 / L2 on metric depth, averaged over valid pixels of the batch;
- multi-scale: coarse predictions are upsampled to the target's size (a sparse target
  cannot be downsampled without inventing or losing points);
- SSI (MiDaS): per image, the least-squares scale s >= 0 and shift t that best map the
  prediction onto the target on valid pixels (closed form), then the mean squared
  residual, or its trimmed mean absolute version, plus a multi-scale gradient-matching
  term on the residual. Used in disparity space against a teacher's relative disparity.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

# Fewer valid pixels than this in an image: no scale and shift can be fitted, the
# image adds nothing to the SSI loss.
MIN_SSI_PIXELS = 8


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


def align_scale_shift(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor):
    """Per image, argmin_{s >= 0, t} sum mask * (s * prediction + t - target)**2, closed form.
    Returns (s, t, fitted) of shape (B, 1, 1, 1); fitted is 0 where the image has too
    few valid pixels (or no spread) to fit, and s, t are then 0 and the target's mean."""
    n = mask.sum((1, 2, 3), keepdim=True)
    count = n.clamp(min=1)
    # Centred sums: the raw normal equations cancel catastrophically when the
    # prediction's spread is small next to its mean.
    mean_p = (mask * prediction).sum((1, 2, 3), keepdim=True) / count
    mean_t = (mask * target).sum((1, 2, 3), keepdim=True) / count
    centred_p, centred_t = (prediction - mean_p) * mask, (target - mean_t) * mask
    variance = (centred_p * centred_p).sum((1, 2, 3), keepdim=True) / count
    covariance = (centred_p * centred_t).sum((1, 2, 3), keepdim=True) / count
    fitted = (n >= MIN_SSI_PIXELS) & (variance > 1e-12 * (mean_p * mean_p).clamp(min=1e-12))
    # Safe denominators: torch.where would still send NaN gradients through a 0 / 0.
    safe_variance = torch.where(fitted, variance, torch.ones_like(variance))
    scale = torch.where(fitted, covariance / safe_variance, torch.zeros_like(variance))
    # A prediction that runs against the target gets no negative scale: s = 0 and
    # the best shift, so it pays for the whole variance of the target.
    scale = scale.clamp(min=0)
    shift = mean_t - scale * mean_p
    return scale, shift, fitted.to(prediction.dtype)


def gradient_matching(residual: torch.Tensor, mask: torch.Tensor, scales: int = 4) -> torch.Tensor:
    """MiDaS's multi-scale gradient term: mean |d/dx R| + |d/dy R| of the residual R over
    pixel pairs that are both valid, at 1, 1/2, 1/4, ... resolution (nearest subsampling)."""
    total = residual.new_zeros(())
    for k in range(scales):
        step = 2**k
        r, m = residual[..., ::step, ::step], mask[..., ::step, ::step]
        mask_x = m[..., :, 1:] * m[..., :, :-1]
        mask_y = m[..., 1:, :] * m[..., :-1, :]
        grad = ((r[..., :, 1:] - r[..., :, :-1]).abs() * mask_x).sum() + (
            (r[..., 1:, :] - r[..., :-1, :]).abs() * mask_y
        ).sum()
        total = total + grad / (mask_x.sum() + mask_y.sum()).clamp(min=1)
    return total


@dataclass(frozen=True)
class SSILoss:
    """SSI loss between a prediction and a relative target (both disparities).
    trim: the fraction of largest residuals left out per image (0 = least-squares
    MSE, MiDaS's ssimse; > 0 = mean absolute residual of the rest, MiDaS's ssitrim
    uses 0.2). gradient_weight: weight of the gradient-matching term."""

    trim: float = 0.0
    gradient_weight: float = 0.5
    gradient_scales: int = 4

    def __call__(self, prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scale, shift, fitted = align_scale_shift(prediction, target, mask)
        mask = mask * fitted
        residual = (scale * prediction + shift - target) * mask
        if self.trim > 0:
            data = self._trimmed(residual.abs(), mask)
        else:
            data = 0.5 * (residual**2).sum() / mask.sum().clamp(min=1)
        if self.gradient_weight == 0:
            return data
        return data + self.gradient_weight * gradient_matching(residual, mask, self.gradient_scales)

    def _trimmed(self, absolute: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean over the batch's kept pixels, keeping per image the (1 - trim) smallest."""
        flat_abs, flat_mask = absolute.flatten(1), mask.flatten(1)
        keep = torch.floor(flat_mask.sum(1) * (1 - self.trim))
        # Invalid pixels sort last; the k smallest valid residuals are kept.
        ranked = torch.where(flat_mask > 0, flat_abs, torch.full_like(flat_abs, float("inf"))).sort(1).values
        rank = torch.arange(ranked.shape[1], device=ranked.device)[None]
        kept = rank < keep[:, None]
        return torch.where(kept, ranked, torch.zeros_like(ranked)).sum() / keep.sum().clamp(min=1)


def depth_to_disparity(depth_m: torch.Tensor) -> torch.Tensor:
    """1 / depth (1/m); the model's depth is positive by construction."""
    return 1.0 / depth_m.clamp(min=1e-3)

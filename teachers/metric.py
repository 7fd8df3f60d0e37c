"""Relative teacher output to metric depth.

A relative disparity map d is inverse depth up to an unknown scale and shift:
1/z = a * d + b. Two distances pin a and b: the pixels at a high percentile of d
(the nearest surfaces, robust to a few outliers) are put at `near`, those at a low
percentile (the far background) at `far`, both drawn per image from configured
ranges; in between, inverse depth is linear in d, so the mapping is monotonic and
keeps the teacher's relative geometry. Pixels whose disparity is below
`sky_threshold` times the near disparity (more than near / sky_threshold away:
sky, far background) get 0, "no return", as do NaN and inf.

Metric depth of either origin is then bounded to what a camera can see
(PHYSICAL_DEPTH_M): a value outside it (a sky marker of 1e18 m or float max, a
stray 1e-30) is no value too, counted in the record; casting against such values
would lose all precision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from .base import DepthPrediction, TeacherError

# (near range, far range) in metres.
DEPTH_RANGE_PRESETS = {
    "street": ((2.0, 5.0), (40.0, 80.0)),
    "indoor": ((0.5, 1.5), (4.0, 10.0)),
}
# A map needs at least this share of finite non-sky pixels to be mapped.
MIN_VALID_FRACTION = 0.01
# Metric depth a camera can see (m): nearer than a millimetre or beyond ten kilometres is no value.
PHYSICAL_DEPTH_M = (1e-3, 1e4)


@dataclass(frozen=True)
class DepthConversion:
    """near_m, far_m: (low, high) ranges the per-image near and far distances are
    drawn from; percentiles: (low, high) of the teacher output pinned to far and
    near; sky_threshold: disparity below this fraction of the near disparity is no
    return; metric_scale: (low, high) range of a global scale for metric output."""

    near_m: tuple[float, float] = DEPTH_RANGE_PRESETS["street"][0]
    far_m: tuple[float, float] = DEPTH_RANGE_PRESETS["street"][1]
    percentiles: tuple[float, float] = (2.0, 98.0)
    sky_threshold: float = 0.02
    metric_scale: tuple[float, float] = (1.0, 1.0)


def parse_floats(text: str, count: int, option: str) -> tuple[float, ...]:
    """'a,b' -> (a, b): `count` finite comma-separated numbers, else TeacherError naming `option`."""
    try:
        values = tuple(float(part) for part in str(text).split(","))
    except ValueError:
        values = ()
    if len(values) != count or not all(math.isfinite(value) for value in values):
        raise TeacherError(f"{option} takes {count} comma-separated numbers, got {text!r}")
    return values


def depth_conversion(depth_range: str, percentiles: str, sky_threshold: float, metric_scale: str) -> DepthConversion:
    """The conversion from the generate options; raises TeacherError on bad values.
    depth_range: a preset name (street, indoor) or NEAR_LO,NEAR_HI,FAR_LO,FAR_HI in metres."""
    if depth_range in DEPTH_RANGE_PRESETS:
        near, far = DEPTH_RANGE_PRESETS[depth_range]
    else:
        if "," not in str(depth_range):
            raise TeacherError(
                f"`depth_range` {depth_range!r}: give {', '.join(DEPTH_RANGE_PRESETS)} or "
                "NEAR_LO,NEAR_HI,FAR_LO,FAR_HI in metres"
            )
        near_lo, near_hi, far_lo, far_hi = parse_floats(depth_range, 4, "`depth_range`")
        near, far = (near_lo, near_hi), (far_lo, far_hi)
    if not 0 < near[0] <= near[1] < far[0] <= far[1]:
        raise TeacherError(f"`depth_range` needs 0 < NEAR_LO <= NEAR_HI < FAR_LO <= FAR_HI, got {near} and {far}")
    low, high = parse_floats(percentiles, 2, "`disparity_percentiles`")
    if not 0 <= low < high <= 100:
        raise TeacherError(f"`disparity_percentiles` needs 0 <= LOW < HIGH <= 100, got {percentiles!r}")
    if not 0 <= sky_threshold < 1:
        raise TeacherError(f"`sky_threshold` must be in [0, 1), got {sky_threshold}")
    scale = parse_floats(metric_scale, 2, "`metric_scale`")
    if not 0 < scale[0] <= scale[1]:
        raise TeacherError(f"`metric_scale` needs 0 < LOW <= HIGH, got {metric_scale!r}")
    return DepthConversion(near, far, (low, high), sky_threshold, scale)


def disparity_to_depth(
    disparity: np.ndarray, near_m: float, far_m: float, percentiles: tuple[float, float], sky_threshold: float
) -> tuple[np.ndarray, dict]:
    """disparity: (H, W) relative disparity (larger = nearer, any scale and shift).
    Returns depth (H, W) float32 metres with 0 = no return, and the mapping used."""
    finite = np.isfinite(disparity)
    if finite.mean() < MIN_VALID_FRACTION:
        raise TeacherError("the teacher's output is NaN or inf almost everywhere")
    near_disparity = float(np.percentile(disparity[finite], percentiles[1]))
    sky = finite & (disparity < sky_threshold * near_disparity) if near_disparity > 0 else np.zeros_like(finite)
    kept = finite & ~sky
    if kept.mean() < MIN_VALID_FRACTION:
        raise TeacherError("the teacher sees only sky or far background in this photo")
    far_disparity = float(np.percentile(disparity[kept], percentiles[0]))
    span = near_disparity - far_disparity
    if not span > 1e-6 * max(abs(near_disparity), 1e-12):
        raise TeacherError("the teacher's output is flat (no depth structure) in this photo")
    unit = np.clip((disparity - far_disparity) / span, 0.0, 1.0)
    inverse_depth = 1.0 / far_m + unit * (1.0 / near_m - 1.0 / far_m)
    depth = np.where(kept, 1.0 / np.where(kept, inverse_depth, 1.0), 0.0).astype(np.float32)
    record = {
        "near_m": near_m,
        "far_m": far_m,
        "percentiles": list(percentiles),
        "disparity_at_percentiles": [far_disparity, near_disparity],
        "sky_threshold": sky_threshold,
        "no_return_fraction": float(1.0 - kept.mean()),
    }
    return depth, record


def relative_depth_to_depth(
    relative: np.ndarray, near_m: float, far_m: float, percentiles: tuple[float, float]
) -> tuple[np.ndarray, dict]:
    """relative: (H, W) relative depth (larger = farther, any scale and shift): the low
    percentile goes to near_m, the high one to far_m, linearly in between, clipped.
    Returns depth (H, W) float32 metres (0 where not finite) and the mapping used."""
    finite = np.isfinite(relative)
    if finite.mean() < MIN_VALID_FRACTION:
        raise TeacherError("the teacher's output is NaN or inf almost everywhere")
    low, high = (float(value) for value in np.percentile(relative[finite], percentiles))
    if not high - low > 1e-6 * max(abs(high), 1e-12):
        raise TeacherError("the teacher's output is flat (no depth structure) in this photo")
    unit = np.clip((np.where(finite, relative, low) - low) / (high - low), 0.0, 1.0)
    depth = np.where(finite, near_m + unit * (far_m - near_m), 0.0).astype(np.float32)
    record = {
        "near_m": near_m,
        "far_m": far_m,
        "percentiles": list(percentiles),
        "depth_at_percentiles": [low, high],
        "no_return_fraction": float(1.0 - finite.mean()),
    }
    return depth, record


def to_metric(prediction: DepthPrediction, conversion: DepthConversion, rng: np.random.Generator) -> DepthPrediction:
    """The prediction as metric depth (kind 'metric'), drawing near/far (relative
    output) or the global scale (metric output) from `rng`; the mapping goes in
    `conversion` with "from" = the teacher's own output kind. Raises TeacherError
    when the output cannot be mapped (flat, all sky, all NaN)."""
    if prediction.kind == "metric":
        scale = float(rng.uniform(*conversion.metric_scale))
        depth = prediction.depth.astype(np.float32) * np.float32(scale)
        invalid = ~np.isfinite(depth) | (depth < 0)
        depth[invalid] = 0.0
        record = {**prediction.conversion, "scale": scale, "no_return_fraction": float(np.mean(depth == 0))}
    else:
        near_m = float(rng.uniform(*conversion.near_m))
        far_m = float(rng.uniform(*conversion.far_m))
        if prediction.kind == "disparity":
            depth, mapping = disparity_to_depth(
                prediction.depth, near_m, far_m, conversion.percentiles, conversion.sky_threshold
            )
        else:
            depth, mapping = relative_depth_to_depth(prediction.depth, near_m, far_m, conversion.percentiles)
        record = {**prediction.conversion, **mapping}
    outside = (depth != 0) & ((depth < PHYSICAL_DEPTH_M[0]) | (depth > PHYSICAL_DEPTH_M[1]))
    depth[outside] = 0.0
    record["outside_physical_range_pixels"] = int(np.count_nonzero(outside))
    return replace(prediction, depth=depth, kind="metric", conversion={**record, "from": prediction.kind})

"""Flying returns, and soft stand-ins for a teacher's depth to measure them on.

A teacher smears every depth discontinuity over several pixels; a scan of that depth
puts returns in the smear, on no surface that exists. `flying_share` counts them against
the true depth: in the 5 x 5 pixel neighbourhood of a return's pixel the true depths are
sorted, two consecutive ones more than JUMP_RATIO apart make a discontinuity (a steep but
smooth surface, like the ground at grazing angles, has none), and the return is flying
when it lies inside that jump, more than SIDE_MARGIN from both sides.

No teacher's weights are at hand where this is measured, so `blur_depth` makes soft
depth from true depth, the photo staying sharp, in several unlike ways (so that a rule
for edges is never tuned to one kernel): box down and up, a Gaussian, a box blur whose
edges are shifted off the photo's, a foreground dilated before blurring (a teacher
fattens thin near things), and an irregular warp (a blur width that varies over the
image plus a smooth random displacement of the edges).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from ..errors import PipelineError

JUMP_RATIO = 1.25
SIDE_MARGIN = 0.03
NEIGHBOURHOOD_PX = 5
BLUR_KINDS = ("box", "gauss", "shift", "dilate", "warp")
# Where a blur leaves a pixel with less than this share of valid weight, it has no depth.
MIN_VALID_WEIGHT = 0.5


def _neighbourhoods(sparse_m: np.ndarray, true_depth_m: np.ndarray) -> tuple[tuple, np.ndarray]:
    """The returns of sparse_m (H, W, m, 0 = none) as (rows, cols), and the true depths
    (H, W, m, 0 = none) of each one's 5 x 5 neighbourhood sorted, NaN (none) last: (N, 25)."""
    if sparse_m.shape != true_depth_m.shape or sparse_m.ndim != 2:
        raise ValueError(f"sparse_m {sparse_m.shape} and true_depth_m {true_depth_m.shape} must be one (H, W)")
    rows, cols = np.nonzero(sparse_m > 0)
    half = NEIGHBOURHOOD_PX // 2
    truth = np.where(np.isfinite(true_depth_m) & (true_depth_m > 0), true_depth_m, np.nan).astype(np.float64)
    padded = np.pad(truth, half, constant_values=np.nan)
    offsets = np.arange(NEIGHBOURHOOD_PX)
    window = padded[rows[:, None, None] + offsets[None, :, None], cols[:, None, None] + offsets[None, None, :]]
    return (rows, cols), np.sort(window.reshape(len(rows), -1), axis=1)


def flying_mask(sparse_m: np.ndarray, true_depth_m: np.ndarray) -> np.ndarray:
    """(H, W) bool: the returns of a sparse map (H, W, m, 0 = none) that lie inside a depth
    discontinuity of the true depth (H, W, m, 0 = none) around their pixel (see the module
    docstring)."""
    (rows, cols), ordered = _neighbourhoods(sparse_m, true_depth_m)
    nearer, farther = ordered[:, :-1], ordered[:, 1:]
    depth = sparse_m[rows, cols].astype(np.float64)[:, None]
    with np.errstate(invalid="ignore"):
        inside = (
            (farther > JUMP_RATIO * nearer)
            & (depth > (1 + SIDE_MARGIN) * nearer)
            & (depth < (1 - SIDE_MARGIN) * farther)
        )
    mask = np.zeros(sparse_m.shape, bool)
    mask[rows, cols] = inside.any(axis=1)
    return mask


def beyond_mask(sparse_m: np.ndarray, true_depth_m: np.ndarray) -> np.ndarray:
    """(H, W) bool: the returns of a sparse map (H, W, m, 0 = none) off every true surface
    around them: more than SIDE_MARGIN nearer than the nearest or farther than the farthest
    true depth (H, W, m, 0 = none) of their 5 x 5 neighbourhood. An edge rule that puts a
    pixel on the wrong side of a jump makes such a return (the flying share does not count
    it); so do a smear's tails past a jump's levels and noise on the surface itself."""
    (rows, cols), ordered = _neighbourhoods(sparse_m, true_depth_m)
    depth = sparse_m[rows, cols].astype(np.float64)
    # fmax skips NaN; a neighbourhood without true depth is NaN at both ends: never off.
    nearest, farthest = ordered[:, 0], np.fmax.reduce(ordered, axis=1)
    with np.errstate(invalid="ignore"):
        off = (depth < nearest / (1 + SIDE_MARGIN)) | (depth > farthest * (1 + SIDE_MARGIN))
    mask = np.zeros(sparse_m.shape, bool)
    mask[rows, cols] = off
    return mask


def flying_share(sparse_m: np.ndarray, true_depth_m: np.ndarray) -> float:
    """Share of the returns of sparse_m (H, W, m, 0 = none) that are flying against
    true_depth_m (H, W, m); 0 for a map without returns."""
    return _share_of_returns(flying_mask, sparse_m, true_depth_m)


def beyond_share(sparse_m: np.ndarray, true_depth_m: np.ndarray) -> float:
    """Share of the returns of sparse_m (H, W, m, 0 = none) off every true surface around
    them (beyond_mask) against true_depth_m (H, W, m); 0 for a map without returns."""
    return _share_of_returns(beyond_mask, sparse_m, true_depth_m)


def _share_of_returns(mask_of, sparse_m: np.ndarray, true_depth_m: np.ndarray) -> float:
    returns = int(np.count_nonzero(sparse_m > 0))
    return float(mask_of(sparse_m, true_depth_m).sum() / returns) if returns else 0.0


def shifted(image: np.ndarray, dv: int, du: int, fill: float) -> np.ndarray:
    """image (H, W) moved by (dv, du) pixels, `fill` where nothing moved in."""
    height, width = image.shape
    out = np.full_like(image, fill)
    out[max(dv, 0) : height + min(dv, 0), max(du, 0) : width + min(du, 0)] = image[
        max(-dv, 0) : height + min(-dv, 0), max(-du, 0) : width + min(-du, 0)
    ]
    return out


def parse_teacher_blur(text: str, parameter: str = "teacher_blur") -> tuple[str, int]:
    """'KIND:F' (KIND one of BLUR_KINDS, F a factor in 1..32 pixels) as (kind, factor);
    PipelineError naming `parameter` (the one it was given as) otherwise."""
    kind, _, factor = text.partition(":")
    if kind not in BLUR_KINDS or not factor.isdigit() or not 1 <= int(factor) <= 32:
        raise PipelineError(
            f"`{parameter}` must be KIND:F with KIND one of {', '.join(BLUR_KINDS)} and F in 1..32, got {text!r}"
        )
    return kind, int(factor)


def blur_depth(depth_m: np.ndarray, kind: str, factor: int, seed: int = 0) -> np.ndarray:
    """A soft copy (H, W, float32 m, 0 = none) of sharp depth (H, W, m, 0 = none), as a
    teacher might predict it, `factor` setting the width of the smear in pixels:

    box: averaged over factor x factor blocks, resized back bilinearly;
    gauss: a Gaussian of sigma factor / 2;
    shift: box, its edges moved factor / 2 pixels right and factor / 4 down off the photo's;
    dilate: the nearer side of every edge grown by factor / 2 pixels, then box;
    warp: a Gaussian whose sigma varies smoothly over the image between factor / 4 and
        factor, applied to disparity, then every pixel displaced by a smooth random field
        of up to factor / 2 pixels (seeded by `seed`).
    """
    if depth_m.ndim != 2:
        raise ValueError(f"depth_m must be (H, W), got shape {depth_m.shape}")
    if kind not in BLUR_KINDS:
        raise ValueError(f"kind must be one of {BLUR_KINDS}, got {kind!r}")
    depth = np.where(np.isfinite(depth_m) & (depth_m > 0), depth_m, 0.0).astype(np.float64)
    if kind == "shift":
        depth = shifted(depth, round(factor / 4), round(factor / 2), 0.0)
    elif kind == "dilate":
        depth = _nearest_within(depth, max(factor // 2, 1))
    if kind in ("box", "shift", "dilate"):
        return _box_down_up(depth, factor).astype(np.float32)
    if kind == "gauss":
        return _masked_gaussian(depth, factor / 2).astype(np.float32)
    return _warp(depth, factor, np.random.default_rng(seed)).astype(np.float32)


def _box_down_up(depth: np.ndarray, factor: int) -> np.ndarray:
    """Mean of the valid depths of each factor x factor block, resized back bilinearly
    (weights resized alike, so no-depth pixels do not pull the mean to 0)."""
    height, width = depth.shape
    rows, cols = -(-height // factor), -(-width // factor)
    padded = np.zeros((rows * factor, cols * factor))
    weight = np.zeros_like(padded)
    padded[:height, :width] = depth
    weight[:height, :width] = depth > 0
    block_sum = padded.reshape(rows, factor, cols, factor).sum(axis=(1, 3))
    block_weight = weight.reshape(rows, factor, cols, factor).sum(axis=(1, 3))
    mean = np.where(block_weight > 0, block_sum / np.maximum(block_weight, 1), 0.0)
    occupied = (block_weight > 0).astype(np.float64)
    up_sum = _resize(mean * occupied, cols * factor, rows * factor)[:height, :width]
    up_weight = _resize(occupied, cols * factor, rows * factor)[:height, :width]
    return np.where(up_weight >= MIN_VALID_WEIGHT, up_sum / np.maximum(up_weight, 1e-9), 0.0)


def _resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    return np.asarray(Image.fromarray(image.astype(np.float32)).resize((width, height), Image.BILINEAR), np.float64)


def _gaussian(image: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian of an (H, W) image, edges padded by reflection."""
    radius = max(int(np.ceil(3 * sigma)), 1)
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / max(sigma, 1e-6)) ** 2)
    taps /= taps.sum()
    result = image
    for axis in (0, 1):
        pad = [(0, 0), (0, 0)]
        pad[axis] = (radius, radius)
        padded = np.pad(result, pad, mode="reflect")
        length = result.shape[axis]
        result = sum(tap * np.take(padded, np.arange(k, k + length), axis=axis) for k, tap in enumerate(taps))
    return result


def _masked_gaussian(values: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian of the valid (> 0) values only, normalised by the blurred validity."""
    valid = (values > 0).astype(np.float64)
    total, weight = _gaussian(values * valid, sigma), _gaussian(valid, sigma)
    return np.where(weight >= MIN_VALID_WEIGHT, total / np.maximum(weight, 1e-9), 0.0)


def _nearest_within(depth: np.ndarray, radius: int) -> np.ndarray:
    """Each valid pixel's nearest valid depth within a (2 radius + 1) square: the near
    side of every edge grown by radius pixels."""
    nearest = np.where(depth > 0, depth, np.inf)
    for dv, du in ((1, 0), (0, 1)):
        source = nearest.copy()
        for shift in range(1, radius + 1):
            nearest = np.minimum(nearest, shifted(source, shift * dv, shift * du, np.inf))
            nearest = np.minimum(nearest, shifted(source, -shift * dv, -shift * du, np.inf))
    return np.where(depth > 0, nearest, 0.0)


def _smooth_field(shape: tuple[int, int], cells: int, rng: np.random.Generator) -> np.ndarray:
    """A smooth random field in [-1, 1] over shape (H, W): uniform values on a coarse grid
    of about `cells` cells across, resized up bicubically."""
    height, width = shape
    coarse_w = max(cells, 2)
    coarse_h = max(round(cells * height / width), 2)
    coarse = rng.uniform(-1.0, 1.0, size=(coarse_h, coarse_w)).astype(np.float32)
    return np.clip(np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC), np.float64), -1, 1)


def _warp(depth: np.ndarray, factor: int, rng: np.random.Generator) -> np.ndarray:
    """The 'warp' blur: a spatially varying Gaussian on disparity, then a smooth displacement."""
    valid = depth > 0
    disparity = np.where(valid, 1.0 / np.where(valid, depth, 1.0), 0.0)
    sigmas = (factor / 4, factor / 2, factor)
    blurred = [_masked_gaussian(disparity, sigma) for sigma in sigmas]
    # Where the field is -1 the narrowest blur, +1 the widest, in between a mix of two.
    position = (_smooth_field(depth.shape, 6, rng) + 1.0) * (len(sigmas) - 1) / 2
    lower = np.clip(np.floor(position).astype(int), 0, len(sigmas) - 2)
    share = position - lower
    stack = np.stack(blurred)
    rows, cols = np.indices(depth.shape)
    mixed = (1 - share) * stack[lower, rows, cols] + share * stack[lower + 1, rows, cols]
    mixed = np.where((stack[lower, rows, cols] > 0) & (stack[lower + 1, rows, cols] > 0), mixed, 0.0)
    reach = factor / 2
    source_rows = np.clip(np.rint(rows + reach * _smooth_field(depth.shape, 8, rng)), 0, depth.shape[0] - 1)
    source_cols = np.clip(np.rint(cols + reach * _smooth_field(depth.shape, 8, rng)), 0, depth.shape[1] - 1)
    moved = mixed[source_rows.astype(int), source_cols.astype(int)]
    return np.where(moved > 0, 1.0 / np.where(moved > 0, moved, 1.0), 0.0)

"""Depth discontinuities a teacher smears, cut where the photo has its edge.

A teacher spreads every depth jump over a band of several pixels (wider and more
irregular on hedges, fences and poles than any one blur kernel), while the photo stays
sharp. Meshed as it is, the band becomes a sloped sheet between the foreground and the
background that the LiDAR hits: returns on no surface. This stage runs on each camera's
depth before meshing, so every mesh method (and the dense target) sees the same result.

1. seeds: the middle pixel of each 2 x 2 tile is the inside of a smeared jump when,
   along its row or column, the pixels a span L before and after it (L = radius_px / 2
   or radius_px) differ by more than 1 + min_jump, its own depth lies between theirs
   (more than 3% from both), its disparity slope is at least half the span's mean
   slope, that mean is `steepness` times the slope at both ends of the span, and no
   one-pixel step makes more than about a third of the change. A plane (the road at
   grazing angles, a wall seen obliquely) has one disparity slope everywhere and is
   never a seed; a jump squeezed into the span has flat ends; a sharp jump (beside a
   slanted surface, say) is one step. Slopes are one-sided, the gentler side's, so a
   pixel beside a sharp jump measures its own surface. From the span's ends, the levels
   of the jump are followed outward while the disparity keeps moving toward them (a
   wide blur's tails reach past the span), to where it settles. A level is reached when
   the disparity stays there for a quarter of the smear's width beyond; a structure
   narrower than the blur (a pole a blur of 8 dilutes) only peaks, and its depth is
   nowhere in the map.
2. band: every tile within reach_px (as wide as the longest span: a blur's band is as
   wide as the blur) of a seed's tile takes the nearest near and the farthest far level
   of those seeds: the band also covers the smear's tails and an edge the teacher moved
   off the photo's.
3. sides: each band pixel goes to the near or the far side. The evidence is the photo:
   the pixel's colour is compared with the colours of the confident pixels of each side
   in a window of radius radius_px + reach_px (outside the band, within 3% of the
   side's level), weighted by distance and colour likeness, so the cut falls on the
   photo's edge; where its own depth lies between the levels is a weak prior that
   decides where the colours do not. With confident pixels on one side only, a pixel
   joins that side if it looks like it and otherwise follows its own depth (a thin pole
   is all band: it stays the near side). A vote of the 8 neighbours then removes single
   pixels of the other side (texture). A pixel within 1% of its side's confident depths
   keeps its own; any other takes the depth of the most alike confident pixel of its
   side (the side's level when there is none). A side whose level was not reached (the
   peak of a structure thinner than the blur) gives its pixels to the other side: no
   pixel is deleted, so no shadow of missing returns follows the edges. A ray then
   meets the foreground or the background (which the mesh's hidden layer continues
   behind the foreground), never the smear.

Sharp depth has no multi-pixel smear, so the stage leaves it (nearly) as it is.

The rule "depth" is the baseline without the photo (the photo's contribution is the
difference): in a 17-pixel window, a pixel inside the jump between the window's nearest
and farthest depth moves to the nearer of the two in log depth.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numba
import numpy as np

RULES = ("photo", "depth", "none")
# The depth rule's window: 2 x this + 1 pixels a side (the 13-21 px).
DEPTH_RULE_RADIUS = 8
# Inside a jump means more than this share from both of its levels (the flying-return
# definition's margin).
SIDE_MARGIN = 0.03
# A band pixel within this share of the depths of its side's confident pixels keeps its own.
KEEP_MARGIN = 0.01
# Confident pixels of a side lie within this share of its level (the smear's own tails
# and a third surface nearer or farther are no side of this jump).
LEVEL_SLACK = 0.03
# Colour samples: SAMPLES x SAMPLES evenly spaced pixels of the window of radius
# radius_px + reach_px (so that pixels past the band are within reach of its middle).
SAMPLES = 5
# A smear spreads a jump: no one-pixel step of it makes more than this share of it.
MAX_STEP_SHARE = 0.35
# The mean colour likeness that makes a pixel look like a side.
ALIKE = 0.2
# A band pixel goes with its 8 neighbours when more of them than this are on the other side.
VOTE_MARGIN = 1
# A smear's side settles where its disparity moves by less than this share a pixel...
FLAT_STEP = 0.005
# ... and is reached when it stays within this share beyond it for 1 / PLATEAU_SHARE of
# the smear's width (at least PLATEAU_PX pixels).
PLATEAU_DROP = 0.015
PLATEAU_PX = 2
PLATEAU_SHARE = 4
# Seeds, levels and the band are kept per tile of this many pixels a side.
LEVEL_BLOCK = 2


@dataclass(frozen=True)
class EdgeOptions:
    """How depth discontinuities are handled before meshing.

    rule: "photo" (cut each smeared jump at the photo's edge), "depth" (the baseline
        without the photo: each pixel inside a window's jump to the nearer of its levels)
        or "none" (the teacher's depth as it is).
    radius_px: the longest span (pixels) a smeared jump is looked for over; with
        reach_px, the radius of the window colour samples are taken from.
    min_jump: the smallest jump handled, as far / near depth - 1.
    steepness: how much steeper than at its ends a span's mean disparity slope must be.
    reach_px: how far (pixels) the band reaches beyond its seeds.
    colour_sigma: how different two colours (RGB, 0-255, Euclidean) may be and still
        count as alike (the width of the colour weight).
    """

    rule: str = "photo"
    radius_px: int = 12
    min_jump: float = 0.25
    steepness: float = 1.5
    reach_px: int = 12
    colour_sigma: float = 24.0

    def __post_init__(self) -> None:
        checks = [
            (self.rule in RULES, f"rule must be one of {', '.join(RULES)}, got {self.rule!r}"),
            (4 <= self.radius_px <= 64, f"radius_px must be in 4..64, got {self.radius_px}"),
            (self.min_jump > 0, f"min_jump must be positive, got {self.min_jump}"),
            (self.steepness >= 1, f"steepness must be at least 1, got {self.steepness}"),
            (0 <= self.reach_px <= self.radius_px, f"reach_px must be in 0..radius_px, got {self.reach_px}"),
            (self.colour_sigma > 0, f"colour_sigma must be positive, got {self.colour_sigma}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


@dataclass(frozen=True)
class EdgeResult:
    """depth_m: (H, W) float32 handled depth (m, 0 = none); band_px: pixels in a band;
    moved_px: pixels whose depth changed."""

    depth_m: np.ndarray
    band_px: int
    moved_px: int


def edge_record(options: EdgeOptions, result: EdgeResult | None) -> dict:
    """The json record of the rule, its parameters and what it did."""
    record = asdict(options)
    if result is not None:
        record |= {"band_px": result.band_px, "moved_px": result.moved_px}
    return record


def handle_edges(
    depth_m: np.ndarray, rgb: np.ndarray, options: EdgeOptions = EdgeOptions(), threads: int = 0
) -> EdgeResult:
    """Cut the smeared depth discontinuities of depth_m (H, W, m; 0, NaN or inf = none)
    at the edges of the photo rgb (H, W, 3, uint8) (see the module docstring), on
    `threads` threads (0: every core; a Ray task runs on one)."""
    if depth_m.ndim != 2:
        raise ValueError(f"depth_m must be (H, W), got shape {depth_m.shape}")
    if rgb.shape != (*depth_m.shape, 3):
        raise ValueError(f"rgb must be (H, W, 3) = {(*depth_m.shape, 3)}, got shape {rgb.shape}")
    depth = np.where(np.isfinite(depth_m) & (depth_m > 0), depth_m, 0.0).astype(np.float32)
    if options.rule == "none" or min(depth.shape) < 2 * options.radius_px + 3:
        return EdgeResult(depth, 0, 0)
    if options.rule == "depth":
        return _cut_at_depth_levels(depth, options.min_jump)
    numba.set_num_threads(threads if 0 < threads <= numba.config.NUMBA_NUM_THREADS else numba.config.NUMBA_NUM_THREADS)
    disparity = np.divide(1.0, depth, out=np.zeros_like(depth), where=depth > 0)
    seed_near, seed_far, seed_near_ok, seed_far_ok = _seed_levels(
        disparity, options.radius_px, options.min_jump, options.steepness, SIDE_MARGIN
    )
    near, far = _band_levels(seed_near, seed_far, options.reach_px)
    near_ok, far_ok = _band_levels(seed_near_ok, seed_far_ok, options.reach_px)
    rows, cols = _band_pixels(depth, far)
    sides = np.full(depth.shape, -1, np.int8)
    targets = np.zeros((len(rows), 2), np.float32)
    unreached = np.zeros((len(rows), 2), np.bool_)
    _weigh_sides(
        depth,
        np.ascontiguousarray(rgb),
        near,
        far,
        near_ok,
        far_ok,
        rows,
        cols,
        options.radius_px + options.reach_px,
        options.colour_sigma,
        sides,
        targets,
        unreached,
    )
    handled = depth.copy()
    _move_to_sides(sides, targets, unreached, rows, cols, handled)
    return EdgeResult(handled, len(rows), int(np.count_nonzero(handled != depth)))


def _cut_at_depth_levels(depth: np.ndarray, min_jump: float) -> EdgeResult:
    """The depth-only rule (no photo; the baseline the photo rule is measured against): in
    a window of DEPTH_RULE_RADIUS around each pixel of depth (H, W, m, 0 = none) whose
    nearest and farthest depths differ by more than 1 + min_jump, a pixel inside that jump
    (SIDE_MARGIN from both) moves to the level nearer in log depth."""
    near = _window_extreme(np.where(depth > 0, depth, np.inf).astype(np.float32), True)
    far = _window_extreme(depth, False)
    inside = (far > (1 + min_jump) * near) & (depth > near * (1 + SIDE_MARGIN)) & (depth < far / (1 + SIDE_MARGIN))
    with np.errstate(divide="ignore", invalid="ignore"):
        toward_far = np.log(depth / near) / np.log(far / near)
    handled = np.where(inside, np.where(toward_far < 0.5, near, far), depth).astype(np.float32)
    return EdgeResult(handled, int(np.count_nonzero(inside)), int(np.count_nonzero(handled != depth)))


def _window_extreme(image: np.ndarray, minimum: bool) -> np.ndarray:
    """Min (or max) of (H, W) image over the square window of DEPTH_RULE_RADIUS around each pixel."""
    along_rows = _running_extreme(image, DEPTH_RULE_RADIUS, minimum)
    return _running_extreme(along_rows.T.copy(), DEPTH_RULE_RADIUS, minimum).T.copy()


@numba.njit(cache=True, parallel=True)
def _seed_levels(disparity, radius: int, min_jump: float, steepness: float, margin: float) -> tuple:
    """Per LEVEL_BLOCK-square tile of disparity (H, W, 1/m, 0 = none): the near and far
    level (m) of the smeared jump its middle pixel is the inside of (step 1 of the module
    docstring); inf and 0 for a tile with none.
    (ceil(H / LEVEL_BLOCK), ceil(W / LEVEL_BLOCK)) float32 each."""
    height, width = disparity.shape
    tile_rows, tile_cols = -(-height // LEVEL_BLOCK), -(-width // LEVEL_BLOCK)
    near_levels = np.full((tile_rows, tile_cols), np.inf, np.float32)
    far_levels = np.zeros((tile_rows, tile_cols), np.float32)
    near_reached = np.full((tile_rows, tile_cols), np.inf, np.float32)
    far_reached = np.zeros((tile_rows, tile_cols), np.float32)
    jump, inside_far, inside_near = 1 + min_jump, 1 + margin, 1 - margin
    # One pixel per tile is looked at (a smear is wider than a tile, and the band grows
    # from the tiles); each thread owns whole tile rows, so no two write one tile.
    for tile_row in numba.prange(tile_rows):
        row = min(max(tile_row * LEVEL_BLOCK + LEVEL_BLOCK // 2, 1), height - 2)
        for col in range(LEVEL_BLOCK // 2, width - 1, LEVEL_BLOCK):
            x = disparity[row, col]
            if x <= 0:
                continue
            for axis in range(2):
                step_row = 1 if axis == 1 else 0
                step_col = 1 - step_row
                for span in (max(radius // 2, 1), radius):
                    before_row, before_col = row - span * step_row, col - span * step_col
                    after_row, after_col = row + span * step_row, col + span * step_col
                    if before_row < 1 or before_col < 1 or after_row > height - 2 or after_col > width - 2:
                        continue
                    # In disparity the near side is the larger.
                    a, b = disparity[before_row, before_col], disparity[after_row, after_col]
                    far, near = min(a, b), max(a, b)
                    if far <= 0 or near <= jump * far or x <= inside_far * far or x >= inside_near * near:
                        continue
                    mean_slope = (near - far) / (2 * span)
                    if _gentle_slope(disparity, row, col, step_row, step_col) < 0.5 * mean_slope:
                        continue
                    ends = max(
                        _gentle_slope(disparity, before_row, before_col, step_row, step_col),
                        _gentle_slope(disparity, after_row, after_col, step_row, step_col),
                    )
                    if mean_slope > steepness * ends and _spread(
                        disparity, before_row, before_col, step_row, step_col, 2 * span
                    ):
                        tile_col = col // LEVEL_BLOCK
                        near, far, near_ok, far_ok = _jump_levels(
                            disparity, before_row, before_col, after_row, after_col, step_row, step_col, span
                        )
                        near_levels[tile_row, tile_col] = min(near_levels[tile_row, tile_col], 1 / near)
                        far_levels[tile_row, tile_col] = max(far_levels[tile_row, tile_col], 1 / far)
                        if near_ok:
                            near_reached[tile_row, tile_col] = min(near_reached[tile_row, tile_col], 1 / near)
                        if far_ok:
                            far_reached[tile_row, tile_col] = max(far_reached[tile_row, tile_col], 1 / far)
    return near_levels, far_levels, near_reached, far_reached


@numba.njit(cache=True)
def _jump_levels(
    disparity, before_row: int, before_col: int, after_row: int, after_col: int, step_row: int, step_col: int, span: int
) -> tuple:
    """The near and far disparity levels of the smeared jump between the span's ends
    (before_row, before_col) and (after_row, after_col) of disparity (H, W, 1/m), each
    followed outward (along +-(step_row, step_col)) to where it settles, and whether each
    is reached (step 1 of the module docstring)."""
    forward = disparity[after_row, after_col] > disparity[before_row, before_col]
    toward = 1 if forward else -1
    near_row, near_col = (after_row, after_col) if forward else (before_row, before_col)
    far_row, far_col = (before_row, before_col) if forward else (after_row, after_col)
    near_step_row, near_step_col = toward * step_row, toward * step_col
    near, near_row, near_col, near_steps = _walk_to_plateau(
        disparity, near_row, near_col, near_step_row, near_step_col, span, 1.0
    )
    far, far_row, far_col, far_steps = _walk_to_plateau(
        disparity, far_row, far_col, -near_step_row, -near_step_col, span, -1.0
    )
    check = max(PLATEAU_PX, (2 * span + near_steps + far_steps) // PLATEAU_SHARE)
    near_ok = _stays(disparity, near_row, near_col, near_step_row, near_step_col, check, 1.0)
    far_ok = _stays(disparity, far_row, far_col, -near_step_row, -near_step_col, check, -1.0)
    return near, far, near_ok, far_ok


@numba.njit(cache=True)
def _walk_to_plateau(disparity, row: int, col: int, step_row: int, step_col: int, limit: int, sign: float) -> tuple:
    """From (row, col), follow disparity along (step_row, step_col) while it keeps moving
    by more than FLAT_STEP a pixel in the direction `sign` (+1 toward near, -1 toward far),
    at most `limit` steps: the level the smear's side settles at, and the pixel (row, col,
    steps taken) where it does."""
    height, width = disparity.shape
    x = disparity[row, col]
    steps = 0
    for _ in range(limit):
        r, c = row + step_row, col + step_col
        if r < 0 or c < 0 or r >= height or c >= width or disparity[r, c] <= 0:
            break
        if sign * (disparity[r, c] - x) <= FLAT_STEP * x:
            break
        row, col, x = r, c, disparity[r, c]
        steps += 1
    return x, row, col, steps


@numba.njit(cache=True)
def _stays(disparity, row: int, col: int, step_row: int, step_col: int, length: int, sign: float) -> bool:
    """Whether disparity beyond (row, col) along (step_row, step_col) keeps from turning back
    (against `sign`) by more than PLATEAU_DROP for `length` pixels: the level is reached,
    not the peak of a structure narrower than the smear (whose depth is nowhere in the map)."""
    height, width = disparity.shape
    x = disparity[row, col]
    for k in range(1, length + 1):
        r, c = row + k * step_row, col + k * step_col
        if r < 0 or c < 0 or r >= height or c >= width or disparity[r, c] <= 0:
            return True
        if sign * (x - disparity[r, c]) > PLATEAU_DROP * x:
            return False
    return True


@numba.njit(cache=True)
def _spread(disparity, row: int, col: int, step_row: int, step_col: int, steps: int) -> bool:
    """Whether the disparity change over `steps` steps from (row, col) along (step_row,
    step_col) is spread over several pixels: no one step makes more than MAX_STEP_SHARE
    of it (a sharp jump beside a slanted surface is no smear), and every pixel has depth."""
    total = abs(disparity[row + steps * step_row, col + steps * step_col] - disparity[row, col])
    for k in range(steps):
        a = disparity[row + k * step_row, col + k * step_col]
        b = disparity[row + (k + 1) * step_row, col + (k + 1) * step_col]
        if a <= 0 or b <= 0 or abs(b - a) > MAX_STEP_SHARE * total:
            return False
    return True


@numba.njit(cache=True)
def _gentle_slope(disparity, row: int, col: int, step_row: int, step_col: int) -> float:
    """The smaller disparity step (1/m) from pixel (row, col) of disparity (H, W, 1/m) to
    its two neighbours along (step_row, step_col); inf where one of the three has none."""
    before = disparity[row - step_row, col - step_col]
    here = disparity[row, col]
    after = disparity[row + step_row, col + step_col]
    if before <= 0 or here <= 0 or after <= 0:
        return np.inf
    return min(abs(before - here), abs(after - here))


def _band_levels(seed_near: np.ndarray, seed_far: np.ndarray, reach: int) -> tuple[np.ndarray, np.ndarray]:
    """Per tile (seed_near, seed_far: _seed_levels' tiles), the nearest near and farthest
    far level of the seeds within `reach` pixels (widened to whole tiles): the band is the
    tiles with a far level (inf and 0 elsewhere)."""
    tile_reach = -(-reach // LEVEL_BLOCK)
    near = _running_extreme(_running_extreme(seed_near, tile_reach, True).T.copy(), tile_reach, True).T.copy()
    far = _running_extreme(_running_extreme(seed_far, tile_reach, False).T.copy(), tile_reach, False).T.copy()
    return near, far


@numba.njit(cache=True)
def _band_pixels(depth: np.ndarray, far: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns (int64) of the pixels of depth (H, W, m) with a depth in a band
    tile (far (tiles) > 0), in row-major order."""
    height, width = depth.shape
    count = 0
    for row in range(height):
        for col in range(width):
            if depth[row, col] > 0 and far[row // LEVEL_BLOCK, col // LEVEL_BLOCK] > 0:
                count += 1
    rows, cols = np.empty(count, np.int64), np.empty(count, np.int64)
    index = 0
    for row in range(height):
        for col in range(width):
            if depth[row, col] > 0 and far[row // LEVEL_BLOCK, col // LEVEL_BLOCK] > 0:
                rows[index], cols[index] = row, col
                index += 1
    return rows, cols


@numba.njit(cache=True)
def _running_extreme(image: np.ndarray, radius: int, minimum: bool) -> np.ndarray:
    """Min (or max) over [i - radius, i + radius] along the last axis of (R, N) image,
    clipped to the row: van Herk / Gil-Werman, three comparisons per value."""
    rows, length = image.shape
    size = 2 * radius + 1
    padded_length = (length + 2 * radius + size - 1) // size * size
    fill = np.inf if minimum else -np.inf
    out = np.empty_like(image)
    padded = np.empty(padded_length, image.dtype)
    prefix = np.empty(padded_length, image.dtype)
    suffix = np.empty(padded_length, image.dtype)
    for row in range(rows):
        padded[:] = fill
        padded[radius : radius + length] = image[row]
        for start in range(0, padded_length, size):
            prefix[start] = padded[start]
            for i in range(start + 1, start + size):
                a, b = prefix[i - 1], padded[i]
                prefix[i] = min(a, b) if minimum else max(a, b)
            end = start + size - 1
            suffix[end] = padded[end]
            for i in range(end - 1, start - 1, -1):
                a, b = suffix[i + 1], padded[i]
                suffix[i] = min(a, b) if minimum else max(a, b)
        for i in range(length):
            a, b = suffix[i], prefix[i + 2 * radius]
            out[row, i] = min(a, b) if minimum else max(a, b)
    return out


@numba.njit(cache=True, parallel=True)
def _weigh_sides(
    depth, rgb, near, far, near_ok, far_ok, rows, cols, radius: int, colour_sigma: float, sides, targets, unreached
) -> None:
    """For each band pixel (rows[i], cols[i]) of depth (H, W, m), by the colour of rgb
    (H, W, 3) and its tile's levels near, far (_band_levels' tiles, m): write into sides (H, W) the side it
    belongs to (0 near, 1 far; -1 stays where it is left alone) and into targets[i] (2,)
    the depth it takes on each side (0: it keeps its own) (step 3 of the module
    docstring)."""
    height, width = depth.shape
    offsets = np.round(np.linspace(-radius, radius, SAMPLES)).astype(np.int64)
    spatial = _spatial_weights(offsets, radius / 2.0)
    colour_scale = 1.0 / (2 * colour_sigma * colour_sigma)
    for index in numba.prange(len(rows)):
        row, col = rows[index], cols[index]
        d = depth[row, col]
        low, high = near[row // LEVEL_BLOCK, col // LEVEL_BLOCK], far[row // LEVEL_BLOCK, col // LEVEL_BLOCK]
        # A third surface nearer or farther than this jump is left as it is.
        if not low / (1 + LEVEL_SLACK) <= d <= high * (1 + LEVEL_SLACK):
            continue
        likeness, presence, best_weight = np.zeros(2), np.zeros(2), np.zeros(2)
        best_depth = np.array([low, high])
        lowest, highest = np.full(2, np.inf), np.zeros(2)
        for i in range(len(offsets)):
            sample_row = row + offsets[i]
            if sample_row < 0 or sample_row >= height:
                continue
            for j in range(len(offsets)):
                sample_col = col + offsets[j]
                if (
                    sample_col < 0
                    or sample_col >= width
                    or far[sample_row // LEVEL_BLOCK, sample_col // LEVEL_BLOCK] > 0
                ):
                    continue
                sample = depth[sample_row, sample_col]
                if low / (1 + LEVEL_SLACK) <= sample <= low * (1 + LEVEL_SLACK):
                    side = 0
                elif high / (1 + LEVEL_SLACK) <= sample <= high * (1 + LEVEL_SLACK):
                    side = 1
                else:
                    continue
                weight = spatial[i, j] * _likeness(rgb, row, col, sample_row, sample_col, colour_scale)
                likeness[side] += weight
                presence[side] += spatial[i, j]
                lowest[side] = min(lowest[side], sample)
                highest[side] = max(highest[side], sample)
                if weight > best_weight[side]:
                    best_weight[side], best_depth[side] = weight, sample
        sides[row, col] = _side(d, low, high, likeness, presence)
        tile_row, tile_col = row // LEVEL_BLOCK, col // LEVEL_BLOCK
        reached = (
            near_ok[tile_row, tile_col] <= low * (1 + SIDE_MARGIN),
            far_ok[tile_row, tile_col] >= high / (1 + SIDE_MARGIN),
        )
        for side in range(2):
            unreached[index, side] = not reached[side]
            if not lowest[side] * (1 - KEEP_MARGIN) <= d <= highest[side] * (1 + KEEP_MARGIN):
                targets[index, side] = best_depth[side]


@numba.njit(cache=True)
def _spatial_weights(offsets: np.ndarray, sigma: float) -> np.ndarray:
    """(N, N) Gaussian weights of the sample offsets (N,) (pixels) in both directions."""
    spatial = np.empty((len(offsets), len(offsets)))
    for i in range(len(offsets)):
        for j in range(len(offsets)):
            spatial[i, j] = np.exp(-(offsets[i] ** 2 + offsets[j] ** 2) / (2 * sigma**2))
    return spatial


@numba.njit(cache=True)
def _likeness(rgb, row: int, col: int, sample_row: int, sample_col: int, colour_scale: float) -> float:
    """How alike the colours of two pixels of rgb (H, W, 3) are, 1 (the same) to 0."""
    colour = 0.0
    for channel in range(3):
        difference = float(rgb[row, col, channel]) - float(rgb[sample_row, sample_col, channel])
        colour += difference * difference
    # A Cauchy-like kernel, squared: as selective as a Gaussian near 0, without an exp.
    alike = 1.0 / (1.0 + colour * colour_scale)
    return alike * alike


@numba.njit(cache=True)
def _move_to_sides(sides, targets, unreached, rows, cols, out) -> None:
    """Give each band pixel (rows[i], cols[i]) the depth of its side (sides (H, W), targets
    (N, 2), see _weigh_sides) in out (H, W, m), after a vote of its 8 neighbours: a pixel
    outvoted by more than VOTE_MARGIN goes to their side, so a textured patch of the photo
    does not break a surface into a salt-and-pepper of sides."""
    height, width = sides.shape
    for index in range(len(rows)):
        row, col = rows[index], cols[index]
        side = sides[row, col]
        if side < 0:
            continue
        same, other = 0, 0
        for dv in range(-1, 2):
            for du in range(-1, 2):
                r, c = row + dv, col + du
                if (dv or du) and 0 <= r < height and 0 <= c < width and sides[r, c] >= 0:
                    if sides[r, c] == side:
                        same += 1
                    else:
                        other += 1
        if other > same + VOTE_MARGIN:
            side = 1 - side
        if unreached[index, side]:
            side = 1 - side if not unreached[index, 1 - side] else 1
        if targets[index, side] > 0:
            out[row, col] = targets[index, side]


@numba.njit(cache=True)
def _side(d: float, near: float, far: float, likeness: np.ndarray, presence: np.ndarray) -> int:
    """0 (near) or 1 (far): the colour evidence of each side (the mean likeness of its
    confident pixels) times a weak prior from where depth d lies between near and far.
    With confident pixels on one side only, the pixel joins it if it looks like it and
    otherwise follows its depth (a thin pole, all band, is its own near side)."""
    toward_far = min(max(np.log(d / near) / np.log(far / near), 0.0), 1.0)
    by_depth = 0 if toward_far < 0.5 else 1
    if presence[0] == 0 or presence[1] == 0:
        present = 0 if presence[0] > 0 else 1
        if presence[present] > 0 and likeness[present] / presence[present] >= ALIKE:
            return present
        return by_depth
    evidence_near = likeness[0] / presence[0] * (1.25 - toward_far)
    evidence_far = likeness[1] / presence[1] * (0.25 + toward_far)
    if evidence_near == evidence_far:
        return by_depth
    return 0 if evidence_near > evidence_far else 1

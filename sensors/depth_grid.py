"""Ray casting into the grid mesh of a depth map without building the mesh.

The grid mesh of a depth map has one vertex per pixel (the pixel centre back-projected
to its depth) and two triangles per quad of four neighbouring pixels, minus those that
straddle a depth discontinuity; behind occluding edges a hidden background layer adds a
second pair of triangles in the same quads. Every such triangle projects into the image
exactly onto its half of its quad, so a ray can only hit the triangles of the quads its
own image (a straight segment) passes through, and it meets them in the order it passes
through them. `DepthGridScene` walks that segment quad by quad (a 2D grid traversal),
rejects quads whose depth range the ray is not in, and intersects the ray with the
remaining quads' triangles: the first hit is exactly the first hit in the grid mesh,
with no mesh and no BVH built. The cost grows with the length of each ray's image
segment, i.e. with how far the LiDAR sits from the camera, not with the image size.

The triangle rule (which triangles the mesh keeps) is the grid mesh's, passed in as two
parameters: a triangle is kept when its three corners have depth, its depth range stays
within max_depth_jump of its nearest corner, and it is seen within max_grazing_deg of its
normal; a hidden-layer triangle additionally needs its visible triangle kept.
"""

from __future__ import annotations

import numba
import numpy as np

from .raycast import Hits

# OpenMP first: thread-safe, and it spares the warning numba gives for an old TBB.
numba.config.THREADING_LAYER_PRIORITY = ["omp", "tbb", "workqueue"]

# Quads per side of the tiles whose depth ranges let a ray skip them whole.
TILE = 8
# Barycentric slack: a ray through a shared vertex or edge hits the triangles there
# whatever the rounding (pixel-centre rays from the camera pass exactly through vertices).
_EDGE = 1e-9
# An image segment shorter than this (pixels) is a point: a ray through the camera centre.
_POINT_PX = 1e-6
# A ray in the grid's depth range, slightly widened so that hits on a quad's nearest or
# farthest corner survive rounding.
_DEPTH_MARGIN = 1e-6


class DepthGridScene:
    """The grid mesh of a depth map, ready for ray queries: a ray target (targets.py).

    Args:
        depth_m: (H, W) camera-z depth (m) of the visible surface; 0, NaN or inf = no value.
        K: (3, 3) intrinsics (pixels) of that depth map.
        hidden_depth_m: (H, W) depth (m) of the hidden background layer, 0 where a pixel
            has none (None: no hidden layer).
        max_depth_jump: a triangle is dropped when (max - min) / min of its corner depths exceeds this.
        max_grazing_deg: a triangle is dropped when seen at more than this angle from its normal.
        T_scene_cam: (4, 4) pose of the camera in the frame rays are given in (None: the same frame).
    """

    def __init__(
        self,
        depth_m: np.ndarray,
        K: np.ndarray,
        hidden_depth_m: np.ndarray | None = None,
        max_depth_jump: float = 0.1,
        max_grazing_deg: float = 89.0,
        T_scene_cam: np.ndarray | None = None,
    ):
        if depth_m.ndim != 2:
            raise ValueError(f"depth_m must be (H, W), got shape {depth_m.shape}")
        if hidden_depth_m is not None and hidden_depth_m.shape != depth_m.shape:
            raise ValueError(f"hidden_depth_m must have depth_m's shape {depth_m.shape}, got {hidden_depth_m.shape}")
        if np.shape(K) != (3, 3):
            raise ValueError(f"K must be (3, 3), got shape {np.shape(K)}")
        if not (K[0][0] > 0 and K[1][1] > 0):
            raise ValueError(f"K must have positive focal lengths, got fx={K[0][0]}, fy={K[1][1]}")
        self.depth_m = _usable(depth_m)
        self.hidden_depth_m = np.zeros_like(self.depth_m) if hidden_depth_m is None else _usable(hidden_depth_m)
        self.K = np.asarray(K, dtype=np.float64)
        self.max_depth_jump = float(max_depth_jump)
        self.cos_grazing = float(np.cos(np.deg2rad(max_grazing_deg)))
        self.T_scene_cam = None if T_scene_cam is None else np.asarray(T_scene_cam, dtype=np.float64)
        self.tile_nearest_m, self.tile_farthest_m = _tile_depth_ranges(self.depth_m, self.hidden_depth_m)
        present = np.isfinite(self.tile_nearest_m)
        self.depth_range_m = (
            (float(self.tile_nearest_m[present].min()), float(self.tile_farthest_m[present].max()))
            if present.any()
            else None
        )

    def cast(self, origins: np.ndarray, directions: np.ndarray, threads: int = 0) -> Hits:
        """First hits along rays, as MeshScene.cast on the grid mesh gives them.

        Args:
            origins: (N, 3) or (3,) ray origins (m), one per ray or one for all.
            directions: (N, 3) unit directions.
            threads: threads to use; 0 uses every core.

        Returns:
            Hits; triangle_ids number the grid's triangles as
            ((layer * 2 + half) * (H - 1) + row) * (W - 1) + column, layer 1 = hidden.
        """
        directions = np.asarray(directions, dtype=np.float64).reshape(-1, 3)
        origins = np.broadcast_to(np.asarray(origins, dtype=np.float64), directions.shape)
        count = len(directions)
        t_hit = np.full(count, np.inf)
        normals = np.zeros((count, 3))
        triangle_ids = np.full(count, -1, dtype=np.int64)
        height, width = self.depth_m.shape
        if count == 0 or self.depth_range_m is None or height < 2 or width < 2:
            return Hits(t_hit, normals, triangle_ids)
        if self.T_scene_cam is not None:
            rotation_cam_scene = self.T_scene_cam[:3, :3].T
            origins = (origins - self.T_scene_cam[:3, 3]) @ rotation_cam_scene.T
            directions = directions @ rotation_cam_scene.T
        numba.set_num_threads(
            threads if 0 < threads <= numba.config.NUMBA_NUM_THREADS else numba.config.NUMBA_NUM_THREADS
        )
        fx, fy, cx, cy = self.K[0, 0], self.K[1, 1], self.K[0, 2], self.K[1, 2]
        camera = np.array([fx, fy, cx, cy, *self.depth_range_m, self.max_depth_jump, self.cos_grazing])
        _cast_rays(
            self.depth_m,
            self.hidden_depth_m,
            self.tile_nearest_m,
            self.tile_farthest_m,
            camera,
            np.ascontiguousarray(origins),
            np.ascontiguousarray(directions),
            t_hit,
            normals,
            triangle_ids,
        )
        if self.T_scene_cam is not None:
            normals = normals @ self.T_scene_cam[:3, :3].T
        return Hits(t_hit, normals, triangle_ids)


def hidden_background_layer(depth_m: np.ndarray, fill_px: int, max_depth_jump: float) -> np.ndarray:
    """The grid mesh's hidden background layer of a depth map (H, W, m, 0 = none): for a
    pixel within fill_px (square window) of one markedly deeper than itself (by more than
    max_depth_jump of its own depth), the deepest such depth; 0 elsewhere. (H, W) float32."""
    depth = _usable(depth_m)
    if fill_px <= 0 or depth.size == 0:
        return np.zeros_like(depth)
    deepest_nearby = _max_filter(depth, int(fill_px))
    hidden = (depth > 0) & (deepest_nearby > depth * (1.0 + max_depth_jump))
    return np.where(hidden, deepest_nearby, np.float32(0.0))


def load_kernels() -> None:
    """Load the compiled kernels now (compiling them on a machine's first use, a few
    seconds), so that the first cast does not pay for it: for benchmarks."""
    depth = np.ones((2, 2), np.float32)
    scene = DepthGridScene(depth, np.eye(3), hidden_background_layer(depth, 1, 0.1))
    scene.cast(np.zeros(3), np.array([[0.0, 0.0, 1.0]]))


@numba.njit(cache=True)
def _tile_depth_ranges(depth_m: np.ndarray, hidden_depth_m: np.ndarray) -> tuple:
    """Nearest and farthest depth (m) of both layers over the corners of each tile of
    TILE x TILE quads: (ceil((H - 1) / TILE), ceil((W - 1) / TILE)) each; inf and 0 for
    a tile with none."""
    height, width = depth_m.shape
    rows, cols = max(-(-(height - 1) // TILE), 0), max(-(-(width - 1) // TILE), 0)
    nearest = np.full((rows, cols), np.inf)
    farthest = np.zeros((rows, cols))
    for row in range(height):
        # A pixel is a corner of the quads before and after it, so of up to two tiles per axis.
        first_tile_row, last_tile_row = max(row - 1, 0) // TILE, min(row, height - 2) // TILE
        for col in range(width):
            first_tile_col, last_tile_col = max(col - 1, 0) // TILE, min(col, width - 2) // TILE
            for value in (depth_m[row, col], hidden_depth_m[row, col]):
                if value <= 0:
                    continue
                for tile_row in range(first_tile_row, last_tile_row + 1):
                    for tile_col in range(first_tile_col, last_tile_col + 1):
                        nearest[tile_row, tile_col] = min(nearest[tile_row, tile_col], value)
                        farthest[tile_row, tile_col] = max(farthest[tile_row, tile_col], value)
    return nearest, farthest


def _max_filter(image: np.ndarray, radius: int) -> np.ndarray:
    """Maximum of image (H, W, values >= 0) over the (2 radius + 1)-square window around
    each pixel, clipped to the image; separable: along rows, then along columns."""
    along_rows = _max_filter_rows(image, radius)
    return _max_filter_rows(np.ascontiguousarray(along_rows.T), radius).T


@numba.njit(cache=True)
def _max_filter_rows(image: np.ndarray, radius: int) -> np.ndarray:
    """out[r, i] = max(image[r, i - radius : i + radius + 1]) (clipped), values >= 0, by
    van Herk / Gil-Werman: a prefix and a suffix maximum per window-long block, so three
    comparisons a pixel whatever the radius."""
    window = 2 * radius + 1
    rows, length = image.shape
    padded_length = -(-(length + 2 * radius) // window) * window
    out = np.empty_like(image)
    # Zero padding is neutral: every value is >= 0.
    prefix = np.zeros(padded_length, dtype=image.dtype)
    suffix = np.zeros(padded_length, dtype=image.dtype)
    for row in range(rows):
        prefix[radius : radius + length] = image[row]
        suffix[radius : radius + length] = image[row]
        for start in range(0, padded_length, window):
            for i in range(start + 1, start + window):
                prefix[i] = max(prefix[i], prefix[i - 1])
            for i in range(start + window - 2, start - 1, -1):
                suffix[i] = max(suffix[i], suffix[i + 1])
        for i in range(length):
            out[row, i] = max(suffix[i], prefix[i + 2 * radius])
        # The padding must read as zero again for the next row.
        prefix[:] = 0
        suffix[:] = 0
    return out


def _usable(depth_m: np.ndarray) -> np.ndarray:
    """(H, W) float32 depth with 0 wherever the input has no usable value."""
    depth = np.asarray(depth_m, dtype=np.float32)
    return np.ascontiguousarray(np.where(np.isfinite(depth) & (depth > 0), depth, np.float32(0.0)))


@numba.njit(cache=True, inline="always")
def _point(depth: float, u: int, v: int, fx: float, fy: float, cx: float, cy: float) -> tuple:
    """Pixel (u, v) back-projected to `depth`: (x, y, z) in the camera frame (m)."""
    return (depth * ((u - cx) / fx), depth * ((v - cy) / fy), depth)


@numba.njit(cache=True)
def _kept(p0: tuple, p1: tuple, p2: tuple, max_depth_jump: float, cos_grazing: float) -> bool:
    """The grid mesh's rule for the triangle with apex p0 and corners p1, p2 (m): a depth
    range within max_depth_jump of the nearest corner, seen within the grazing limit."""
    nearest = min(p0[2], p1[2], p2[2])
    farthest = max(p0[2], p1[2], p2[2])
    if farthest - nearest > max_depth_jump * nearest:
        return False
    ax, ay, az = p1[0] - p0[0], p1[1] - p0[1], p1[2] - p0[2]
    bx, by, bz = p2[0] - p0[0], p2[1] - p0[1], p2[2] - p0[2]
    nx, ny, nz = ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx
    vx, vy, vz = p0[0] + p1[0] + p2[0], p0[1] + p1[1] + p2[1], p0[2] + p1[2] + p2[2]
    dot = nx * vx + ny * vy + nz * vz
    return dot * dot >= cos_grazing * cos_grazing * (nx * nx + ny * ny + nz * nz) * (vx * vx + vy * vy + vz * vz)


@numba.njit(cache=True)
def _intersect(origin: tuple, direction: tuple, p0: tuple, p1: tuple, p2: tuple) -> tuple:
    """Möller-Trumbore: (t, nx, ny, nz) of the ray's hit with triangle p0 p1 p2 (t = inf
    on a miss, t >= 0 only); n is the triangle's unit normal."""
    e1x, e1y, e1z = p1[0] - p0[0], p1[1] - p0[1], p1[2] - p0[2]
    e2x, e2y, e2z = p2[0] - p0[0], p2[1] - p0[1], p2[2] - p0[2]
    dx, dy, dz = direction
    px, py, pz = dy * e2z - dz * e2y, dz * e2x - dx * e2z, dx * e2y - dy * e2x
    determinant = e1x * px + e1y * py + e1z * pz
    if determinant == 0.0:
        return (np.inf, 0.0, 0.0, 0.0)
    inverse = 1.0 / determinant
    sx, sy, sz = origin[0] - p0[0], origin[1] - p0[1], origin[2] - p0[2]
    b1 = (sx * px + sy * py + sz * pz) * inverse
    if b1 < -_EDGE or b1 > 1.0 + _EDGE:
        return (np.inf, 0.0, 0.0, 0.0)
    qx, qy, qz = sy * e1z - sz * e1y, sz * e1x - sx * e1z, sx * e1y - sy * e1x
    b2 = (dx * qx + dy * qy + dz * qz) * inverse
    if b2 < -_EDGE or b1 + b2 > 1.0 + _EDGE:
        return (np.inf, 0.0, 0.0, 0.0)
    t = (e2x * qx + e2y * qy + e2z * qz) * inverse
    if t < 0.0:
        return (np.inf, 0.0, 0.0, 0.0)
    nx, ny, nz = e1y * e2z - e1z * e2y, e1z * e2x - e1x * e2z, e1x * e2y - e1y * e2x
    length = np.sqrt(nx * nx + ny * ny + nz * nz)
    return (t, nx / length, ny / length, nz / length)


@numba.njit(cache=True)
def _hit_in_quad(depth, hidden, camera, row, col, origin, direction, z_near, z_far) -> tuple:
    """(t, nx, ny, nz, triangle id) of the ray's nearest hit among the kept triangles of quad
    (row, col), both layers; t = inf when none. z_near, z_far: the ray's depth range (m)
    while its image is in this quad."""
    fx, fy, cx, cy, max_depth_jump, cos_grazing = camera[0], camera[1], camera[2], camera[3], camera[6], camera[7]
    layers = (
        (depth[row, col], depth[row, col + 1], depth[row + 1, col], depth[row + 1, col + 1]),
        (hidden[row, col], hidden[row, col + 1], hidden[row + 1, col], hidden[row + 1, col + 1]),
    )
    nearest, farthest = np.inf, 0.0
    for corners in layers:
        for z in corners:
            if z > 0:
                nearest, farthest = min(nearest, z), max(farthest, z)
    best = (np.inf, 0.0, 0.0, 0.0, -1)
    if farthest == 0 or z_far < nearest * (1 - _DEPTH_MARGIN) or z_near > farthest * (1 + _DEPTH_MARGIN):
        return best
    width = depth.shape[1]
    quads = (depth.shape[0] - 1) * (width - 1)
    for half in range(2):
        # Halves as the grid mesh has them: (top-left, bottom-left, top-right) and
        # (top-right, bottom-left, bottom-right); the rule takes the apex first.
        for layer in range(2):
            z_top_left, z_top_right, z_bottom_left, z_bottom_right = layers[layer]
            z_apex = z_top_left if half == 0 else z_bottom_right
            # A hidden triangle needs its visible one kept: stop at the first layer that fails.
            if z_apex <= 0 or z_top_right <= 0 or z_bottom_left <= 0:
                break
            p_apex = _point(z_apex, col + half, row + half, fx, fy, cx, cy)
            p_top_right = _point(z_top_right, col + 1, row, fx, fy, cx, cy)
            p_bottom_left = _point(z_bottom_left, col, row + 1, fx, fy, cx, cy)
            if not _kept(p_apex, p_top_right, p_bottom_left, max_depth_jump, cos_grazing):
                break
            if half == 0:
                hit = _intersect(origin, direction, p_apex, p_bottom_left, p_top_right)
            else:
                hit = _intersect(origin, direction, p_top_right, p_bottom_left, p_apex)
            if hit[0] < best[0]:
                best = (hit[0], hit[1], hit[2], hit[3], (layer * 2 + half) * quads + row * (width - 1) + col)
    return best


@numba.njit(cache=True)
def _segment_in_grid(camera, origin, direction, height, width) -> tuple:
    """(t_start, t_end) of the part of the ray (t >= 0) within the grid's depth range whose
    image lies in the quads' domain [0, W - 1] x [0, H - 1]; t_start > t_end when none."""
    fx, fy, cx, cy = camera[0], camera[1], camera[2], camera[3]
    z_low, z_high = camera[4] * (1 - _DEPTH_MARGIN), camera[5] * (1 + _DEPTH_MARGIN)
    t_start, t_end = 0.0, np.inf
    if direction[2] > 0:
        t_start, t_end = max(t_start, (z_low - origin[2]) / direction[2]), (z_high - origin[2]) / direction[2]
    elif direction[2] < 0:
        t_start, t_end = max(t_start, (z_high - origin[2]) / direction[2]), (z_low - origin[2]) / direction[2]
    elif origin[2] < z_low or origin[2] > z_high:
        return 1.0, 0.0
    # Inward normals n of the domain's four sides, n . point >= 0 inside; widened by
    # a hair so that rays along the border pixels stay in.
    edge = 1e-6
    sides = (
        (fx, 0.0, cx + edge),
        (-fx, 0.0, width - 1 - cx + edge),
        (0.0, fy, cy + edge),
        (0.0, -fy, height - 1 - cy + edge),
    )
    for normal in sides:
        offset = normal[0] * origin[0] + normal[1] * origin[1] + normal[2] * origin[2]
        rate = normal[0] * direction[0] + normal[1] * direction[1] + normal[2] * direction[2]
        if rate > 0:
            t_start = max(t_start, -offset / rate)
        elif rate < 0:
            t_end = min(t_end, -offset / rate)
        elif offset < 0:
            return 1.0, 0.0
    if not np.isfinite(t_end):
        return 1.0, 0.0
    return t_start, t_end


@numba.njit(cache=True)
def _image_of(camera, origin, direction, t) -> tuple:
    """(u, v, 1 / z) of the ray's point at t: pixel coordinates and inverse depth."""
    x, y, z = origin[0] + t * direction[0], origin[1] + t * direction[1], origin[2] + t * direction[2]
    return camera[0] * x / z + camera[2], camera[1] * y / z + camera[3], 1.0 / z


@numba.njit(cache=True)
def _first_hit(depth, hidden, tile_nearest, tile_farthest, camera, origin, direction) -> tuple:
    """(t, nx, ny, nz, triangle id) of the ray's first hit in the grid mesh: walk its image
    from near to far through the tiles, and through the quads of each tile whose depth
    range the ray is in (inverse depth is affine along the image); stop at the first hit."""
    height, width = depth.shape
    miss = (np.inf, 0.0, 0.0, 0.0, -1)
    t_start, t_end = _segment_in_grid(camera, origin, direction, height, width)
    if t_start > t_end:
        return miss
    u_start, v_start, w_start = _image_of(camera, origin, direction, t_start)
    u_end, v_end, w_end = _image_of(camera, origin, direction, t_end)
    if abs(u_end - u_start) < _POINT_PX and abs(v_end - v_start) < _POINT_PX:
        return _hit_at_point(depth, hidden, camera, origin, direction, u_start, v_start, w_start, w_end)
    segment = (u_start, v_start, w_start, u_end, v_end, w_end)
    tile_rows, tile_cols = tile_nearest.shape
    col = min(max(int(np.floor(u_start / TILE)), 0), tile_cols - 1)
    row = min(max(int(np.floor(v_start / TILE)), 0), tile_rows - 1)
    col_step, col_next, col_delta = _grid_steps(u_start / TILE, u_end / TILE, col)
    row_step, row_next, row_delta = _grid_steps(v_start / TILE, v_end / TILE, row)
    s_in = 0.0
    while True:
        s_out = min(col_next, row_next, 1.0)
        z_near, z_far = _depth_span(w_start, w_end, s_in, s_out)
        if z_far >= tile_nearest[row, col] * (1 - _DEPTH_MARGIN) and z_near <= tile_farthest[row, col] * (
            1 + _DEPTH_MARGIN
        ):
            hit = _first_hit_in_tile(depth, hidden, camera, origin, direction, segment, s_in, s_out, row, col)
            if hit[0] < np.inf:
                return hit
        if s_out >= 1.0:
            return miss
        if col_next < row_next:
            col, col_next = col + col_step, col_next + col_delta
        else:
            row, row_next = row + row_step, row_next + row_delta
        if col < 0 or col >= tile_cols or row < 0 or row >= tile_rows:
            return miss
        s_in = s_out


@numba.njit(cache=True)
def _hit_at_point(depth, hidden, camera, origin, direction, u, v, w_start, w_end) -> tuple:
    """The nearest hit of a ray whose image is the point (u, v) (it passes through the
    camera centre) among the quads that hold the point, up to four when it lies on their
    shared edges or corner; w_start, w_end: its inverse depth range (1/m)."""
    height, width = depth.shape
    best = (np.inf, 0.0, 0.0, 0.0, -1)
    z_near, z_far = _depth_span(w_start, w_end, 0.0, 1.0)
    first_col, last_col = max(int(np.floor(u - _POINT_PX)), 0), min(int(np.floor(u + _POINT_PX)), width - 2)
    first_row, last_row = max(int(np.floor(v - _POINT_PX)), 0), min(int(np.floor(v + _POINT_PX)), height - 2)
    for row in range(first_row, last_row + 1):
        for col in range(first_col, last_col + 1):
            hit = _hit_in_quad(depth, hidden, camera, row, col, origin, direction, z_near, z_far)
            if hit[0] < best[0]:
                best = hit
    return best


@numba.njit(cache=True)
def _first_hit_in_tile(depth, hidden, camera, origin, direction, segment, s_from, s_to, tile_row, tile_col) -> tuple:
    """The first hit among the quads of tile (tile_row, tile_col) that the ray's image
    segment (u, v, 1 / z at s = 0, then at s = 1) crosses between s_from and s_to."""
    height, width = depth.shape
    u_start, v_start, w_start, u_end, v_end, w_end = segment
    first_col, last_col = tile_col * TILE, min((tile_col + 1) * TILE, width - 1) - 1
    first_row, last_row = tile_row * TILE, min((tile_row + 1) * TILE, height - 1) - 1
    col = min(max(int(np.floor(u_start + s_from * (u_end - u_start))), first_col), last_col)
    row = min(max(int(np.floor(v_start + s_from * (v_end - v_start))), first_row), last_row)
    col_step, col_next, col_delta = _grid_steps(u_start, u_end, col)
    row_step, row_next, row_delta = _grid_steps(v_start, v_end, row)
    s_in = s_from
    while True:
        s_out = min(col_next, row_next, s_to)
        z_near, z_far = _depth_span(w_start, w_end, s_in, s_out)
        hit = _hit_in_quad(depth, hidden, camera, row, col, origin, direction, z_near, z_far)
        if hit[0] < np.inf or s_out >= s_to:
            return hit
        if col_next < row_next:
            col, col_next = col + col_step, col_next + col_delta
        else:
            row, row_next = row + row_step, row_next + row_delta
        if col < first_col or col > last_col or row < first_row or row > last_row:
            return hit
        s_in = s_out


@numba.njit(cache=True, inline="always")
def _depth_span(w_start: float, w_end: float, s_in: float, s_out: float) -> tuple:
    """(nearest, farthest) depth (m) of the ray between s_in and s_out along its image,
    from its inverse depth w_start at s = 0 and w_end at s = 1 (affine in s)."""
    w_in, w_out = w_start + s_in * (w_end - w_start), w_start + s_out * (w_end - w_start)
    return 1.0 / max(w_in, w_out), 1.0 / min(w_in, w_out)


@numba.njit(cache=True)
def _grid_steps(start: float, end: float, cell: int) -> tuple:
    """For a segment from coordinate start to end (s from 0 to 1) beginning in unit cell
    `cell`: (step, s at the next cell border, s per cell)."""
    span = end - start
    if span > 0:
        return 1, (cell + 1 - start) / span, 1.0 / span
    if span < 0:
        return -1, (cell - start) / span, -1.0 / span
    return 0, np.inf, np.inf


@numba.njit(cache=True, parallel=True)
def _cast_rays(
    depth, hidden, tile_nearest, tile_farthest, camera, origins, directions, t_hit, normals, triangle_ids
) -> None:
    """Fill t_hit (N,), normals (N, 3) and triangle_ids (N,) with each ray's first hit."""
    for ray in numba.prange(len(origins)):
        origin = (origins[ray, 0], origins[ray, 1], origins[ray, 2])
        direction = (directions[ray, 0], directions[ray, 1], directions[ray, 2])
        t, nx, ny, nz, triangle = _first_hit(depth, hidden, tile_nearest, tile_farthest, camera, origin, direction)
        if t < np.inf:
            t_hit[ray], triangle_ids[ray] = t, triangle
            normals[ray, 0], normals[ray, 1], normals[ray, 2] = nx, ny, nz

"""Triangle meshes from a depth map, by one of three methods.

grid (default): one vertex per pixel (or per `stride` pixels), two triangles per
pixel quad. Triangles that straddle a depth discontinuity are dropped, so no
"rubber sheet" joins a foreground object to the background. Behind each
occluding edge the background is extended for a few pixels as a hidden layer:
the camera cannot see it, but a LiDAR mounted elsewhere can, which gives the
see-through points that real KITTI scans have behind object edges.

decimated: the grid mesh with its visible layer simplified by quadric edge
collapse (pymeshlab), boundaries preserved, so flat road and walls cost few
triangles while cut edges stay where they were. The hidden layer is kept as it
is: it is a thin band of a few pixels, and decimating it would move its cut
edges.

poisson: screened Poisson reconstruction (pymeshlab) of the back-projected
pixels with normals from the depth gradients, then trimmed to faces near the
input points, so it invents no surface in the sky or across depth jumps. It has
no hidden layer.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import open3d as o3d
import pymeshlab
from simlidar.sensors.camera import backproject

from ..errors import UnusableDepth

METHODS = ("grid", "decimated", "poisson")
# A depth map with fewer of its pixels than this within the sensor's range would give
# an empty or nearly empty sample: it is recorded as unusable instead.
MIN_USABLE_DEPTH_FRACTION = 0.01


def check_depth_usable(depth_m: np.ndarray, min_range_m: float, max_range_m: float) -> None:
    """depth_m: (H, W) metres, 0 = no value. Raises UnusableDepth unless at least
    MIN_USABLE_DEPTH_FRACTION of the pixels hold a depth within [min_range_m, max_range_m]."""
    if depth_m.ndim != 2:
        raise ValueError(f"depth_m must be (H, W), got shape {depth_m.shape}")
    usable = int(np.count_nonzero((depth_m > 0) & (depth_m >= min_range_m) & (depth_m <= max_range_m)))
    needed = max(1, int(np.ceil(MIN_USABLE_DEPTH_FRACTION * depth_m.size)))
    if usable < needed:
        raise UnusableDepth(
            f"depth has {usable} valid pixels within the sensor's {min_range_m:g}-{max_range_m:g} m range of "
            f"{depth_m.size}; at least {needed} ({MIN_USABLE_DEPTH_FRACTION:.0%}) are needed"
        )


@dataclass(frozen=True)
class MeshOptions:
    """How a depth map becomes a mesh.

    max_depth_jump: drop a triangle whose (max - min) / min vertex depth exceeds this.
    max_grazing_deg: drop a triangle seen at more than this angle from its normal.
    occlusion_fill_px: how far (pixels) the background extends behind occluding edges;
        0 disables the hidden layer.
    method: one of METHODS.
    stride: use every stride-th pixel in both directions (grid vertices, and the
        input of decimated and poisson); the mesh then may stop up to stride - 1
        pixels short of the right and bottom borders.
    target_faces: decimated: the visible layer's face count after decimation; a
        value below 1 is a fraction of the grid's visible faces.
    poisson_depth: poisson: octree depth (resolution about scene size / 2^depth).
    poisson_trim_px: poisson: drop faces with a vertex further from the nearest
        input point than this many pixel footprints (that point's depth / fx).
    """

    max_depth_jump: float = 0.1
    max_grazing_deg: float = 89.0
    occlusion_fill_px: int = 16
    method: str = "grid"
    stride: int = 1
    target_faces: float = 0.1
    poisson_depth: int = 9
    poisson_trim_px: float = 3.0


@dataclass
class Mesh:
    """vertices_cam: (V, 3) float32 metres, camera frame; triangles: (T, 3) int32.

    The first visible_triangles triangles are the camera-visible surface, the
    hidden_triangles after them the hidden background layer."""

    vertices_cam: np.ndarray
    triangles: np.ndarray
    visible_triangles: int
    hidden_triangles: int
    method: str = "grid"

    def summary(self) -> dict:
        """The record of this mesh in a sample's json."""
        return {
            "method": self.method,
            "faces": len(self.triangles),
            "visible_triangles": self.visible_triangles,
            "hidden_triangles": self.hidden_triangles,
        }


def depth_to_mesh(depth_m: np.ndarray, K: np.ndarray, options: MeshOptions = MeshOptions()) -> Mesh:
    """Mesh an (H, W) camera-z depth map (metres; 0, NaN or inf = no value) with
    intrinsics K (3, 3) by options.method. Returns a mesh in the camera frame; an
    all-invalid depth map gives an empty mesh."""
    if options.stride > 1:
        depth_m, K = _subsample(depth_m, K, options.stride)
        # The hidden layer's reach stays the same in full-resolution pixels.
        options = replace(options, occlusion_fill_px=-(-options.occlusion_fill_px // options.stride))
    if options.method == "poisson":
        return _poisson_mesh(depth_m, K, options)
    grid = _grid_mesh(depth_m, K, options)
    if options.method == "decimated":
        return _decimate_visible(grid, options.target_faces)
    return grid


def _subsample(depth_m: np.ndarray, K: np.ndarray, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Every stride-th pixel of depth (H, W) and the intrinsics (3, 3) of that
    coarser image: pixel (u, v) of it is pixel (stride u, stride v) of the original,
    so back-projection gives the very same points."""
    scale = np.diag([1.0 / stride, 1.0 / stride, 1.0])
    return depth_m[::stride, ::stride], scale @ K


def _grid_mesh(depth_m: np.ndarray, K: np.ndarray, options: MeshOptions) -> Mesh:
    """The grid mesh of depth (H, W): vertex v * W + u is pixel (u, v) back-projected;
    quad (u, v) is split into the triangles (tl, bl, tr) and (tr, bl, br); the
    hidden layer's vertices follow at H * W + v * W + u."""
    height, width = depth_m.shape
    valid = np.isfinite(depth_m) & (depth_m > 0)
    depth_visible = np.where(valid, depth_m, 0.0).astype(np.float32)
    points_visible = backproject(depth_visible, K).astype(np.float32)
    keep_visible = _continuous_triangles(points_visible, valid, options)

    depth_hidden, hidden = _background_behind_edges(depth_visible, valid, options)
    keep_hidden = keep_visible & _quad_corners_all(hidden)
    if keep_hidden.any():
        points_hidden = backproject(depth_hidden, K).astype(np.float32)
        # Few quads have a hidden layer: test only those instead of the whole grid.
        which, rows, cols = np.nonzero(keep_hidden)
        apex = np.where((which == 0)[:, None], points_hidden[rows, cols], points_hidden[rows + 1, cols + 1])
        keep_hidden[which, rows, cols] = _continuous(
            apex, points_hidden[rows, cols + 1], points_hidden[rows + 1, cols], options
        )
        vertices = np.concatenate([points_visible.reshape(-1, 3), points_hidden.reshape(-1, 3)])
    else:
        vertices = points_visible.reshape(-1, 3)

    visible_triangles = _kept_triangles(keep_visible, width)
    hidden_triangles = _kept_triangles(keep_hidden, width) + height * width
    return Mesh(
        vertices_cam=vertices,
        triangles=np.concatenate([visible_triangles, hidden_triangles]),
        visible_triangles=len(visible_triangles),
        hidden_triangles=len(hidden_triangles),
    )


def _corners(grid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Views of the top-left, top-right, bottom-left and bottom-right corner of every quad."""
    return grid[:-1, :-1], grid[:-1, 1:], grid[1:, :-1], grid[1:, 1:]


def _quad_corners_all(mask: np.ndarray) -> np.ndarray:
    """(2, H - 1, W - 1) bool: all three corners of each triangle set in `mask` (H, W)."""
    top_left, top_right, bottom_left, bottom_right = _corners(mask)
    shared = top_right & bottom_left
    return np.stack([shared & top_left, shared & bottom_right])


def _continuous_triangles(points_cam: np.ndarray, valid: np.ndarray, options: MeshOptions) -> np.ndarray:
    """(2, H - 1, W - 1) bool: triangles whose corners are valid and that cross no
    discontinuity. points_cam: (H, W, 3) back-projected pixels (m); valid: (H, W)."""
    keep = _quad_corners_all(valid)
    top_left, top_right, bottom_left, bottom_right = _corners(points_cam)
    for index, apex in enumerate((top_left, bottom_right)):
        keep[index] &= _continuous(apex, top_right, bottom_left, options)
    return keep


def _continuous(apex: np.ndarray, corner_a: np.ndarray, corner_b: np.ndarray, options: MeshOptions) -> np.ndarray:
    """(...) bool for triangles given by their corners (..., 3) in metres: the depth
    range stays within max_depth_jump of the nearest corner and the surface is seen
    within max_grazing_deg of its normal."""
    z_apex, z_a, z_b = apex[..., 2], corner_a[..., 2], corner_b[..., 2]
    nearest = np.minimum(np.minimum(z_apex, z_a), z_b)
    farthest = np.maximum(np.maximum(z_apex, z_a), z_b)
    ok = (farthest - nearest) <= np.float32(options.max_depth_jump) * nearest
    ax, ay, az = (corner_a[..., i] - apex[..., i] for i in range(3))
    bx, by, bz = (corner_b[..., i] - apex[..., i] for i in range(3))
    nx, ny, nz = ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx
    vx, vy, vz = (apex[..., i] + corner_a[..., i] + corner_b[..., i] for i in range(3))
    dot = nx * vx + ny * vy + nz * vz
    cos_limit = np.float32(np.cos(np.deg2rad(options.max_grazing_deg)))
    ok &= dot * dot >= cos_limit * cos_limit * (nx * nx + ny * ny + nz * nz) * (vx * vx + vy * vy + vz * vz)
    return ok


def _kept_triangles(keep: np.ndarray, width: int) -> np.ndarray:
    """(T, 3) int32 vertex indices of the triangles set in keep (2, H - 1, W - 1)."""
    first_rows, first_cols = np.nonzero(keep[0])
    second_rows, second_cols = np.nonzero(keep[1])
    first_top_left = first_rows * width + first_cols
    second_top_left = second_rows * width + second_cols
    first = np.stack([first_top_left, first_top_left + width, first_top_left + 1], axis=1)
    second = np.stack([second_top_left + 1, second_top_left + width, second_top_left + width + 1], axis=1)
    return np.concatenate([first, second]).astype(np.int32)


def _background_behind_edges(
    depth_visible: np.ndarray, valid: np.ndarray, options: MeshOptions
) -> tuple[np.ndarray, np.ndarray]:
    """The hidden background layer: for foreground pixels within `occlusion_fill_px`
    of a markedly deeper neighbour, that neighbour's depth (constant extension).

    Returns (H, W) depth of the layer and the (H, W) bool mask of pixels that have one.
    """
    if options.occlusion_fill_px <= 0:
        return depth_visible, np.zeros_like(valid)
    deepest_nearby = _max_filter(depth_visible, options.occlusion_fill_px)
    hidden = valid & (deepest_nearby > depth_visible * (1.0 + options.max_depth_jump))
    return np.where(hidden, deepest_nearby, depth_visible), hidden


def _max_filter(image: np.ndarray, radius: int) -> np.ndarray:
    """Maximum over a (2r + 1) x (2r + 1) window, computed separably."""
    result = image.copy()
    for axis in (0, 1):
        source = result.copy()
        length = image.shape[axis]
        for shift in range(1, min(radius, length - 1) + 1):
            ahead = [slice(None)] * 2
            behind = [slice(None)] * 2
            ahead[axis], behind[axis] = slice(shift, None), slice(None, -shift)
            np.maximum(result[tuple(ahead)], source[tuple(behind)], out=result[tuple(ahead)])
            np.maximum(result[tuple(behind)], source[tuple(ahead)], out=result[tuple(behind)])
    return result


def _empty_mesh(method: str) -> Mesh:
    return Mesh(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int32), 0, 0, method)


def _compact(vertices: np.ndarray, triangles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Only the vertices (V', 3) that triangles (T, 3) use, and the triangles re-indexed into them."""
    used, inverse = np.unique(triangles, return_inverse=True)
    return vertices[used], inverse.reshape(-1, 3).astype(np.int32)


def _decimate_visible(grid: Mesh, target_faces: float) -> Mesh:
    """grid with its visible layer decimated to target_faces faces (a fraction of
    them when below 1) by quadric edge collapse; the hidden layer is kept as is."""
    visible = grid.triangles[: grid.visible_triangles]
    target = round(target_faces * len(visible)) if target_faces < 1 else int(target_faces)
    if len(visible) == 0 or target >= len(visible):
        return replace(grid, method="decimated")
    vertices, triangles = _compact(grid.vertices_cam, visible)
    mesh_set = pymeshlab.MeshSet()
    mesh_set.add_mesh(pymeshlab.Mesh(vertex_matrix=vertices.astype(np.float64), face_matrix=triangles))
    # Boundaries are the cut depth edges and the image border: keeping them in place
    # keeps object outlines sharp and the hidden layer attached; preservenormal stops
    # collapses that would fold a face over, planarquadric keeps flat regions well shaped.
    mesh_set.meshing_decimation_quadric_edge_collapse(
        targetfacenum=target, preserveboundary=True, boundaryweight=10.0, preservenormal=True, planarquadric=True
    )
    decimated = mesh_set.current_mesh()
    decimated_vertices = decimated.vertex_matrix().astype(np.float32)
    decimated_triangles = decimated.face_matrix().astype(np.int32)
    hidden = grid.triangles[grid.visible_triangles :]
    if len(hidden):
        hidden_vertices, hidden_triangles = _compact(grid.vertices_cam, hidden)
        decimated_vertices = np.concatenate([decimated_vertices, hidden_vertices])
        decimated_triangles = np.concatenate([decimated_triangles, hidden_triangles + len(decimated.vertex_matrix())])
    return Mesh(decimated_vertices, decimated_triangles, decimated.face_number(), len(hidden), "decimated")


def _depth_normals(points_cam: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(H, W, 3) unit normals of the surface through points_cam (H, W, 3, metres),
    facing the camera. Along each image axis the one-sided difference with the
    smaller depth change is used, so normals next to a depth jump follow their own
    side instead of the jump; where a pixel has no valid neighbour on an axis the
    normal falls back to the viewing direction."""
    grid = np.where(valid[..., None], points_cam, np.nan)
    tangents = []
    for axis in (1, 0):
        forward = np.diff(grid, axis=axis, append=np.nan)
        backward = np.diff(grid, axis=axis, prepend=np.nan)
        forward_dz = np.where(np.isnan(forward[..., 2]), np.inf, np.abs(forward[..., 2]))
        backward_dz = np.where(np.isnan(backward[..., 2]), np.inf, np.abs(backward[..., 2]))
        tangents.append(np.where((forward_dz <= backward_dz)[..., None], forward, backward))
    normals = np.cross(tangents[0], tangents[1])
    length = np.linalg.norm(normals, axis=-1, keepdims=True)
    toward_camera = -points_cam / np.maximum(np.linalg.norm(points_cam, axis=-1, keepdims=True), 1e-12)
    usable = np.isfinite(length) & (length > 0)
    normals = np.where(usable, normals / np.where(usable, length, 1.0), toward_camera)
    facing = np.sum(normals * points_cam, axis=-1, keepdims=True) <= 0
    return np.where(facing, normals, -normals)


def _poisson_mesh(depth_m: np.ndarray, K: np.ndarray, options: MeshOptions) -> Mesh:
    """Screened Poisson surface of depth (H, W)'s valid pixels, trimmed to within
    options.poisson_trim_px pixel footprints of them."""
    valid = np.isfinite(depth_m) & (depth_m > 0)
    # Poisson needs a few points to fit anything at all.
    if valid.sum() < 4:
        return _empty_mesh("poisson")
    points_cam = backproject(np.where(valid, depth_m, 0.0), K)
    points = points_cam[valid]
    normals = _depth_normals(points_cam, valid)[valid]
    mesh_set = pymeshlab.MeshSet()
    mesh_set.add_mesh(pymeshlab.Mesh(vertex_matrix=points, v_normals_matrix=normals))
    # One thread: the result must not depend on the machine (byte-identical runs).
    mesh_set.generate_surface_reconstruction_screened_poisson(depth=options.poisson_depth, threads=1)
    surface = mesh_set.current_mesh()
    vertices = surface.vertex_matrix().astype(np.float32)
    triangles = surface.face_matrix().astype(np.int32)
    near = _near_input(vertices, points.astype(np.float32), options.poisson_trim_px / K[0, 0])
    triangles = triangles[near[triangles].all(axis=1)]
    if len(triangles) == 0:
        return _empty_mesh("poisson")
    vertices, triangles = _compact(vertices, triangles)
    return Mesh(vertices, triangles, len(triangles), 0, "poisson")


def _near_input(vertices: np.ndarray, points: np.ndarray, radians: float) -> np.ndarray:
    """(V,) bool: vertices (V, 3) within radians * depth of their nearest input
    point (N, 3), i.e. within a fixed number of that point's pixel footprints."""
    search = o3d.core.nns.NearestNeighborSearch(o3d.core.Tensor(points))
    search.knn_index()
    nearest, distance_squared = search.knn_search(o3d.core.Tensor(vertices), 1)
    limit = radians * points[nearest.numpy()[:, 0], 2]
    return distance_squared.numpy()[:, 0] <= limit * limit

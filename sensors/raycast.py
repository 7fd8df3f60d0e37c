"""Ray-casting into a triangle mesh with Open3D's RaycastingScene (Embree BVH)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import open3d as o3d

from .camera import pixel_ray_directions

if TYPE_CHECKING:
    from .targets import RayTarget


@dataclass
class Hits:
    """First hits of N rays: t (N,) float64 distance in metres (inf on a miss),
    normals (N, 3) float64 unit triangle normals, triangle_ids (N,) int64 (-1 on a miss)."""

    t: np.ndarray
    normals: np.ndarray
    triangle_ids: np.ndarray


class MeshScene:
    """A triangle mesh ready for ray queries, a ray target (targets.py); build once, cast many times.

    Args:
        vertices: (V, 3) vertex positions (m), any frame; rays use the same frame.
        triangles: (T, 3) vertex indices. An empty mesh is allowed: every ray misses.
    """

    def __init__(self, vertices: np.ndarray, triangles: np.ndarray):
        self.triangle_count = int(len(triangles))
        self._scene = None
        if self.triangle_count:
            self._scene = o3d.t.geometry.RaycastingScene()
            self._scene.add_triangles(
                o3d.core.Tensor(np.ascontiguousarray(vertices, dtype=np.float32)),
                o3d.core.Tensor(np.ascontiguousarray(triangles, dtype=np.uint32)),
            )

    def cast(self, origins: np.ndarray, directions: np.ndarray, threads: int = 0) -> Hits:
        """First hits along rays.

        Args:
            origins: (N, 3) or (3,) ray origins (m).
            directions: (N, 3) unit directions.
            threads: Embree threads; 0 lets Open3D use every core.
        """
        count = len(directions)
        if self._scene is None or count == 0:
            return Hits(np.full(count, np.inf), np.zeros((count, 3)), np.full(count, -1, dtype=np.int64))
        rays = np.empty((count, 6), dtype=np.float32)
        rays[:, :3] = origins
        rays[:, 3:] = directions
        answer = self._scene.cast_rays(o3d.core.Tensor(rays), nthreads=threads)
        t_hit = answer["t_hit"].numpy().astype(np.float64)
        triangle_ids = answer["primitive_ids"].numpy().astype(np.int64)
        triangle_ids[~np.isfinite(t_hit)] = -1
        return Hits(t_hit, answer["primitive_normals"].numpy().astype(np.float64), triangle_ids)


def render_depth(target: RayTarget, K: np.ndarray, width: int, height: int) -> np.ndarray:
    """The (H, W) float32 camera-z depth (m) a pinhole camera K (3, 3) at the origin of the
    target's frame sees through each pixel centre; 0 where nothing is hit."""
    directions_cam = pixel_ray_directions(K, width, height)
    t_hit = target.cast(np.zeros(3), directions_cam).t
    depth = np.where(np.isfinite(t_hit), t_hit * directions_cam[:, 2], 0.0)
    return depth.reshape(height, width).astype(np.float32)

"""Ray targets: what a LiDAR frame is cast into. A target is anything with

    cast(origins (N, 3) or (3,) m, directions (N, 3) unit, threads=0) -> Hits

giving each ray's first hit in the target's frame: an Open3D triangle mesh
(`raycast.MeshScene`), the grid mesh of a depth map cast in place without being built
(`depth_grid.DepthGridScene`), or the union of several (`TargetUnion`, one per camera
of a rig). Scans, rigs and the fidelity command speak of targets, whatever a target is
made of."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from .raycast import Hits


class RayTarget(Protocol):
    def cast(self, origins: np.ndarray, directions: np.ndarray, threads: int = 0) -> Hits:
        """First hits along rays: t (N,) m (inf on a miss), unit normals (N, 3), ids (N,) (-1 on a miss)."""
        ...


class TargetUnion:
    """Several targets in one frame cast as one: each ray's nearest hit among them (the first
    hit in the union of their surfaces). A rig's cameras, one target each."""

    def __init__(self, targets: list[RayTarget]):
        self.targets = list(targets)

    def cast(self, origins: np.ndarray, directions: np.ndarray, threads: int = 0) -> Hits:
        """First hits along rays (see RayTarget); triangle_ids are the hit target's own."""
        count = len(directions)
        best = Hits(np.full(count, np.inf), np.zeros((count, 3)), np.full(count, -1, dtype=np.int64))
        for target in self.targets:
            hits = target.cast(origins, directions, threads)
            nearer = hits.t < best.t
            best.t[nearer] = hits.t[nearer]
            best.normals[nearer] = hits.normals[nearer]
            best.triangle_ids[nearer] = hits.triangle_ids[nearer]
        return best

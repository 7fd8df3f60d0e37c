"""Render the bundled demo scenes into examples/scenes/: RGB (JPEG), metric depth
(16-bit PNG, m x 256) and intrinsics (JSON) for each, with simlidar's own ray-caster.

Each scene is a handful of boxes and cylinders at known distances in the camera
frame (OpenCV: x right, y down, z forward; the ground is at y = camera height).
Run from the repository root:  python scripts/render_demo_scenes.py
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import open3d as o3d
from PIL import Image
from simlidar.pipeline.schema import encode_depth_png
from simlidar.sensors.camera import pixel_ray_directions
from simlidar.sensors.raycast import MeshScene
from simlidar.teachers.intrinsics import intrinsics_from_hfov, intrinsics_matrix

OUT_DIR = Path(__file__).resolve().parent.parent / "examples" / "scenes"
SUN_DIRECTION = np.array([0.4, -0.8, -0.45]) / np.linalg.norm([0.4, -0.8, -0.45])


@dataclass
class Part:
    """A coloured solid: texture is one of 'asphalt', 'tiles', 'facade', 'plain', 'checker'."""

    mesh: o3d.geometry.TriangleMesh
    colour: tuple[float, float, float]
    texture: str = "plain"


def box(x: tuple[float, float], y: tuple[float, float], z: tuple[float, float], colour, texture="plain") -> Part:
    """An axis-aligned box spanning [x0, x1] x [y0, y1] x [z0, z1] metres (camera frame)."""
    mesh = o3d.geometry.TriangleMesh.create_box(x[1] - x[0], y[1] - y[0], z[1] - z[0])
    mesh.translate((x[0], y[0], z[0]))
    return Part(mesh, colour, texture)


def pole(x: float, z: float, ground_y: float, height: float, radius: float, colour) -> Part:
    """A vertical cylinder standing on the ground at (x, z)."""
    mesh = o3d.geometry.TriangleMesh.create_cylinder(radius=radius, height=height, resolution=24)
    mesh.rotate(o3d.geometry.get_rotation_matrix_from_xyz((np.pi / 2, 0.0, 0.0)), center=(0, 0, 0))
    mesh.translate((x, ground_y - height / 2, z))
    return Part(mesh, colour, "plain")


def street(camera_height: float = 1.65) -> list[Part]:
    """A KITTI-like street: road, kerbs, facades, parked cars, lamp posts, open far end."""
    g = camera_height
    parts = [
        box((-4.0, 4.0), (g, g + 0.2), (0.0, 250.0), (0.32, 0.32, 0.34), "asphalt"),
        box((-8.0, -4.0), (g - 0.15, g + 0.2), (0.0, 250.0), (0.62, 0.6, 0.56), "tiles"),
        box((4.0, 8.0), (g - 0.15, g + 0.2), (0.0, 250.0), (0.62, 0.6, 0.56), "tiles"),
        box((-9.0, -8.0), (g - 12.0, g), (4.0, 38.0), (0.7, 0.45, 0.35), "facade"),
        box((-9.0, -8.0), (g - 9.0, g), (44.0, 75.0), (0.75, 0.7, 0.55), "facade"),
        box((8.0, 9.0), (g - 15.0, g), (6.0, 30.0), (0.55, 0.6, 0.7), "facade"),
        box((8.0, 9.0), (g - 7.0, g), (36.0, 52.0), (0.8, 0.78, 0.72), "facade"),
    ]
    cars = [
        (-2.7, 8.0, (0.75, 0.1, 0.1)),
        (2.6, 15.0, (0.15, 0.25, 0.7)),
        (-2.6, 24.0, (0.85, 0.85, 0.85)),
        (2.7, 41.0, (0.1, 0.1, 0.1)),
        (-2.8, 58.0, (0.6, 0.6, 0.2)),
    ]
    for x, z, colour in cars:
        parts.append(box((x - 0.9, x + 0.9), (g - 0.75, g - 0.2), (z, z + 4.3), colour, "plain"))
        parts.append(box((x - 0.8, x + 0.8), (g - 1.45, g - 0.75), (z + 1.0, z + 3.2), colour, "plain"))
    for z in (11.0, 23.0, 35.0, 47.0, 59.0):
        parts.append(pole(4.6, z, g - 0.15, 6.0, 0.09, (0.4, 0.42, 0.45)))
        parts.append(pole(-4.6, z + 6.0, g - 0.15, 6.0, 0.09, (0.4, 0.42, 0.45)))
    return parts


def yard(camera_height: float = 1.5) -> list[Part]:
    """Boxes and a pole on flat ground in front of a wall 10 m away."""
    g = camera_height
    return [
        box((-30.0, 30.0), (g, g + 0.2), (0.0, 60.0), (0.45, 0.5, 0.35), "tiles"),
        box((-12.0, 12.0), (g - 4.0, g), (10.0, 10.4), (0.75, 0.72, 0.68), "checker"),
        box((-2.0, -1.0), (g - 1.0, g), (4.0, 5.0), (0.8, 0.5, 0.2), "plain"),
        box((1.0, 2.5), (g - 1.5, g), (6.0, 7.5), (0.3, 0.55, 0.75), "plain"),
        pole(0.3, 7.0, g, 3.0, 0.12, (0.5, 0.5, 0.5)),
    ]


def corridor(half_width: float = 2.0, floor: float = 1.4, ceiling: float = 1.6) -> list[Part]:
    """An indoor corridor: floor, ceiling, side walls, an end wall at 30 m, two crates."""
    return [
        box((-half_width, half_width), (floor, floor + 0.1), (0.0, 30.0), (0.55, 0.5, 0.45), "tiles"),
        box((-half_width, half_width), (-ceiling - 0.1, -ceiling), (0.0, 30.0), (0.9, 0.9, 0.88), "plain"),
        box((-half_width - 0.1, -half_width), (-ceiling, floor), (0.0, 30.0), (0.8, 0.75, 0.6), "checker"),
        box((half_width, half_width + 0.1), (-ceiling, floor), (0.0, 30.0), (0.8, 0.75, 0.6), "checker"),
        box((-half_width, half_width), (-ceiling, floor), (30.0, 30.1), (0.5, 0.6, 0.65), "facade"),
        box((-1.6, -0.8), (floor - 0.8, floor), (5.0, 5.8), (0.7, 0.55, 0.3), "plain"),
        box((0.6, 1.4), (floor - 1.2, floor), (12.0, 12.8), (0.35, 0.45, 0.3), "plain"),
    ]


def texture_factor(texture: str, points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(N,) brightness multipliers of a procedural texture at 3D points (N, 3)."""
    x, y, z = points[:, 0], points[:, 1], points[:, 2]
    grain = 1.0 + 0.08 * rng.standard_normal(len(points))
    if texture == "asphalt":
        dash = (np.abs(x) < 0.08) & (np.mod(z, 9.0) < 4.0)
        edge = np.abs(np.abs(x) - 3.7) < 0.08
        return np.where(dash | edge, 2.6, 1.0) * grain
    if texture == "tiles":
        joint = (np.mod(x, 0.5) < 0.03) | (np.mod(z, 0.5) < 0.03)
        return np.where(joint, 0.7, 1.0) * grain
    if texture == "facade":
        window = (np.mod(z, 3.0) > 1.0) & (np.mod(-y, 3.0) > 1.2) & (np.mod(x + z, 3.0) > 0.0)
        return np.where(window, 0.35, 1.0) * grain
    if texture == "checker":
        return np.where((np.floor(x) + np.floor(y) + np.floor(z)) % 2 == 0, 1.0, 0.8) * grain
    return grain


def render(parts: list[Part], K: np.ndarray, width: int, height: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """RGB (H, W, 3) uint8 and camera-z depth (H, W) float32 (0 = sky) of a scene."""
    vertices, triangles, owner = [], [], []
    offset = 0
    for index, part in enumerate(parts):
        vertices.append(np.asarray(part.mesh.vertices))
        triangles.append(np.asarray(part.mesh.triangles) + offset)
        owner.append(np.full(len(part.mesh.triangles), index))
        offset += len(part.mesh.vertices)
    scene = MeshScene(np.concatenate(vertices), np.concatenate(triangles))
    triangle_owner = np.concatenate(owner)
    directions = pixel_ray_directions(K, width, height)
    hits = scene.cast(np.zeros(3), directions)
    hit = np.isfinite(hits.t)
    depth = np.where(hit, hits.t * directions[:, 2], 0.0)

    rng = np.random.default_rng(seed)
    sky_fraction = np.clip(np.arange(height) / height, 0, 1)[:, None].repeat(width, 1).ravel()
    rgb = np.stack([0.55 + 0.3 * sky_fraction, 0.7 + 0.2 * sky_fraction, np.full_like(sky_fraction, 0.95)], axis=1)
    points = directions[hit] * hits.t[hit, None]
    normals = hits.normals[hit]
    normals *= -np.sign(np.einsum("ij,ij->i", normals, directions[hit]))[:, None]
    lambert = np.clip(np.einsum("ij,j->i", normals, -SUN_DIRECTION), 0.0, 1.0)
    owners = triangle_owner[hits.triangle_ids[hit]]
    albedo = np.array([parts[i].colour for i in range(len(parts))])[owners]
    factor = np.ones(len(points))
    for index, part in enumerate(parts):
        mine = owners == index
        factor[mine] = texture_factor(part.texture, points[mine], rng)
    haze = np.exp(-hits.t[hit] / 400.0)[:, None]
    shaded = albedo * factor[:, None] * (0.45 + 0.55 * lambert[:, None])
    rgb[hit] = shaded * haze + (1 - haze) * np.array([0.75, 0.8, 0.9])
    image = (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8).reshape(height, width, 3)
    return image, depth.reshape(height, width).astype(np.float32)


def main() -> None:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    kitti_K = intrinsics_matrix(721.5377, 721.5377, 609.5593, 172.854)
    scenes = {
        "street_kitti": (street(), kitti_K, 1242, 375),
        "yard": (yard(), intrinsics_from_hfov(640, 480, 70.0), 640, 480),
        "corridor": (corridor(), intrinsics_from_hfov(800, 600, 90.0), 800, 600),
    }
    for seed, (name, (parts, K, width, height)) in enumerate(scenes.items()):
        rgb, depth = render(parts, K, width, height, seed)
        Image.fromarray(rgb).save(OUT_DIR / f"{name}.jpg", quality=90)
        (OUT_DIR / f"{name}.depth.png").write_bytes(encode_depth_png(depth))
        intrinsics = {"fx": K[0, 0], "fy": K[1, 1], "cx": K[0, 2], "cy": K[1, 2]}
        (OUT_DIR / f"{name}.json").write_text(json.dumps(intrinsics, indent=2) + "\n")
        print(f"{name}: {width}x{height}, depth {depth[depth > 0].min():.2f}-{depth.max():.2f} m")


if __name__ == "__main__":
    main()

"""Pictures of samples a person can look at: RGB, sparse LiDAR over RGB, dense depth."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..errors import PipelineError

# Anchors of a perceptually ordered near-to-far ramp (dark purple -> yellow).
_RAMP = np.array(
    [
        [0.05, 0.03, 0.25],
        [0.35, 0.05, 0.55],
        [0.75, 0.15, 0.45],
        [0.98, 0.45, 0.2],
        [0.99, 0.85, 0.25],
        [0.95, 1.0, 0.6],
    ]
)


def check_picture_path(path: Path, option: str = "`plot`") -> None:
    """Refuse, before any work, a picture path that cannot be written: a folder that does not
    exist, or a name without an image extension Pillow writes."""
    Image.init()
    image_format = Image.registered_extensions().get(path.suffix.lower())
    if image_format not in Image.SAVE:
        raise PipelineError(f"{option} {path}: give a picture file name ending in .png or .jpg")
    if not path.parent.is_dir():
        raise PipelineError(f"{option} {path}: the folder {path.parent} does not exist; make it first")


def colorize_depth(depth_m: np.ndarray, near_m: float, far_m: float) -> np.ndarray:
    """(H, W) depth in metres -> (H, W, 3) uint8, near bright, far dark, 0 (no value) black.

    Inverse depth is mapped to the ramp so that near structure gets most of the colours.
    """
    valid = depth_m > 0
    inverse = np.where(valid, 1.0 / np.maximum(depth_m, 1e-6), 0.0)
    position = np.clip((inverse - 1.0 / far_m) / (1.0 / near_m - 1.0 / far_m), 0.0, 1.0) * (len(_RAMP) - 1)
    colours = np.stack([np.interp(position, np.arange(len(_RAMP)), _RAMP[:, c]) for c in range(3)], axis=-1)
    colours[~valid] = 0.0
    return (colours * 255).round().astype(np.uint8)


def spread_points(depth_m: np.ndarray, radius: int) -> np.ndarray:
    """Grow each valid pixel of a sparse (H, W) map into its empty neighbours within
    `radius` (the nearest depth wins), so single LiDAR points are visible when drawn."""
    grown = depth_m.copy()
    for dv in range(-radius, radius + 1):
        for du in range(-radius, radius + 1):
            shifted = np.roll(np.roll(depth_m, dv, axis=0), du, axis=1)
            take = (shifted > 0) & ((grown == 0) | (shifted < grown))
            grown[take] = shifted[take]
    return grown


def sample_panel(jpeg: bytes, sparse_m: np.ndarray, dense_m: np.ndarray, title: str = "") -> Image.Image:
    """RGB, sparse LiDAR over a dimmed RGB, and dense depth, stacked top to bottom."""
    rgb = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))
    valid_dense = dense_m[dense_m > 0]
    near_m = float(np.percentile(valid_dense, 1)) if valid_dense.size else 1.0
    far_m = max(float(np.percentile(valid_dense, 99)) if valid_dense.size else 80.0, near_m * 1.5)
    grown = spread_points(sparse_m, radius=1)
    overlay = (rgb * 0.35).astype(np.uint8)
    overlay[grown > 0] = colorize_depth(grown, near_m, far_m)[grown > 0]
    rows = [rgb, overlay, colorize_depth(dense_m, near_m, far_m)]
    panel = Image.fromarray(np.concatenate(rows, axis=0))
    draw = ImageDraw.Draw(panel)
    height = rgb.shape[0]
    for index, label in enumerate((f"RGB  {title}", "simulated sparse LiDAR", "dense depth (teacher)")):
        draw.text((8, index * height + 6), label.strip(), fill=(255, 255, 255))
    return panel

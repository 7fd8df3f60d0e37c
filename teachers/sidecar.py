"""The sidecar teacher: metric depth stored beside each photo.

`photo.jpg` gets its depth from `photo.depth.png` (uint16, metres x 256, the KITTI
convention) or `photo.depth.npy` (float32 metres, (H, W)).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .base import DepthPrediction, TeacherError, TeacherInput

SIDECAR_SUFFIXES = (".depth.png", ".depth.npy")
NPY_MAGIC = b"\x93NUMPY"


def find_depth_sidecar(image_path: Path) -> Path | None:
    for suffix in SIDECAR_SUFFIXES:
        candidate = image_path.with_name(image_path.stem + suffix)
        if candidate.is_file():
            return candidate
    return None


def read_depth_sidecar(path: Path) -> np.ndarray:
    """(H, W) float32 metres from a .depth.png or .depth.npy file; NaN, inf and
    negative values become 0 (no value)."""
    try:
        if path.suffix == ".npy":
            depth = _read_npy(path)
        else:
            with Image.open(path) as image:
                if image.mode not in ("I;16", "I;16B", "I;16L", "I"):
                    raise TeacherError(f"{path.name}: depth PNG must be 16-bit (metres x 256), got mode {image.mode}")
                depth = np.asarray(image).astype(np.float32) / 256.0
    except TeacherError:
        raise
    except UnidentifiedImageError:
        raise TeacherError(f"{path.name}: not a PNG image; save depth as a 16-bit PNG (metres x 256)") from None
    except (OSError, ValueError) as error:
        raise TeacherError(f"{path.name}: unreadable depth sidecar ({error})") from None
    if depth.ndim != 2:
        raise TeacherError(f"{path.name}: depth must be a 2-D (H, W) array, got shape {depth.shape}")
    # Both readers give a fresh array: convert without a second copy where it is float32 already.
    depth = depth.astype(np.float32, copy=False)
    depth[~np.isfinite(depth) | (depth < 0)] = 0.0
    return depth


def _read_npy(path: Path) -> np.ndarray:
    """A real-valued array from a .npy file (numpy.save's format, nothing else)."""
    with open(path, "rb") as handle:
        if handle.read(len(NPY_MAGIC)) != NPY_MAGIC:
            raise TeacherError(f"{path.name}: not a NumPy .npy file; save depth with numpy.save (float32 metres)")
        handle.seek(0)
        depth = np.load(handle, allow_pickle=False)
    if depth.dtype.kind not in "fiu":
        raise TeacherError(f"{path.name}: depth must be real numbers (float32 metres), got dtype {depth.dtype}")
    return depth


class SidecarTeacher:
    """Reads metric depth from files beside the photos; no model involved."""

    name = "sidecar"

    def predict(self, batch: Sequence[TeacherInput]) -> list[DepthPrediction | TeacherError]:
        return [self._predict_one(item) for item in batch]

    def _predict_one(self, item: TeacherInput) -> DepthPrediction | TeacherError:
        sidecar = find_depth_sidecar(item.path)
        if sidecar is None:
            return TeacherError(
                f"no depth beside {item.path.name}: add {item.path.stem}.depth.png (uint16, m x 256) "
                f"or {item.path.stem}.depth.npy, or pass `teacher` with a depth model"
            )
        try:
            depth = read_depth_sidecar(sidecar)
        except TeacherError as error:
            return error
        height, width = item.rgb.shape[:2]
        if depth.shape != (height, width):
            return TeacherError(
                f"{sidecar.name} is {depth.shape[1]}x{depth.shape[0]} but the photo is {width}x{height}; "
                "depth must match the photo as displayed (after EXIF rotation)"
            )
        return DepthPrediction(
            depth=depth, kind="metric", conversion={"source": sidecar.name, "scale": 1.0}, teacher=self.name
        )

"""The sidecar teacher: metric depth stored beside each photo.

`photo.jpg` gets its depth from `photo.depth.png` (uint16, metres x 256, the KITTI
convention) or `photo.depth.npy` (float32 metres, (H, W)).
"""

from __future__ import annotations

import os
import stat
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .base import DepthPrediction, TeacherError, TeacherInput

DEPTH_SIDECAR_SUFFIXES = (".depth.png", ".depth.npy")
NPY_MAGIC = b"\x93NUMPY"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def depth_sidecars(image_path: Path) -> list[Path]:
    """Where a photo's depth may lie beside it, in order of preference."""
    return [image_path.with_name(image_path.stem + suffix) for suffix in DEPTH_SIDECAR_SUFFIXES]


def find_depth_sidecar(image_path: Path) -> Path | None:
    return next((candidate for candidate in depth_sidecars(image_path) if candidate.is_file()), None)


def read_depth_sidecar(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) = shape float32 metres from a .depth.png or .depth.npy file; NaN, inf and
    negative values become 0 (no value). The size the file's header declares is checked
    before anything is decoded: a sidecar of another size is refused unread, and one that is not
    a regular file (a FIFO would hang the reader) is never opened."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise TeacherError(f"{path.name}: not a regular file (a FIFO, a device or a folder); make it a file")
        with open(path, "rb") as handle:
            if path.suffix == ".npy":
                depth = _read_npy(handle, path.name, shape)
            else:
                _check_declared_shape(path.name, _png_shape(handle, path.name), shape)
                handle.seek(0)
                depth = _read_png(handle, path.name)
    except TeacherError:
        raise
    except (OSError, ValueError, EOFError) as error:
        raise TeacherError(f"{path.name}: unreadable depth sidecar ({error})") from None
    # Both readers give a fresh array: convert without a second copy where it is float32 already.
    depth = depth.astype(np.float32, copy=False)
    depth[~np.isfinite(depth) | (depth < 0)] = 0.0
    return depth


def _png_shape(handle, name: str) -> tuple[int, ...]:
    """(H, W) a PNG's header declares, read without decoding it."""
    header = handle.read(24)
    if header[:8] != PNG_MAGIC or header[12:16] != b"IHDR":
        raise TeacherError(f"{name}: not a PNG image; save depth as a 16-bit PNG (metres x 256)")
    width, height = struct.unpack(">II", header[16:24])
    return height, width


def _read_png(handle, name: str) -> np.ndarray:
    try:
        with Image.open(handle) as image:
            if image.mode not in ("I;16", "I;16B", "I;16L", "I"):
                raise TeacherError(f"{name}: depth PNG must be 16-bit (metres x 256), got mode {image.mode}")
            return np.asarray(image).astype(np.float32) / 256.0
    except UnidentifiedImageError:
        raise TeacherError(f"{name}: not a PNG image; save depth as a 16-bit PNG (metres x 256)") from None


def _read_npy(handle, name: str, shape: tuple[int, int]) -> np.ndarray:
    """A real-valued array from a .npy file (numpy.save's format, nothing else), its header's
    dtype and shape checked before the data is read."""
    if handle.read(len(NPY_MAGIC)) != NPY_MAGIC:
        raise TeacherError(f"{name}: not a NumPy .npy file; save depth with numpy.save (float32 metres)")
    handle.seek(0)
    version = np.lib.format.read_magic(handle)
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    declared, _, dtype = read_header(handle)
    if dtype.kind not in "fiu":
        raise TeacherError(f"{name}: depth must be real numbers (float32 metres), got dtype {dtype.str}")
    _check_declared_shape(name, declared, shape)
    handle.seek(0)
    return np.load(handle, allow_pickle=False)


def _check_declared_shape(name: str, declared: tuple[int, ...], shape: tuple[int, int]) -> None:
    if len(declared) != 2:
        raise TeacherError(f"{name}: depth must be a 2-D (H, W) array, got shape {tuple(declared)}")
    if tuple(declared) != tuple(shape):
        raise TeacherError(
            f"{name} is {declared[1]}x{declared[0]} but the photo is {shape[1]}x{shape[0]}; "
            "depth must match the photo as displayed (after EXIF rotation)"
        )


class SidecarTeacher:
    """Reads metric depth from files beside the photos; no model involved."""

    name = "sidecar"

    def predict(self, batch: Sequence[TeacherInput]) -> list[DepthPrediction | TeacherError]:
        return [self._predict_one(item) for item in batch]

    def _predict_one(self, item: TeacherInput) -> DepthPrediction | TeacherError:
        found = [path for path in depth_sidecars(item.path) if os.path.lexists(path)]
        if not found:
            return TeacherError(
                f"no depth beside {item.path.name}: add {item.path.stem}.depth.png (uint16, m x 256) "
                f"or {item.path.stem}.depth.npy, or pass `teacher` with a depth model"
            )
        if len(found) > 1:
            names = f"{found[0].name} and {found[1].name}"
            return TeacherError(f"both {names} lie beside {item.path.name}: keep the one that holds its depth")
        try:
            depth = read_depth_sidecar(found[0], item.rgb.shape[:2])
        except TeacherError as error:
            return error
        return DepthPrediction(
            depth=depth, kind="metric", conversion={"source": found[0].name, "scale": 1.0}, teacher=self.name
        )

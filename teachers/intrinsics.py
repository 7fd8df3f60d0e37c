"""Camera intrinsics policies: a flag, a per-photo sidecar, then in the order the
policy lists them: the EXIF 35 mm-equivalent focal length, the teacher's own focal
estimate (Depth Pro), a fixed horizontal field of view, a random one from a range.

Pixel centres are at integer coordinates, so the principal point of an ideal
W x H camera is ((W - 1) / 2, (H - 1) / 2).
"""

from __future__ import annotations

import json
import math
import os
import stat
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

POLICIES = ("exif", "teacher", "fov", "random")
INTRINSICS_FIELDS = ("fx", "fy", "cx", "cy")
# Bounds of a usable K: the horizontal field of view fx gives, and fy / fx.
MIN_FOV_DEG, MAX_FOV_DEG = 1.0, 170.0
MAX_ASPECT = 4.0
# An intrinsics file is four numbers: one larger than this is not one.
MAX_SIDECAR_BYTES = 64 * 2**10
EXIF_IFD = 0x8769
EXIF_FOCAL_35MM = 0xA405
# The 35 mm film frame's diagonal (36 x 24 mm): the equivalent focal length keeps the
# diagonal field of view, so it also holds for photos that are not 3:2.
FILM_35MM_DIAGONAL_MM = math.hypot(36.0, 24.0)


class IntrinsicsError(ValueError):
    """No usable intrinsics for a photo, or a malformed flag or sidecar."""


def intrinsics_matrix(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def intrinsics_from_hfov(width: int, height: int, hfov_deg: float) -> np.ndarray:
    """(3, 3) K of a square-pixel camera with the given horizontal field of view."""
    if not MIN_FOV_DEG <= hfov_deg <= MAX_FOV_DEG:
        raise IntrinsicsError(f"`fov_deg` must be between 1 and 170 degrees, got {hfov_deg}")
    focal = _focal_px_from_hfov(width, hfov_deg)
    return intrinsics_matrix(focal, focal, (width - 1) / 2.0, (height - 1) / 2.0)


def _focal_px_from_hfov(width: int, hfov_deg: float) -> float:
    """The focal length (pixels) that spans `width` pixels with a horizontal FOV of hfov_deg."""
    return 0.5 * width / math.tan(math.radians(hfov_deg) / 2.0)


def parse_intrinsics(text: str) -> tuple[float, float, float, float]:
    """'fx,fy,cx,cy' in pixels -> a tuple of four floats."""
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4 or not all(math.isfinite(v) for v in values) or values[0] <= 0 or values[1] <= 0:
        raise IntrinsicsError(f"`intrinsics` must be fx,fy,cx,cy in pixels with fx, fy > 0, got {text!r}")
    return values


def read_intrinsics_sidecar(image_path: Path) -> np.ndarray | None:
    """K from `photo.json` ({"fx": ..., "fy": ..., "cx": ..., "cy": ...}, JSON numbers in
    pixels) beside the photo, if present: a regular file of at most MAX_SIDECAR_BYTES whose
    four fields are finite numbers (IntrinsicsError naming what is wrong otherwise)."""
    sidecar = image_path.with_suffix(".json")
    fields = _read_json_object(sidecar)
    if fields is None:
        return None
    values = []
    for name in INTRINSICS_FIELDS:
        if name not in fields:
            raise IntrinsicsError(f"{sidecar.name}: lacks {name}; write fx, fy, cx, cy in pixels")
        value = fields[name]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise IntrinsicsError(f"{sidecar.name}: {name} must be a number of pixels, got {json.dumps(value)[:40]}")
        if isinstance(value, int) and abs(value) > 10**15:
            raise IntrinsicsError(f"{sidecar.name}: {name} is an integer of {len(str(abs(value)))} digits, not pixels")
        values.append(float(value))
    return intrinsics_matrix(*values)


def _read_json_object(path: Path) -> dict | None:
    """The JSON object in `path` (None when there is no such file), bounded: a regular file of
    at most MAX_SIDECAR_BYTES, standard JSON, not nested deeper than Python reads."""
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise IntrinsicsError(f"{path.name}: unreadable ({error.strerror or error})") from None
    if not stat.S_ISREG(status.st_mode):
        raise IntrinsicsError(f"{path.name}: not a regular file (a FIFO, a device or a folder); make it a JSON file")
    if status.st_size > MAX_SIDECAR_BYTES:
        raise IntrinsicsError(f"{path.name}: {status.st_size} bytes; an intrinsics file is a small JSON object")
    try:
        with open(path, "rb") as handle:
            fields = json.loads(handle.read(MAX_SIDECAR_BYTES + 1), parse_constant=_refuse_constant)
    except (OSError, ValueError) as error:
        raise IntrinsicsError(f"{path.name}: not readable JSON ({error}); write fx, fy, cx, cy in pixels") from None
    except RecursionError:
        raise IntrinsicsError(f"{path.name}: nested deeper than JSON can be read; write fx, fy, cx, cy") from None
    if not isinstance(fields, dict):
        raise IntrinsicsError(f"{path.name}: must be a JSON object with fx, fy, cx, cy in pixels")
    return fields


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number in standard JSON")


def check_intrinsics(K: np.ndarray, width: int, height: int) -> None:
    """Refuse a K (3, 3) that cannot image a W x H photo: fx, fy, cx, cy finite; fx giving
    a horizontal field of view of MIN_FOV_DEG..MAX_FOV_DEG; fy within MAX_ASPECT of fx;
    the principal point inside the photo (-0.5..W-0.5, -0.5..H-0.5: pixel centres are
    at integer coordinates)."""
    fx, fy, cx, cy = (float(value) for value in (K[0, 0], K[1, 1], K[0, 2], K[1, 2]))
    for name, value in zip(INTRINSICS_FIELDS, (fx, fy, cx, cy), strict=True):
        if not math.isfinite(value):
            raise IntrinsicsError(f"{name} must be finite, got {value}")
    fx_low, fx_high = (_focal_px_from_hfov(width, fov) for fov in (MAX_FOV_DEG, MIN_FOV_DEG))
    if not fx_low <= fx <= fx_high:
        raise IntrinsicsError(
            f"fx = {fx:g} px is outside {fx_low:.1f}..{fx_high:.0f} px, a field of view of {MIN_FOV_DEG:g}-"
            f"{MAX_FOV_DEG:g} deg across this photo's {width} px"
        )
    if not fx / MAX_ASPECT <= fy <= fx * MAX_ASPECT:
        raise IntrinsicsError(f"fy = {fy:g} px is not within {MAX_ASPECT:g}x of fx = {fx:g} px")
    if not (-0.5 <= cx <= width - 0.5 and -0.5 <= cy <= height - 0.5):
        raise IntrinsicsError(
            f"the principal point (cx, cy) = ({cx:g}, {cy:g}) px is outside the {width}x{height} photo"
        )


def read_exif_focal_35mm(image_path: Path) -> float | None:
    """The EXIF FocalLengthIn35mmFilm (mm) of a photo, or None when absent or 0 (unknown)."""
    try:
        with Image.open(image_path) as image:
            value = image.getexif().get_ifd(EXIF_IFD).get(EXIF_FOCAL_35MM)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError):
        return None
    try:
        focal_mm = float(value)
    except (TypeError, ValueError):
        return None
    return focal_mm if focal_mm > 0 else None


def focal_px_from_35mm(focal_35mm: float, width: int, height: int) -> float:
    """Focal length in pixels of a W x H photo whose 35 mm-equivalent focal length is
    focal_35mm (mm): same diagonal field of view as that lens on a 36 x 24 mm frame,
    so it does not depend on the EXIF orientation."""
    return focal_35mm * math.hypot(width, height) / FILM_35MM_DIAGONAL_MM


def parse_policy(text: str, fov_deg: float | None) -> tuple[str, ...]:
    """'exif,teacher,random' -> the sources to try in order; 'auto' is 'fov' when a
    `fov_deg` is given, else 'random'."""
    if text == "auto":
        return ("fov",) if fov_deg is not None else ("random",)
    policy = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [name for name in policy if name not in POLICIES]
    if not policy or unknown:
        raise IntrinsicsError(
            f"`intrinsics_policy` {text!r}: give auto or a comma-separated list of {', '.join(POLICIES)}"
        )
    if "fov" in policy and fov_deg is None:
        raise IntrinsicsError("`intrinsics_policy` fov needs `fov_deg` DEG")
    return policy


def parse_fov_range(text: str) -> tuple[float, float]:
    """'50,80' -> (50.0, 80.0) degrees of horizontal field of view."""
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        raise IntrinsicsError(f"`fov_range` takes MIN,MAX degrees, got {text!r}") from None
    if not MIN_FOV_DEG <= low <= high <= MAX_FOV_DEG:
        raise IntrinsicsError(f"`fov_range` needs 1 <= MIN <= MAX <= 170 degrees, got {text!r}")
    return low, high


def resolve_intrinsics(
    image_path: Path,
    width: int,
    height: int,
    intrinsics_flag: tuple[float, float, float, float] | None,
    fov_deg: float | None,
    *,
    policy: Sequence[str] | None = None,
    fov_range_deg: tuple[float, float] = (50.0, 80.0),
    teacher_focal_px: float | None = None,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, str]:
    """K (3, 3) for one W x H photo and where it came from, first match wins:
    `intrinsics`, then `photo.json`, then each source of `policy` in turn (default:
    `fov_deg` alone). 'random' draws the horizontal FOV uniformly from fov_range_deg
    with `rng` (one generator per photo, so every sensor and view shares K). Raises
    IntrinsicsError when none gives K, or the K found fails check_intrinsics."""
    K, source = _find_intrinsics(
        image_path, width, height, intrinsics_flag, fov_deg, policy, fov_range_deg, teacher_focal_px, rng
    )
    try:
        check_intrinsics(K, width, height)
    except IntrinsicsError as error:
        origin = image_path.with_suffix(".json").name if source == "sidecar" else f"intrinsics from {source}"
        raise IntrinsicsError(f"{origin}: {error}") from None
    return K, source


def _find_intrinsics(
    image_path: Path,
    width: int,
    height: int,
    intrinsics_flag: tuple[float, float, float, float] | None,
    fov_deg: float | None,
    policy: Sequence[str] | None,
    fov_range_deg: tuple[float, float],
    teacher_focal_px: float | None,
    rng: np.random.Generator | None,
) -> tuple[np.ndarray, str]:
    """resolve_intrinsics' search, before K is checked."""
    if intrinsics_flag is not None:
        return intrinsics_matrix(*intrinsics_flag), "flag"
    sidecar = read_intrinsics_sidecar(image_path)
    if sidecar is not None:
        return sidecar, "sidecar"
    missing = []
    for source in policy or ("fov",):
        if source == "exif":
            focal_35mm = read_exif_focal_35mm(image_path)
            if focal_35mm is not None:
                focal = focal_px_from_35mm(focal_35mm, width, height)
                K = intrinsics_matrix(focal, focal, (width - 1) / 2.0, (height - 1) / 2.0)
                return K, f"exif 35mm-equivalent {focal_35mm:g} mm"
            missing.append("no EXIF 35 mm-equivalent focal length")
        elif source == "teacher":
            if teacher_focal_px is not None and math.isfinite(teacher_focal_px) and teacher_focal_px > 0:
                K = intrinsics_matrix(teacher_focal_px, teacher_focal_px, (width - 1) / 2.0, (height - 1) / 2.0)
                return K, "teacher"
            missing.append("the teacher estimates no focal length (depth-pro does)")
        elif source == "fov":
            if fov_deg is not None:
                return intrinsics_from_hfov(width, height, fov_deg), f"fov {fov_deg:g} deg"
            missing.append("no `fov_deg`")
        elif source == "random" and rng is not None:
            hfov_deg = float(rng.uniform(*fov_range_deg))
            return intrinsics_from_hfov(width, height, hfov_deg), f"random fov {hfov_deg:.2f} deg"
    why = f" ({'; '.join(missing)})" if missing else ""
    raise IntrinsicsError(
        f"no intrinsics for {image_path.name}{why}: add {image_path.stem}.json with fx, fy, cx, cy, "
        "or pass `fov_deg` DEG or `intrinsics` fx,fy,cx,cy, or `intrinsics_policy` random"
    )

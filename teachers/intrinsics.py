"""Camera intrinsics policies: a flag, a per-photo sidecar, then in the order the
policy lists them: the EXIF 35 mm-equivalent focal length, the teacher's own focal
estimate (Depth Pro), a fixed horizontal field of view, a random one from a range.

Pixel centres are at integer coordinates, so the principal point of an ideal
W x H camera is ((W - 1) / 2, (H - 1) / 2).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

POLICIES = ("exif", "teacher", "fov", "random")
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
    if not 1.0 <= hfov_deg <= 170.0:
        raise IntrinsicsError(f"`fov_deg` must be between 1 and 170 degrees, got {hfov_deg}")
    focal = 0.5 * width / math.tan(math.radians(hfov_deg) / 2.0)
    return intrinsics_matrix(focal, focal, (width - 1) / 2.0, (height - 1) / 2.0)


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
    """K from `photo.json` ({"fx": ..., "fy": ..., "cx": ..., "cy": ...}) beside the photo, if present."""
    sidecar = image_path.with_suffix(".json")
    if not sidecar.is_file():
        return None
    try:
        fields = json.loads(sidecar.read_text())
        fx, fy, cx, cy = (float(fields[name]) for name in ("fx", "fy", "cx", "cy"))
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise IntrinsicsError(f"{sidecar.name}: needs numbers fx, fy, cx, cy ({error!r})") from None
    if fx <= 0 or fy <= 0:
        raise IntrinsicsError(f"{sidecar.name}: fx and fy must be positive")
    return intrinsics_matrix(fx, fy, cx, cy)


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
    if not 1.0 <= low <= high <= 170.0:
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
    with `rng` (one generator per photo, so every sensor and view shares K)."""
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

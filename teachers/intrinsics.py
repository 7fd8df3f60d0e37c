"""Camera intrinsics policies: a flag, a per-photo sidecar, or a horizontal field of view.

Pixel centres are at integer coordinates, so the principal point of an ideal
W x H camera is ((W - 1) / 2, (H - 1) / 2).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np


class IntrinsicsError(ValueError):
    """No usable intrinsics for a photo, or a malformed flag or sidecar."""


def intrinsics_matrix(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def intrinsics_from_hfov(width: int, height: int, hfov_deg: float) -> np.ndarray:
    """(3, 3) K of a square-pixel camera with the given horizontal field of view."""
    if not 1.0 <= hfov_deg <= 170.0:
        raise IntrinsicsError(f"--fov must be between 1 and 170 degrees, got {hfov_deg}")
    focal = 0.5 * width / math.tan(math.radians(hfov_deg) / 2.0)
    return intrinsics_matrix(focal, focal, (width - 1) / 2.0, (height - 1) / 2.0)


def parse_intrinsics(text: str) -> tuple[float, float, float, float]:
    """'fx,fy,cx,cy' in pixels -> a tuple of four floats."""
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4 or not all(math.isfinite(v) for v in values) or values[0] <= 0 or values[1] <= 0:
        raise IntrinsicsError(f"--intrinsics must be fx,fy,cx,cy in pixels with fx, fy > 0, got {text!r}")
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


def resolve_intrinsics(
    image_path: Path,
    width: int,
    height: int,
    intrinsics_flag: tuple[float, float, float, float] | None,
    fov_deg: float | None,
) -> tuple[np.ndarray, str]:
    """K (3, 3) for one photo and where it came from, first match wins:
    --intrinsics, then `photo.json`, then --fov."""
    if intrinsics_flag is not None:
        return intrinsics_matrix(*intrinsics_flag), "flag"
    sidecar = read_intrinsics_sidecar(image_path)
    if sidecar is not None:
        return sidecar, "sidecar"
    if fov_deg is not None:
        return intrinsics_from_hfov(width, height, fov_deg), f"fov {fov_deg:g} deg"
    raise IntrinsicsError(
        f"no intrinsics for {image_path.name}: add {image_path.stem}.json with fx, fy, cx, cy, "
        "or pass --fov DEG or --intrinsics fx,fy,cx,cy"
    )

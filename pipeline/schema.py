"""The sample schema shared by the shard writer and the training loader.

One WebDataset sample per image x view x sensor. Member names (the part after the
key's first dot) and depth encodings live here and nowhere else. This module
imports only numpy and Pillow so that `simlidar.train` can read it cheaply.

Depth is camera z in metres, float32, 0 = no value. On disk it is a 16-bit PNG
holding round(depth * 256), the KITTI convention: 1/256 m steps up to 255.996 m. A
depth beyond that range is no value in the PNG: the sample's json counts the pixels
the PNG holds, and those it could not (`encoded_pixels`).
The optional `teacher.png` holds a teacher's relative disparity, min-max normalised
per image (see `encode_relative_png`); its json entry "teacher_relative" says how.

Stock decoders destroy these PNGs: webdataset's `.decode("pil")`, `"rgb"`, `"torchrgb"` or
`"l"` squeeze 16 bits into 8 or into 0..1. `webdataset_depth` is the handler to pass first
(`.decode(webdataset_depth, "rgb")`), and `teacher_depth_m` turns teacher.png into metres
when its record says the disparity is metric.
"""

from __future__ import annotations

import io
import re

import numpy as np
from PIL import Image

IMAGE = "jpg"
# An image kept in its original lossless bytes (KITTI's PNGs) is the `png` member instead.
IMAGE_PNG = "png"
IMAGE_MEMBERS = (IMAGE, IMAGE_PNG)
SPARSE = "sparse.png"
DENSE = "dense.png"
META = "json"
POINTS = "points.npy"
TEACHER = "teacher.png"

# Every sample has one of IMAGE_MEMBERS and all of these.
REQUIRED_MEMBERS = (SPARSE, DENSE, META)
MEMBER_ORDER = (IMAGE, IMAGE_PNG, SPARSE, DENSE, TEACHER, META, POINTS)

# points.npy: N x len(POINT_FIELDS) float32, one row per return, in the LiDAR frame; a
# sample's json states the layout as "points_layout" (points_layout()).
POINT_FIELDS = ("x", "y", "z", "intensity", "ring", "time", "azimuth")
POINT_UNITS = (
    "m",
    "m",
    "m",
    "signal relative to a facing white target at 10 m, in [0, 1]",
    "laser index, 0 = the top beam (Risley: the emitter)",
    "s, firing time since the sweep started",
    "rad, the beam's azimuth when fired, in the LiDAR's frame at that time (0 = +x, toward +y)",
)

DEPTH_SCALE = 256.0
MAX_DEPTH_M = np.iinfo(np.uint16).max / DEPTH_SCALE

_KEY_PATTERN = re.compile(r"^[A-Za-z0-9_-]+$")
_SEPARATORS = re.compile(r"[\\/]")
_OTHER_CHARACTERS = re.compile(r"[^A-Za-z0-9_-]")


def points_layout() -> dict:
    """The json record of points.npy's layout."""
    return {"dtype": "float32", "frame": "lidar", "columns": list(POINT_FIELDS), "units": list(POINT_UNITS)}


def missing_members(present) -> list[str]:
    """The required members (names after the key) absent from `present`; no image is
    reported as "jpg or png"."""
    missing = [] if any(name in present for name in IMAGE_MEMBERS) else [" or ".join(IMAGE_MEMBERS)]
    return missing + [name for name in REQUIRED_MEMBERS if name not in present]


def image_bytes(members: dict) -> bytes:
    """The encoded image of a sample (member name -> bytes), JPEG or PNG."""
    return members[IMAGE] if IMAGE in members else members[IMAGE_PNG]


def _encoding(depth_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(values round(depth * 256), which of them a 16-bit PNG holds: 1..65535) of (H, W) metres."""
    depth_m = np.asarray(depth_m, dtype=np.float64)
    if depth_m.ndim != 2:
        raise ValueError(f"depth must be (H, W), got shape {depth_m.shape}")
    with np.errstate(invalid="ignore", over="ignore"):
        values = np.round(depth_m * DEPTH_SCALE)
        return values, np.isfinite(values) & (values >= 1) & (values <= np.iinfo(np.uint16).max)


def encoded_pixels(depth_m: np.ndarray) -> tuple[int, int]:
    """(pixels of an (H, W) depth map in metres that encode_depth_png keeps, pixels with a
    depth it cannot hold: beyond MAX_DEPTH_M or nearer than 1/512 m). What a sample's json
    counts is the first: the PNG's own count."""
    _, kept = _encoding(depth_m)
    kept_count = int(np.count_nonzero(kept))
    with np.errstate(invalid="ignore"):
        with_value = int(np.count_nonzero(np.isfinite(depth_m) & (np.asarray(depth_m) > 0)))
    return kept_count, with_value - kept_count


def encode_depth_png(depth_m: np.ndarray) -> bytes:
    """Encode an (H, W) depth map in metres as a 16-bit PNG (value = round(depth * 256)).

    Pixels that are 0, negative, NaN, inf, beyond MAX_DEPTH_M (255.996 m) or nearer
    than 1/512 m (they would round to 0) are written as 0, "no value": clipping them
    would invent a depth.
    """
    values, usable = _encoding(depth_m)
    encoded = np.zeros(values.shape, dtype=np.uint16)
    encoded[usable] = values[usable].astype(np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(encoded).save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def decode_depth_png(data: bytes) -> np.ndarray:
    """Decode a 16-bit depth PNG into an (H, W) float32 map in metres (0 = no value)."""
    with Image.open(io.BytesIO(data)) as image:
        if image.mode not in ("I;16", "I;16B", "I;16L", "I"):
            raise ValueError(f"depth PNG must be 16-bit grayscale, got mode {image.mode!r}")
        encoded = np.asarray(image).astype(np.float32)
    return encoded / np.float32(DEPTH_SCALE)


def webdataset_depth(key: str, data: bytes):
    """A webdataset decoder handler (`dataset.decode(webdataset_depth, "rgb")`): a sample's
    `sparse.png` and `dense.png` as (H, W) float32 metres (0 = no value, as in the file), its
    `teacher.png` as (H, W) float32 normalised disparity in 0..1 (NaN = no value: 0 is the
    image's farthest valid pixel there); None for every other member, which the handlers
    after it decode. `key` is the member name as webdataset gives it (".sparse.png") or a
    file name ending in it."""
    name = key.lstrip(".")
    member = next((member for member in (SPARSE, DENSE, TEACHER) if name.endswith(member)), None)
    if member in (SPARSE, DENSE):
        return decode_depth_png(data)
    if member == TEACHER:
        disparity, valid = decode_relative_png(data)
        return np.where(valid, disparity, np.float32(np.nan))
    return None


def teacher_depth_m(disparity: np.ndarray, record: dict) -> np.ndarray:
    """teacher.png's (H, W) normalised disparity as `webdataset_depth` gives it (0..1, NaN = no
    value) -> (H, W) float32 metres, 0 = no value, from the json's "teacher_relative"
    `record` (min, max of the disparity in 1/m). Only a metric teacher's disparity has metres:
    a relative one (its record's kind "relative") is refused with ValueError."""
    disparity = np.asarray(disparity, dtype=np.float64)
    if disparity.ndim != 2:
        raise ValueError(f"teacher disparity must be (H, W), got shape {disparity.shape}")
    if record.get("kind", "metric") != "metric":
        raise ValueError(f"teacher.png holds a {record.get('kind')} disparity (unknown scale): it has no metres")
    low, high = float(record["min"]), float(record["max"])
    with np.errstate(invalid="ignore", divide="ignore"):
        inverse_m = low + disparity * (high - low)
        depth_m = np.where(np.isfinite(inverse_m) & (inverse_m > 0), 1.0 / inverse_m, 0.0)
    return depth_m.astype(np.float32)


def encode_relative_png(values: np.ndarray, valid: np.ndarray) -> tuple[bytes, float, float]:
    """Encode an (H, W) relative map (a teacher's disparity: unknown scale and shift)
    as a 16-bit PNG of its per-image min-max normalisation: 0 = no value, 1..65535 =
    0..1. Returns (png bytes, min, max) of the valid values, to record in the json.
    Scale- and shift-invariant losses lose nothing by the normalisation."""
    values = np.asarray(values, dtype=np.float64)
    valid = np.asarray(valid, dtype=bool) & np.isfinite(values)
    encoded = np.zeros(values.shape, dtype=np.uint16)
    low = float(values[valid].min()) if valid.any() else 0.0
    high = float(values[valid].max()) if valid.any() else 0.0
    span = high - low if high > low else 1.0
    encoded[valid] = 1 + np.round((values[valid] - low) / span * 65534).astype(np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(encoded).save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue(), low, high


def decode_relative_png(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Decode a relative-map PNG into ((H, W) float32 in 0..1, (H, W) bool valid)."""
    with Image.open(io.BytesIO(data)) as image:
        if image.mode not in ("I;16", "I;16B", "I;16L", "I"):
            raise ValueError(f"relative PNG must be 16-bit grayscale, got mode {image.mode!r}")
        encoded = np.asarray(image).astype(np.float32)
    valid = encoded > 0
    return np.where(valid, (encoded - 1) / np.float32(65534), np.float32(0)), valid


def is_valid_key(key: str) -> bool:
    """A key has no dots (WebDataset cuts at the first one), slashes or spaces."""
    return bool(_KEY_PATTERN.match(key))


def sanitize_key(text: str) -> str:
    """Map a relative path (without its extension) to a key: path separators become
    '__', every other character outside [A-Za-z0-9_-] becomes '_'."""
    parts = [part for part in _SEPARATORS.split(text) if part]
    return _OTHER_CHARACTERS.sub("_", "__".join(parts)) or "_"

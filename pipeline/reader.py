"""The reader: list a folder of photos once, sorted, with collision-free sample keys,
and decode each photo (EXIF orientation applied, RGB)."""

from __future__ import annotations

import hashlib
import io
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import PipelineError
from .schema import sanitize_key

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
SIDECAR_MARKERS = (".depth.png",)
MIN_IMAGE_SIDE = 8
EXIF_ORIENTATION = 0x0112


class BadImage(Exception):
    """An input that is not a usable photo; recorded in errors.jsonl and skipped."""


@dataclass(frozen=True)
class SourceItem:
    """path: absolute file path; relpath: POSIX path relative to the input folder;
    key: the sample key stem (no dots), unique within the run."""

    path: Path
    relpath: str
    key: str


@dataclass
class LoadedImage:
    """rgb: (H, W, 3) uint8 as displayed; jpeg: the bytes to store as KEY.jpg
    (the original file when it is an upright RGB JPEG, else a re-encode)."""

    rgb: np.ndarray
    jpeg: bytes
    reencoded: bool


def list_images(root: Path) -> list[SourceItem]:
    """Every image file under `root` (recursive, sorted by relative path), skipping
    hidden files and depth sidecars."""
    if not root.exists():
        raise PipelineError(f"input folder {root} does not exist")
    if not root.is_dir():
        raise PipelineError(f"--images must be a folder, {root} is a file")
    relpaths = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        for name in files:
            lowered = name.lower()
            if name.startswith(".") or lowered.endswith(SIDECAR_MARKERS):
                continue
            if os.path.splitext(lowered)[1] in IMAGE_SUFFIXES:
                relpaths.append(Path(folder, name).relative_to(root).as_posix())
    relpaths.sort()
    return [
        SourceItem(root / relpath, relpath, key) for relpath, key in zip(relpaths, _unique_keys(relpaths), strict=True)
    ]


def _unique_keys(relpaths: list[str]) -> list[str]:
    """Sanitised keys; paths whose keys would collide get a hash of the path appended."""
    keys = [sanitize_key(os.path.splitext(relpath)[0]) for relpath in relpaths]
    owners = defaultdict(list)
    for index, key in enumerate(keys):
        owners[key].append(index)
    for indices in owners.values():
        if len(indices) > 1:
            for index in indices:
                keys[index] += "-" + hashlib.sha1(relpaths[index].encode()).hexdigest()[:8]
    return keys


def load_image(path: Path, jpeg_quality: int) -> LoadedImage:
    """Decode a photo; raise BadImage with the reason when it cannot be used."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise BadImage(f"unreadable file ({error.strerror or error})") from None
    if not data:
        raise BadImage("empty file")
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            orientation = image.getexif().get(EXIF_ORIENTATION, 1)
            unchanged = image.format == "JPEG" and image.mode == "RGB" and orientation == 1
            rgb = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise BadImage(f"not a readable image ({error})") from None
    height, width = rgb.shape[:2]
    if min(height, width) < MIN_IMAGE_SIDE:
        raise BadImage(f"image is {width}x{height}; at least {MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} is needed")
    if unchanged:
        return LoadedImage(rgb=rgb, jpeg=data, reencoded=False)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=jpeg_quality)
    return LoadedImage(rgb=rgb, jpeg=buffer.getvalue(), reencoded=True)

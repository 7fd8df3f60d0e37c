"""The reader: list the inputs once, sorted, with collision-free sample keys, and
decode each photo (EXIF orientation applied, RGB).

Inputs are a folder (searched recursively), a glob (`photos/**/*.jpg`) or a text
file of paths, one per line (relative paths are taken from the file's folder)."""

from __future__ import annotations

import fnmatch
import glob
import hashlib
import io
import os
import stat
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from simlidar.teachers import DEPTH_SIDECAR_SUFFIXES, find_depth_sidecar

from ..errors import PipelineError, without_addresses
from ..schema import sanitize_key

# Photos a folder or glob lists, the same a list file may name: what Pillow decodes, and
# HEIC, which it cannot, listed so that each is recorded with what to do rather than missed.
UNDECODABLE_SUFFIXES = {".heic", ".heif"}
IMAGE_SUFFIXES = {
    ".jpg", ".jpeg", ".jfif", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm", ".pbm", ".pnm", ".avif",
    *UNDECODABLE_SUFFIXES,
}  # fmt: skip
SIDECAR_MARKERS = (".depth.png",)
# What may lie beside a photo and be read with it: depth (teacher 'sidecar') and intrinsics.
SIDECAR_FILES = (*DEPTH_SIDECAR_SUFFIXES, ".json")
# What a text file of paths may be called.
LIST_FILE_SUFFIXES = ("", ".txt", ".lst", ".list")
MIN_IMAGE_SIDE = 8
EXIF_ORIENTATION = 0x0112
# A photo file larger than this is refused unread (a 24 MP JPEG is ~10 MB; a PNG ~70 MB).
MAX_INPUT_BYTES = 256 * 2**20


class BadImage(Exception):
    """An input that is not a usable photo; recorded in errors.jsonl and skipped."""


@dataclass(frozen=True)
class SourceItem:
    """root: the folder inputs are listed from; relpath: POSIX path relative to it (or
    absolute, for a listed path outside it); key: the sample key stem (no dots),
    unique within the run. Strings, not Paths: a million of them list in seconds."""

    root: str
    relpath: str
    key: str

    @property
    def path(self) -> Path:
        return Path(self.root, self.relpath)

    def stage(self, folder: Path) -> StagedInput:
        """The photo as local files: here already, read where it is."""
        return StagedInput(self.path)

    def has_depth_sidecar(self) -> bool:
        return find_depth_sidecar(self.path) is not None

    def files(self) -> dict[str, None]:
        """What this photo is read from: itself and every sidecar it may have (present or not),
        their state to be looked up (sources/fingerprint.py)."""
        return dict.fromkeys([str(self.path), *beside(str(self.path), SIDECAR_FILES)])


@dataclass
class StagedInput:
    """A photo made local: `path` with its sidecars beside it (photo.depth.png,
    photo.json); source_meta: what the source said about it, for the sample's json."""

    path: Path
    source_meta: dict | None = None


@dataclass
class LoadedImage:
    """rgb: (H, W, 3) uint8 as displayed; jpeg: the bytes to store as KEY.jpg
    (the original file when it is an upright RGB JPEG, else a re-encode)."""

    rgb: np.ndarray
    jpeg: bytes
    reencoded: bool


def beside(path: str, suffixes: tuple[str, ...]) -> list[str]:
    """The files named like `path` (a path or a URL) with each suffix in place of its extension."""
    stem = path[: len(path) - len(os.path.splitext(path)[1])]
    return [stem + suffix for suffix in suffixes]


def list_inputs(source: str) -> tuple[list[SourceItem], Path]:
    """The sorted inputs of `source` (a folder, a glob or a text file of paths) and
    the folder their relative paths (and so their keys) are taken from."""
    path = Path(source)
    if glob.has_magic(source):
        root = _glob_root(source)
        return _items_from_relpaths(root, _glob_relpaths(root, Path(source).parts[len(root.parts) :])), root
    if path.is_dir():
        return list_images(path), path
    if path.is_file():
        check_list_file(source)
        return _items(path.parent, _paths_from_list(path)), path.parent
    raise PipelineError(f"`images` {source} does not exist (give a folder, a glob or a text file of paths)")


def list_images(root: Path) -> list[SourceItem]:
    """Every image file under `root` (recursive, sorted by relative path), skipping
    hidden files and depth sidecars."""
    if not root.exists():
        raise PipelineError(f"input folder {root} does not exist")
    if not root.is_dir():
        raise PipelineError(f"`images` must be a folder, {root} is a file")
    return _items_from_relpaths(root, [relpath for relpath in _walk(root) if is_image_name(relpath.rpartition("/")[2])])


def _walk(root: Path, max_depth: int | None = None):
    """Relative POSIX paths of the non-folder entries under `root`, at most `max_depth`
    folders down; hidden folders are skipped and symlinked folders not entered (os.walk's
    default: a link loop would list the same photos again and again)."""
    for folder, subfolders, files in os.walk(root, followlinks=False):
        relfolder = os.path.relpath(folder, root).replace(os.sep, "/")
        depth = 0 if relfolder == "." else relfolder.count("/") + 1
        subfolders[:] = [
            name for name in subfolders if not name.startswith(".") and (max_depth is None or depth < max_depth)
        ]
        yield from (name if relfolder == "." else f"{relfolder}/{name}" for name in files)


def _glob_relpaths(root: Path, pattern_parts: tuple[str, ...]) -> list[str]:
    """Image paths under `root` matching the glob parts (`**` = any folders, `*` never a
    leading dot), found without following symlinked folders, as folder mode does."""
    max_depth = None if "**" in pattern_parts else len(pattern_parts) - 1
    return [
        relpath
        for relpath in _walk(root, max_depth)
        if is_image_name(relpath.rpartition("/")[2]) and _glob_match(tuple(relpath.split("/")), pattern_parts)
    ]


def _glob_match(parts: tuple[str, ...], pattern_parts: tuple[str, ...]) -> bool:
    if not pattern_parts:
        return not parts
    head, rest = pattern_parts[0], pattern_parts[1:]
    if head == "**":
        return any(_glob_match(parts[skip:], rest) for skip in range(len(parts) + 1))
    return (
        bool(parts)
        and fnmatch.fnmatchcase(parts[0], head)
        and (head.startswith(".") or not parts[0].startswith("."))
        and _glob_match(parts[1:], rest)
    )


def is_image_name(name: str) -> bool:
    lowered = name.lower()
    return (
        not name.startswith(".")
        and not lowered.endswith(SIDECAR_MARKERS)
        and os.path.splitext(lowered)[1] in IMAGE_SUFFIXES
    )


def _glob_root(pattern: str) -> Path:
    """The longest leading part of `pattern` with no wildcard: the folder keys are relative to."""
    parts = Path(pattern).parts
    first_wildcard = next(index for index, part in enumerate(parts) if glob.has_magic(part))
    return Path(*parts[:first_wildcard]) if first_wildcard else Path(".")


def check_list_file(source: str) -> None:
    """Refuse a file given as --images that is not a text file of paths (a photo, a JSON file,
    compressed shards), before it is read as one."""
    name = source.rstrip("/").rpartition("/")[2]
    suffix = os.path.splitext(name)[1].lower()
    if is_image_name(name):
        raise PipelineError(f"`images` {source} is one photo; give its folder, a glob or a text file of paths")
    if ".tar." in name.lower() or suffix in (".tgz", ".tbz2", ".txz"):
        raise PipelineError(f"`images` {source}: compressed shards are not read; give uncompressed .tar shards")
    if suffix not in LIST_FILE_SUFFIXES:
        raise PipelineError(
            f"`images` {source} is a {suffix} file, not a list of paths: give a folder, a glob, .tar shards or a "
            f"text file of paths ({', '.join(suffix or 'no suffix' for suffix in LIST_FILE_SUFFIXES)})"
        )


def list_file_entries(data: bytes, list_file: str) -> list[str]:
    """The entries of a list file's bytes: UTF-8 (a byte-order mark dropped), one per line,
    blank lines and # comments left out."""
    try:
        lines = data.decode("utf-8-sig").splitlines()
    except UnicodeDecodeError as error:
        raise PipelineError(f"cannot read the list of paths {list_file} ({error}); give a UTF-8 text file") from None
    stripped = (line.strip() for line in lines)
    return [line for line in stripped if line and not line.startswith("#")]


def _paths_from_list(list_file: Path) -> list[str]:
    """The local paths a list file on this machine names (a URL in it is refused: it would be
    read as a path)."""
    try:
        data = list_file.read_bytes()
    except OSError as error:
        raise PipelineError(f"cannot read the list of paths {list_file} ({error.strerror or error})") from None
    entries = list_file_entries(data, str(list_file))
    url = next((entry for entry in entries if "://" in entry), None)
    if url is not None:
        raise PipelineError(
            f"{list_file} names a URL ({url}): a list file on this machine names local paths; put a list of "
            "URLs on the store and pass its URL as `images`"
        )
    return entries


def _items(root: Path, paths: list[str]) -> list[SourceItem]:
    """Items for explicit paths (absolute, or relative to `root`); those outside `root`
    keep their absolute path as relpath."""
    root_absolute = os.path.abspath(root)
    prefix = root_absolute.rstrip(os.sep) + os.sep
    relpaths = set()
    for path in paths:
        absolute = os.path.normpath(os.path.join(root_absolute, path))
        relative = absolute[len(prefix) :] if absolute.startswith(prefix) else absolute
        relpaths.add(relative.replace(os.sep, "/"))
    return _items_from_relpaths(root, sorted(relpaths))


def _items_from_relpaths(root: Path, relpaths: list[str]) -> list[SourceItem]:
    relpaths = sorted(relpaths)
    return [SourceItem(str(root), relpath, key) for relpath, key in zip(relpaths, unique_keys(relpaths), strict=True)]


def unique_keys(relpaths: list[str]) -> list[str]:
    """Sanitised keys; paths whose keys would collide get a hash of the path appended."""
    return disambiguate([sanitize_key(os.path.splitext(relpath)[0]) for relpath in relpaths], relpaths)


def disambiguate(keys: list[str], names: list[str]) -> list[str]:
    """keys, each found more than once with "-" and 8 hex digits of its name's sha1 appended."""
    counts = Counter(keys)
    return [
        key if counts[key] == 1 else f"{key}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"
        for key, name in zip(keys, names, strict=True)
    ]


def _to_rgb(image: Image.Image) -> np.ndarray:
    """(H, W, 3) uint8 of a photo in any PIL mode. Grey of more than 8 bits (16-bit 'I;16',
    32-bit 'I', float 'F') is read on the range its values use: 0..1 (float only), 0..255,
    0..65535, else 0..max (where convert('RGB') clips everything above 255 to white and an
    'I' of 8-bit values would turn black); negative and non-finite values are black. Other
    modes (grey, palette, CMYK, RGBA with alpha dropped) convert as usual."""
    if not (image.mode.startswith("I") or image.mode == "F"):
        return np.asarray(image.convert("RGB"))
    values = np.asarray(image, dtype=np.float64)
    values = np.where(np.isfinite(values) & (values > 0), values, 0.0)
    peak = float(values.max(initial=0.0))
    white = next((top for top in (*((1.0,) if image.mode == "F" else ()), 255.0, 65535.0) if peak <= top), peak)
    grey = np.round(values * (255.0 / white))
    return np.repeat(np.clip(grey, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


def read_input_file(path: Path, max_bytes: int = MAX_INPUT_BYTES) -> bytes:
    """The bytes of an input file: a regular file (after following links) of at most
    `max_bytes`; a FIFO, a device or a folder is never opened (reading one hangs or
    never ends). Raises BadImage with the reason."""
    try:
        status = os.stat(path)
    except OSError as error:
        raise BadImage(f"unreadable file ({error.strerror or type(error).__name__})") from None
    if not stat.S_ISREG(status.st_mode):
        raise BadImage(f"not a regular file (a {_file_kind(status.st_mode)}); only regular files are read")
    if status.st_size > max_bytes:
        raise BadImage(f"file is {status.st_size / 2**20:.0f} MiB; inputs of at most {max_bytes // 2**20} MiB are read")
    try:
        with open(path, "rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as error:
        raise BadImage(f"unreadable file ({error.strerror or type(error).__name__})") from None
    if len(data) > max_bytes:
        raise BadImage(f"file grew past {max_bytes // 2**20} MiB while read")
    return data


def _file_kind(mode: int) -> str:
    kinds = ((stat.S_ISDIR, "folder"), (stat.S_ISFIFO, "FIFO"), (stat.S_ISCHR, "character device"))
    kinds += ((stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket"))
    return next((name for test, name in kinds if test(mode)), "special file")


def _check_pixels(path: Path, width: int, height: int, max_pixels: int) -> None:
    """A photo's run holds ~250 bytes per pixel: one above `max_pixels` could exhaust memory."""
    if max_pixels and width * height > max_pixels:
        raise BadImage(
            f"{path.name} is {width}x{height} ({width * height} pixels), above --max-pixels ({max_pixels}): "
            "shrink it, or raise --max-pixels where memory allows"
        )


def decode_problem(error: Exception) -> str:
    """Why PIL could not decode, in words that do not change from run to run (PIL puts
    the address of its buffer object in some messages)."""
    if isinstance(error, UnidentifiedImageError):
        return "not a format PIL knows"
    return without_addresses(str(error))


def load_image(path: Path, jpeg_quality: int, max_pixels: int = 0) -> LoadedImage:
    """Decode a photo; raise BadImage with the reason when it cannot be used, or when it
    has more than `max_pixels` (0: no bound), before it is decoded."""
    if path.suffix.lower() in UNDECODABLE_SUFFIXES:
        raise BadImage(f"{path.suffix.upper()[1:]} photos cannot be decoded here; convert them to JPEG first")
    data = read_input_file(path)
    if not data:
        raise BadImage("empty file")
    try:
        with Image.open(io.BytesIO(data)) as image:
            _check_pixels(path, *image.size, max_pixels)
            image.load()
            orientation = image.getexif().get(EXIF_ORIENTATION, 1)
            unchanged = image.format == "JPEG" and image.mode == "RGB" and orientation == 1
            rgb = _to_rgb(ImageOps.exif_transpose(image))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise BadImage(f"not a readable image ({decode_problem(error)})") from None
    height, width = rgb.shape[:2]
    if min(height, width) < MIN_IMAGE_SIDE:
        raise BadImage(f"image is {width}x{height}; at least {MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} is needed")
    if unchanged:
        return LoadedImage(rgb=rgb, jpeg=data, reencoded=False)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=jpeg_quality)
    return LoadedImage(rgb=rgb, jpeg=buffer.getvalue(), reencoded=True)

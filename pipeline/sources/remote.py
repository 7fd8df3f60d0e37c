"""Photos on an fsspec filesystem (`s3://bucket/photos/`, `'gs://bucket/**/*.jpg'`, a
text file of paths or URLs): listed as local photos are (sorted, keys from the path
relative to the folder the source names) and, when a worker reads one, staged into a
local folder together with the sidecars found beside it, so every later step reads
local files exactly as for a photo on disk."""

from __future__ import annotations

import glob
import posixpath
from dataclasses import dataclass
from pathlib import Path

from ..errors import PipelineError
from .photos import BadImage, StagedInput, is_image_name, unique_keys
from .urls import filesystem, join

# Files beside a photo that later steps read: depth (teacher 'sidecar') and intrinsics.
SIDECAR_SUFFIXES = (".depth.png", ".depth.npy", ".json")


@dataclass(frozen=True)
class RemoteItem:
    """root: the URL inputs are listed from; relpath: POSIX path relative to it (or the
    full URL for a listed file outside it); key: as for local photos; sidecars: the
    SIDECAR_SUFFIXES present beside the photo when it was listed."""

    root: str
    relpath: str
    key: str
    sidecars: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        return join(self.root, self.relpath)

    def has_depth_sidecar(self) -> bool:
        return any(suffix.startswith(".depth.") for suffix in self.sidecars)

    def stage(self, folder: Path) -> StagedInput:
        """Copy the photo and its sidecars to folder/KEY/, keeping the photo's file name."""
        fs, path = filesystem(self.url)
        stem = path[: len(path) - len(posixpath.splitext(path)[1])]
        names = {path: posixpath.basename(path)}
        names.update({stem + suffix: posixpath.basename(stem) + suffix for suffix in self.sidecars})
        try:
            contents = fs.cat(list(names), on_error="raise")
        except FileNotFoundError:
            raise BadImage("no such file on the store (or a sidecar beside it was removed after listing)") from None
        target = folder / self.key
        target.mkdir(parents=True, exist_ok=True)
        for source, name in names.items():
            (target / name).write_bytes(contents[source])
        return StagedInput(target / names[path])


def list_remote_inputs(source: str) -> tuple[list[RemoteItem], str]:
    """The sorted photos of `source` (a folder, a glob or a text file of paths, as a URL)
    and the URL their relative paths are taken from."""
    fs, path = filesystem(source)
    try:
        root, files, present = _list(fs, path, source)
    except (PermissionError, OSError) as error:
        raise PipelineError(f"cannot list {source} ({type(error).__name__}: {error})") from None
    photos = sorted(found for found in files if _visible_photo(found, root))
    relatives = [_relative(found, root) for found in photos]
    keys = unique_keys([relative or found for relative, found in zip(relatives, photos, strict=True)])
    root_url = fs.unstrip_protocol(root)
    items = [
        RemoteItem(root_url, relative, key, _sidecars_of(photo, present))
        if relative
        else RemoteItem("", fs.unstrip_protocol(photo), key, _sidecars_of(photo, present))
        for photo, relative, key in zip(photos, relatives, keys, strict=True)
    ]
    return items, root_url


def _list(fs, path: str, source: str) -> tuple[str, list[str], set[str]]:
    """(root, files the source names, every file present where they are: to find sidecars)."""
    if glob.has_magic(path):
        files = [name for name, info in fs.glob(path, detail=True).items() if info["type"] == "file"]
        return _glob_root(path), files, set(files) | _files_beside(fs, files)
    if fs.isdir(path):
        files = fs.find(path)
        return path.rstrip("/"), files, set(files)
    if fs.isfile(path):
        if is_image_name(posixpath.basename(path)):
            raise PipelineError(f"{source} is one photo; give its folder, a glob or a text file of paths")
        files = _listed_paths(fs, path)
        return posixpath.dirname(path), files, _files_beside(fs, files)
    raise PipelineError(f"{source} does not exist (give a folder, a glob or a text file of paths)")


def _glob_root(pattern: str) -> str:
    parts = pattern.split("/")
    first_wildcard = next(index for index, part in enumerate(parts) if glob.has_magic(part))
    return "/".join(parts[:first_wildcard])


def _listed_paths(fs, list_path: str) -> list[str]:
    """The entries of a text file of paths: URLs on the same store, or paths relative to the file's folder."""
    try:
        lines = fs.cat_file(list_path).decode().splitlines()
    except UnicodeDecodeError as error:
        raise PipelineError(f"cannot read the list of paths {list_path} ({error}); give a UTF-8 text file") from None
    folder = posixpath.dirname(list_path)
    entries = (line.strip() for line in lines)
    return [
        fs._strip_protocol(entry) if "://" in entry else posixpath.normpath(posixpath.join(folder, entry))
        for entry in entries
        if entry and not entry.startswith("#")
    ]


def _files_beside(fs, files: list[str]) -> set[str]:
    """Every file in the folders of `files` (one listing per folder), to find sidecars."""
    beside: set[str] = set()
    for folder in sorted({posixpath.dirname(found) for found in files}):
        try:
            beside.update(entry["name"] for entry in fs.ls(folder, detail=True) if entry["type"] == "file")
        except FileNotFoundError:
            continue
    return beside


def _visible_photo(path: str, root: str) -> bool:
    folders = (_relative(path, root) or "").split("/")[:-1]
    return is_image_name(posixpath.basename(path)) and not any(part.startswith(".") for part in folders)


def _relative(path: str, root: str) -> str | None:
    """`path` relative to `root`, or None when it is outside."""
    prefix = root.rstrip("/") + "/"
    return path[len(prefix) :] if path.startswith(prefix) else None


def _sidecars_of(photo: str, present: set[str]) -> tuple[str, ...]:
    stem = photo[: len(photo) - len(posixpath.splitext(photo)[1])]
    return tuple(suffix for suffix in SIDECAR_SUFFIXES if stem + suffix in present)

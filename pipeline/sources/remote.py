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
from .fingerprint import listed_state
from .photos import (
    SIDECAR_FILES,
    BadImage,
    StagedInput,
    beside,
    check_list_file,
    is_image_name,
    list_file_entries,
    unique_keys,
)
from .urls import filesystem, join


@dataclass(frozen=True)
class RemoteItem:
    """root: the URL inputs are listed from; relpath: POSIX path relative to it (or the
    full URL for a listed file outside it); key: as for local photos; sidecars: the
    SIDECAR_FILES present beside the photo when it was listed."""

    root: str
    relpath: str
    key: str
    sidecars: tuple[str, ...] = ()
    states: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        return join(self.root, self.relpath)

    def has_depth_sidecar(self) -> bool:
        return any(suffix.startswith(".depth.") for suffix in self.sidecars)

    def files(self) -> dict[str, str]:
        """What this photo is read from, itself and every sidecar it may have, with their state
        as the listing found them (`states`: the photo's, then each present sidecar's)."""
        listed = dict(zip((self.url, *beside(self.url, self.sidecars)), self.states, strict=True))
        return {location: listed.get(location, "absent") for location in (self.url, *beside(self.url, SIDECAR_FILES))}

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
        RemoteItem(root_url, relative, key, *_sidecars_of(photo, present))
        if relative
        else RemoteItem("", fs.unstrip_protocol(photo), key, *_sidecars_of(photo, present))
        for photo, relative, key in zip(photos, relatives, keys, strict=True)
    ]
    return items, root_url


def _list(fs, path: str, source: str) -> tuple[str, list[str], dict[str, str]]:
    """(root, files the source names, every file present where they are with its state: to
    find sidecars and fingerprint them without another request)."""
    if glob.has_magic(path):
        found = {name: info for name, info in fs.glob(path, detail=True).items() if info["type"] == "file"}
        return _glob_root(path), list(found), {**_states(found), **_files_beside(fs, list(found))}
    if fs.isdir(path):
        found = fs.find(path, detail=True)
        return path.rstrip("/"), list(found), _states(found)
    if fs.isfile(path):
        check_list_file(source)
        files = _listed_paths(fs, path)
        return posixpath.dirname(path), files, _files_beside(fs, files)
    raise PipelineError(f"{source} does not exist (give a folder, a glob or a text file of paths)")


def _glob_root(pattern: str) -> str:
    parts = pattern.split("/")
    first_wildcard = next(index for index, part in enumerate(parts) if glob.has_magic(part))
    return "/".join(parts[:first_wildcard])


def _listed_paths(fs, list_path: str) -> list[str]:
    """The entries of a text file of paths: URLs on the same store, or paths relative to the file's folder."""
    folder = posixpath.dirname(list_path)
    return [
        fs._strip_protocol(entry) if "://" in entry else posixpath.normpath(posixpath.join(folder, entry))
        for entry in list_file_entries(fs.cat_file(list_path), list_path)
    ]


def _files_beside(fs, files: list[str]) -> dict[str, str]:
    """Every file in the folders of `files` (one listing per folder) with its state, to find sidecars."""
    beside: dict[str, str] = {}
    for folder in sorted({posixpath.dirname(found) for found in files}):
        try:
            beside.update(_states({entry["name"]: entry for entry in fs.ls(folder, detail=True)}))
        except FileNotFoundError:
            continue
    return beside


def _states(infos: dict[str, dict]) -> dict[str, str]:
    """name -> listed state of the files among fsspec listing entries."""
    return {name: listed_state(info) for name, info in infos.items() if info.get("type") == "file"}


def _visible_photo(path: str, root: str) -> bool:
    folders = (_relative(path, root) or "").split("/")[:-1]
    return is_image_name(posixpath.basename(path)) and not any(part.startswith(".") for part in folders)


def _relative(path: str, root: str) -> str | None:
    """`path` relative to `root`, or None when it is outside."""
    prefix = root.rstrip("/") + "/"
    return path[len(prefix) :] if path.startswith(prefix) else None


def _sidecars_of(photo: str, present: dict[str, str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(the SIDECAR_FILES present beside `photo`, the states of the photo and of those)."""
    stem = photo[: len(photo) - len(posixpath.splitext(photo)[1])]
    sidecars = tuple(suffix for suffix in SIDECAR_FILES if stem + suffix in present)
    return sidecars, (present.get(photo, "absent"), *(present[stem + suffix] for suffix in sidecars))

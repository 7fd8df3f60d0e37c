"""The output folder's file operations (those of output/store.py) on an object store,
for an output given as an fsspec URL (`s3://bucket/run/`) and held as a UPath.

The rules are those of a local folder, kept where objects cannot be renamed or
appended to: a large file (a shard) is written under a temporary name in a local
scratch folder of this process and "renamed" by uploading it whole (one PUT, or a
multipart upload that appears only when complete), so no partial object is ever
visible under its name; small files are replaced whole by one PUT; an exclusive
create is a conditional PUT (If-None-Match), which S3, GCS and moto honour."""

from __future__ import annotations

import fnmatch
import json
import time
from pathlib import Path

from upath import UPath

from ..sources.urls import LOCAL_SCHEMES, filesystem, is_url, local_path, scratch_folder

HASH_CHUNK = 1 << 20


def is_remote(path) -> bool:
    """True for a location on an object store (a UPath of a non-local filesystem)."""
    return isinstance(path, UPath) and (path.protocol or None) not in LOCAL_SCHEMES


def location(text: str) -> Path | UPath:
    """The output folder `text` names: a Path on this machine, or a UPath for a URL
    (checked first, so a missing optional package is one line naming the extra)."""
    if not is_url(text):
        return Path(local_path(text))
    filesystem(text)
    return UPath(text.rstrip("/"))


def _fresh(path: UPath):
    """The filesystem of `path`, its listing cache dropped: other processes write here too."""
    path.fs.invalidate_cache(path.path)
    return path.fs


def exists(path: UPath) -> bool:
    return _fresh(path).isfile(path.path)


def make_folder(path: UPath) -> None:
    """Nothing to do: an object store has no folders, only names with slashes."""


def list_names(folder: UPath, pattern: str = "*") -> list[str]:
    """Sorted names directly under `folder` matching a shell pattern; [] when there are none."""
    try:
        found = _fresh(folder).ls(folder.path, detail=False)
    except FileNotFoundError:
        return []
    names = (name.rstrip("/").rsplit("/", 1)[-1] for name in found)
    return sorted(name for name in names if fnmatch.fnmatchcase(name, pattern))


def open_for_reading(path: UPath):
    """The object as a binary file read in large blocks (store.size_and_sha256 hashes it);
    FileNotFoundError when there is none."""
    return _fresh(path).open(path.path, "rb", block_size=HASH_CHUNK)


def age_s(path: UPath) -> float:
    """Seconds since the object was last written (0 when it is gone)."""
    try:
        modified = _fresh(path).modified(path.path)
    except FileNotFoundError:
        return 0.0
    return time.time() - modified.timestamp()


def read_bytes(path: UPath) -> bytes:
    return _fresh(path).cat_file(path.path)


def read_json(path: UPath):
    return json.loads(read_bytes(path))


def temporary_name(path: UPath) -> Path:
    """A local file to write `path`'s bytes into before rename(), in this process's scratch folder."""
    return scratch_folder() / f"{path.name}.tmp"


def write_atomically(path: UPath, data: bytes) -> None:
    """One PUT: readers see the old object or the new one, never half."""
    path.fs.pipe_file(path.path, data)


def write_json_atomically(path: UPath, record) -> None:
    write_atomically(path, json.dumps(record, indent=2, sort_keys=True).encode())


def overwrite_in_place(path: UPath, data: bytes) -> None:
    """One PUT, as write_atomically: an object store needs no room beside the object."""
    write_atomically(path, data)


def rename(source: Path, target: UPath) -> None:
    """Upload the finished local file `source` whole as `target`, then remove it."""
    try:
        target.fs.put_file(str(source), target.path)
    finally:
        source.unlink(missing_ok=True)


def create_exclusively(path: UPath, data: bytes) -> bool:
    """A conditional PUT that fails when the object exists; False when it did."""
    try:
        path.fs.pipe_file(path.path, data, mode="create")
    except FileExistsError:
        return False
    return True


def append(path: UPath, data: bytes) -> None:
    """Add `data` at the end of `path` by replacing it whole (objects cannot be appended to)."""
    try:
        previous = read_bytes(path)
    except FileNotFoundError:
        previous = b""
    write_atomically(path, previous + data)


def remove(path: UPath) -> None:
    """Remove an object if it is there."""
    try:
        _fresh(path).rm_file(path.path)
    except FileNotFoundError:
        pass


def remove_folder(path: UPath) -> None:
    """Remove every object under `path`, if any."""
    fs = _fresh(path)
    if fs.exists(path.path):
        fs.rm(path.path, recursive=True)


def download(path: UPath, destination: Path) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    _fresh(path).get_file(path.path, str(destination))


def upload(source: Path, target: UPath) -> None:
    """Copy the local file `source` whole to `target`, keeping `source`."""
    target.fs.put_file(str(source), target.path)

"""The output folder's file operations, in one place, so that another storage (an
object store) needs only these rewritten: the run's records (manifest, inputs list,
errors, stats, lock), the checks resume and inspect make (exists, list, size and
SHA-256, read), and the shard writer's temporary name, rename and removal. (The writer
streams into its temporary file; previews and publish's Hub staging stay local.) A
location on an object store (an --out URL, held as a UPath) is handed to the function
of the same name in object_store.py.

A write is atomic: the bytes go to a temporary name unique to this process and are
renamed over the target, so a reader sees the old file or the new one, never half."""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import shutil
import socket
import time
from pathlib import Path

from . import object_store
from .object_store import is_remote

TEMPORARY_SUFFIX = ".tmp"
HASH_CHUNK = 1 << 20


def exists(path: Path) -> bool:
    """Whether a file (not a folder) is at `path`."""
    if is_remote(path):
        return object_store.exists(path)
    return path.is_file()


def make_folder(path: Path) -> None:
    if is_remote(path):
        return object_store.make_folder(path)
    path.mkdir(parents=True, exist_ok=True)


def list_names(folder: Path, pattern: str = "*") -> list[str]:
    """Sorted names in `folder` (not recursive) matching a shell pattern; [] when it does not exist."""
    if is_remote(folder):
        return object_store.list_names(folder, pattern)
    try:
        names = os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(name for name in names if fnmatch.fnmatchcase(name, pattern))


def size_and_sha256(path: Path) -> tuple[int, str] | None:
    """(size in bytes, SHA-256 hex) of a regular file, or None when there is none."""
    if not is_remote(path) and not path.is_file():
        return None
    digest = hashlib.sha256()
    size = 0
    try:
        with object_store.open_for_reading(path) if is_remote(path) else open(path, "rb") as handle:
            while chunk := handle.read(HASH_CHUNK):
                digest.update(chunk)
                size += len(chunk)
    except FileNotFoundError:
        return None
    return size, digest.hexdigest()


def age_s(path: Path) -> float:
    """Seconds since `path` was last written (0 when it is gone)."""
    if is_remote(path):
        return object_store.age_s(path)
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def read_bytes(path: Path) -> bytes:
    if is_remote(path):
        return object_store.read_bytes(path)
    return path.read_bytes()


def read_json(path: Path):
    if is_remote(path):
        return object_store.read_json(path)
    return json.loads(path.read_text())


def temporary_name(path: Path) -> Path:
    """A name beside `path` that no other process writing `path` uses (host and pid in it),
    so two writers never clobber each other's half-written file."""
    if is_remote(path):
        return object_store.temporary_name(path)
    return path.with_name(f"{path.name}.{socket.gethostname()}-{os.getpid()}{TEMPORARY_SUFFIX}")


def write_atomically(path: Path, data: bytes) -> None:
    if is_remote(path):
        return object_store.write_atomically(path, data)
    temporary = temporary_name(path)
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        remove(temporary)


def write_json_atomically(path: Path, record) -> None:
    write_atomically(path, json.dumps(record, indent=2, sort_keys=True).encode())


def overwrite_in_place(path: Path, data: bytes) -> None:
    """Replace a file's bytes where they lie: not atomic, but it needs no room for a second
    copy, so it works on a full disk (for a last record of why a run stopped)."""
    if is_remote(path):
        return object_store.overwrite_in_place(path, data)
    with open(path, "r+b") as handle:
        handle.write(data)
        handle.truncate()
        handle.flush()
        os.fsync(handle.fileno())


def rename(source: Path, target: Path) -> None:
    """Move `source` over `target` in one step."""
    if is_remote(target):
        return object_store.rename(source, target)
    os.replace(source, target)


def create_exclusively(path: Path, data: bytes) -> bool:
    """Write `path` only if it does not exist yet, in one step; False when it already did."""
    if is_remote(path):
        return object_store.create_exclusively(path, data)
    temporary = temporary_name(path)
    try:
        temporary.write_bytes(data)
        os.link(temporary, path)
    except FileExistsError:
        return False
    finally:
        remove(temporary)
    return True


def remove(path: Path) -> None:
    """Remove a file if it is there."""
    if is_remote(path):
        return object_store.remove(path)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def remove_folder(path: Path) -> None:
    """Remove a folder and everything in it, if it is there."""
    if is_remote(path):
        return object_store.remove_folder(path)
    shutil.rmtree(path, ignore_errors=True)

"""One store per output location: a folder on this machine or a folder on an object store
(an fsspec URL: `s3://bucket/run/`), resolved once by `open_store` and then used through
the same methods, so that no caller asks where its files live.

Names are relative to the store's folder (`shard-000000.tar`, `previews/stats.json`).
The rules are those of a local folder, kept where objects cannot be renamed or appended
to:
- a write is atomic: readers see the old file or the new one, never half (a local file
  is written under a temporary name of this process and renamed over the target; an
  object is replaced by one PUT);
- a large file (a shard) is written through `new_file` under a temporary name and takes
  its name only when committed (on an object store: written in this process's local
  scratch folder and uploaded whole, one PUT or a multipart upload that appears only
  when complete);
- an exclusive create happens in one step (a hard link; a conditional PUT with
  If-None-Match, which S3, GCS and moto honour)."""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import shutil
import socket
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from ..sources.urls import filesystem, is_url, local_path, scratch_folder

TEMPORARY_SUFFIX = ".tmp"
HASH_CHUNK = 1 << 20
# Where the local copies of outputs on a store live (one folder per URL).
MIRRORS = "simlidar-mirror"


class PendingFile:
    """A file being written under a temporary name (`handle`, open for binary writing):
    `commit()` gives it its name in one step, `discard()` removes it."""

    def __init__(self, temporary: Path, publish: Callable[[Path], None]):
        self.temporary = temporary
        self.handle: BinaryIO = temporary.open("wb")
        self._publish = publish

    def commit(self) -> None:
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()
        self._publish(self.temporary)

    def discard(self) -> None:
        self.handle.close()
        self.temporary.unlink(missing_ok=True)


class Store(ABC):
    """A folder of files by name. Besides the methods here: where (a name as a user finds it),
    is_file (whether the location itself is a file), exists, make_folder, list_names, age_s,
    new_file, overwrite_in_place, create_exclusively, appending, remove, remove_folder,
    local_copy and save_back, alike in both stores. `location`: the folder as the user gave it."""

    location: str

    def __str__(self) -> str:
        return self.location

    def __eq__(self, other) -> bool:
        return type(other) is type(self) and other.location == self.location

    def __hash__(self) -> int:
        return hash(self.location)

    @abstractmethod
    def open_for_reading(self, name: str) -> BinaryIO:
        """The file as a binary stream; FileNotFoundError when there is none."""

    @abstractmethod
    def read_bytes(self, name: str) -> bytes: ...

    @abstractmethod
    def write_atomically(self, name: str, data: bytes) -> None: ...

    def size_and_sha256(self, name: str) -> tuple[int, str] | None:
        """(size in bytes, SHA-256 hex) of the file `name`, or None when there is none."""
        digest = hashlib.sha256()
        size = 0
        try:
            with self.open_for_reading(name) as handle:
                while chunk := handle.read(HASH_CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
        except FileNotFoundError:
            return None
        return size, digest.hexdigest()

    def read_json(self, name: str):
        return json.loads(self.read_bytes(name))

    @abstractmethod
    def holds(self, location: str) -> bool:
        """Whether `location` (a path or URL) lies inside this store's folder."""

    def write_json_atomically(self, name: str, record) -> None:
        self.write_atomically(name, json.dumps(record, indent=2, sort_keys=True).encode())


class LocalStore(Store):
    """A folder on this machine (or a shared filesystem every node mounts)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.location = str(root)

    def where(self, name: str) -> str:
        """`name` as a user finds it (for messages)."""
        return str(self.root / name)

    def is_file(self) -> bool:
        """Whether the location itself is a file (where a folder is needed)."""
        return self.root.is_file()

    def holds(self, location: str) -> bool:
        if is_url(location):
            return False
        return os.path.abspath(local_path(location)).startswith(os.path.join(os.path.abspath(self.root), ""))

    def exists(self, name: str) -> bool:
        """Whether a file (not a folder) is at `name`."""
        return (self.root / name).is_file()

    def make_folder(self, name: str = "") -> None:
        (self.root / name).mkdir(parents=True, exist_ok=True)

    def list_names(self, pattern: str = "*") -> list[str]:
        """Sorted names in the folder (not recursive) matching a shell pattern; [] when it does not exist."""
        try:
            names = os.listdir(self.root)
        except (FileNotFoundError, NotADirectoryError):
            return []
        return sorted(name for name in names if fnmatch.fnmatchcase(name, pattern))

    def open_for_reading(self, name: str) -> BinaryIO:
        """A regular file only: a FIFO would block, a folder cannot be read."""
        if not self.exists(name):
            raise FileNotFoundError(self.where(name))
        return (self.root / name).open("rb")

    def age_s(self, name: str) -> float:
        """Seconds since `name` was last written (0 when it is gone)."""
        try:
            return time.time() - (self.root / name).stat().st_mtime
        except FileNotFoundError:
            return 0.0

    def read_bytes(self, name: str) -> bytes:
        return (self.root / name).read_bytes()

    def _temporary(self, name: str) -> Path:
        """A name beside `name` that no other process writing it uses (host and pid in it),
        so two writers never clobber each other's half-written file."""
        target = self.root / name
        return target.with_name(f"{target.name}.{socket.gethostname()}-{os.getpid()}{TEMPORARY_SUFFIX}")

    def new_file(self, name: str) -> PendingFile:
        """`name`, written under this process's temporary name beside it until committed."""
        return PendingFile(self._temporary(name), lambda temporary: os.replace(temporary, self.root / name))

    def write_atomically(self, name: str, data: bytes) -> None:
        pending = self.new_file(name)
        try:
            pending.handle.write(data)
            pending.commit()
        finally:
            pending.discard()

    def overwrite_in_place(self, name: str, data: bytes) -> None:
        """Replace a file's bytes where they lie: not atomic, but it needs no room for a second
        copy, so it works on a full disk (for a last record of why a run stopped)."""
        with (self.root / name).open("r+b") as handle:
            handle.write(data)
            handle.truncate()
            handle.flush()
            os.fsync(handle.fileno())

    def create_exclusively(self, name: str, data: bytes) -> bool:
        """Write `name` only if it does not exist yet, in one step; False when it already did."""
        temporary = self._temporary(name)
        try:
            temporary.write_bytes(data)
            os.link(temporary, self.root / name)
        except FileExistsError:
            return False
        finally:
            temporary.unlink(missing_ok=True)
        return True

    @contextmanager
    def appending(self, name: str) -> Iterator[Path]:
        """A local file whose lines end up appended to `name` (the file itself, here)."""
        yield self.root / name

    def remove(self, name: str) -> None:
        """Remove a file if it is there."""
        (self.root / name).unlink(missing_ok=True)

    def remove_folder(self, name: str) -> None:
        """Remove a folder and everything in it, if it is there."""
        shutil.rmtree(self.root / name, ignore_errors=True)

    def local_copy(self) -> LocalStore:
        """This output as a folder on this machine, for the commands that read a whole output:
        the folder itself."""
        return self

    def save_back(self, copy: LocalStore, folder: str) -> None:
        """Bring what was written under copy/folder into this store: here, it already is."""


class ObjectStore(Store):
    """A folder on an object store, given as an fsspec URL (`s3://bucket/run`)."""

    def __init__(self, url: str):
        self.location = url.rstrip("/")
        self._fs, self._root = filesystem(self.location)

    def __reduce__(self):
        # The filesystem object is rebuilt where the store is unpickled (a Ray task).
        return (ObjectStore, (self.location,))

    def where(self, name: str) -> str:
        return f"{self.location}/{name}"

    def _path(self, name: str) -> str:
        return f"{self._root}/{name}" if name else self._root

    def _fresh(self, name: str):
        """The filesystem, its listing cache of `name` dropped: other processes write here too."""
        self._fs.invalidate_cache(self._path(name))
        return self._fs

    def _is_file(self, path: str, name: str) -> bool:
        """Whether an object is at `path`. fsspec's isfile says False for any error; a store
        that cannot be read at all (no credentials) must not look like an empty one."""
        try:
            return self._fresh(name).info(path)["type"] == "file"
        except FileNotFoundError:
            return False

    def is_file(self) -> bool:
        return self._is_file(self._root, "")

    def holds(self, location: str) -> bool:
        return is_url(location) and str(location).startswith(self.location + "/")

    def exists(self, name: str) -> bool:
        return self._is_file(self._path(name), name)

    def make_folder(self, name: str = "") -> None:
        """Nothing to do: an object store has no folders, only names with slashes."""

    def list_names(self, pattern: str = "*") -> list[str]:
        try:
            found = self._fresh("").ls(self._root, detail=False)
        except FileNotFoundError:
            return []
        names = (name.rstrip("/").rsplit("/", 1)[-1] for name in found)
        return sorted(name for name in names if fnmatch.fnmatchcase(name, pattern))

    def open_for_reading(self, name: str) -> BinaryIO:
        """The object as a binary file read in large blocks; FileNotFoundError when there is none."""
        return self._fresh(name).open(self._path(name), "rb", block_size=HASH_CHUNK)

    def age_s(self, name: str) -> float:
        try:
            modified = self._fresh(name).modified(self._path(name))
        except FileNotFoundError:
            return 0.0
        return time.time() - modified.timestamp()

    def read_bytes(self, name: str) -> bytes:
        return self._fresh(name).cat_file(self._path(name))

    def new_file(self, name: str) -> PendingFile:
        """`name`, written in this process's local scratch folder until committed (uploaded whole)."""
        local = scratch_folder() / f"{name.replace('/', '_')}{TEMPORARY_SUFFIX}"
        return PendingFile(local, self._upload_and_remove(name))

    def _upload_and_remove(self, name: str) -> Callable[[Path], None]:
        def publish(temporary: Path) -> None:
            try:
                self._fs.put_file(str(temporary), self._path(name))
            finally:
                temporary.unlink(missing_ok=True)

        return publish

    def write_atomically(self, name: str, data: bytes) -> None:
        """One PUT: readers see the old object or the new one, never half."""
        self._fs.pipe_file(self._path(name), data)

    def overwrite_in_place(self, name: str, data: bytes) -> None:
        """One PUT, as write_atomically: an object store needs no room beside the object."""
        self.write_atomically(name, data)

    def create_exclusively(self, name: str, data: bytes) -> bool:
        """A conditional PUT that fails when the object exists; False when it did."""
        try:
            self._fs.pipe_file(self._path(name), data, mode="create")
        except FileExistsError:
            return False
        return True

    @contextmanager
    def appending(self, name: str) -> Iterator[Path]:
        """A local file of this process whose content is added at the end of `name` when the
        block ends (by replacing the object whole: objects cannot be appended to)."""
        local = scratch_folder() / f"{name.replace('/', '_')}{TEMPORARY_SUFFIX}"
        try:
            yield local
            try:
                previous = self.read_bytes(name)
            except FileNotFoundError:
                previous = b""
            self.write_atomically(name, previous + (local.read_bytes() if local.is_file() else b""))
        finally:
            local.unlink(missing_ok=True)

    def remove(self, name: str) -> None:
        try:
            self._fresh(name).rm_file(self._path(name))
        except FileNotFoundError:
            pass

    def remove_folder(self, name: str) -> None:
        """Remove every object under `name`, if any."""
        fs = self._fresh(name)
        if fs.exists(self._path(name)):
            fs.rm(self._path(name), recursive=True)

    def download(self, name: str, destination: Path) -> None:
        destination.parent.mkdir(parents=True, exist_ok=True)
        self._fresh(name).get_file(self._path(name), str(destination))

    def upload(self, source: Path, name: str) -> None:
        """Copy the local file `source` whole to `name`, keeping `source`."""
        self._fs.put_file(str(source), self._path(name))

    def local_copy(self) -> LocalStore:
        """This output as a folder on this machine: its manifest, errors.jsonl and listed shards
        downloaded into one folder per URL under the temp folder (a shard whose copy matches the
        manifest is not fetched again)."""
        from .mirror import download_output

        digest = hashlib.sha256(self.location.encode()).hexdigest()[:16]
        return LocalStore(download_output(self, Path(tempfile.gettempdir()) / MIRRORS / digest))

    def save_back(self, copy: LocalStore, folder: str) -> None:
        """Upload what was written under copy/folder (inspect's previews) to this store."""
        for file in sorted((copy.root / folder).rglob("*")):
            if file.is_file():
                self.upload(file, file.relative_to(copy.root).as_posix())


def open_store(location: str | Path) -> Store:
    """The store of a folder given as a local path (~ expanded), a file:// URL or an object
    store URL (its filesystem resolved now, so a missing optional package is one line naming
    the extra)."""
    if is_url(str(location)):
        return ObjectStore(str(location))
    return LocalStore(Path(local_path(str(location))).expanduser())


def as_store(location: Store | str | Path) -> Store:
    """`location` as a store: one already opened as it is, else open_store(location)."""
    return location if isinstance(location, Store) else open_store(location)

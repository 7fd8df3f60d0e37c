"""The output folder of a run as a store of named files: a local folder, or a prefix on
an object store given as an fsspec URL (`s3://bucket/run/`), with the same few calls.

The rules are those of a local run, kept where objects cannot be renamed: a large file
(a shard) is written locally under a temporary name and moved (local) or uploaded
whole (object store: one PUT, or a multipart upload that appears only when complete)
under its final name, so no partial file is ever visible there; small files (stats,
manifest, errors.jsonl) are replaced whole, never edited in place; the lock is
created only if absent (an exclusive create; S3's conditional PUT on object stores)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import weakref
from pathlib import Path

from ..sources.urls import filesystem, is_url, local_path

HASH_BLOCK = 1 << 20


def stream_sha256(stream) -> str:
    """The SHA-256 (hex) of what is left to read in a binary stream, read in blocks."""
    digest = hashlib.sha256()
    for block in iter(lambda: stream.read(HASH_BLOCK), b""):
        digest.update(block)
    return digest.hexdigest()


class OutputStore:
    """Files named relative to `location` ('shard-000000.tar', 'previews/stats.json')."""

    def __init__(self, location: str | Path):
        self.location = str(location)
        self.is_local = not is_url(self.location)
        if self.is_local:
            self.root = Path(local_path(self.location))
        else:
            self.fs, self._root = filesystem(self.location)
            self._root = self._root.rstrip("/")
            self._staging: Path | None = None

    def __str__(self) -> str:
        return self.location

    def url(self, name: str) -> str:
        """Where `name` is, for messages and for readers (a path or a URL)."""
        return str(self.root / name) if self.is_local else f"{self.location.rstrip('/')}/{name}"

    def _remote(self, name: str) -> str:
        return f"{self._root}/{name}"

    def exists(self, name: str) -> bool:
        if self.is_local:
            return (self.root / name).is_file()
        self.fs.invalidate_cache(self._remote(name))
        return self.fs.isfile(self._remote(name))

    def is_empty(self) -> bool:
        """True when nothing is there (or the folder does not exist yet)."""
        if self.is_local:
            return not self.root.is_dir() or not any(self.root.iterdir())
        self.fs.invalidate_cache(self._root)
        return not self.fs.exists(self._root) or not self.fs.ls(self._root)

    def is_a_file(self) -> bool:
        """True when the location itself is a file, not a folder."""
        return (self.root.exists() and not self.root.is_dir()) if self.is_local else self.fs.isfile(self._root)

    def list(self, pattern: str = "*") -> list[str]:
        """Sorted names matching a glob pattern (`shard-*.tar`, `previews/*`)."""
        if self.is_local:
            return sorted(path.relative_to(self.root).as_posix() for path in self.root.glob(pattern))
        self.fs.invalidate_cache(self._root)
        return sorted(found[len(self._root) + 1 :] for found in self.fs.glob(self._remote(pattern)))

    def read_bytes(self, name: str) -> bytes:
        return (self.root / name).read_bytes() if self.is_local else self.fs.cat_file(self._remote(name))

    def read_text(self, name: str) -> str:
        return self.read_bytes(name).decode()

    def read_json(self, name: str):
        return json.loads(self.read_bytes(name))

    def make_folder(self) -> None:
        """Create the folder (object stores have none: nothing to do)."""
        if self.is_local:
            self.root.mkdir(parents=True, exist_ok=True)

    def write_atomically(self, name: str, data: bytes | str) -> None:
        """Replace `name` whole: readers see the old content or the new, never a mix."""
        data = data.encode() if isinstance(data, str) else data
        if self.is_local:
            path = self.root / name
            temporary = path.with_name(path.name + ".tmp")
            temporary.write_bytes(data)
            os.replace(temporary, path)
        else:
            self.fs.pipe_file(self._remote(name), data)

    def write_json_atomically(self, name: str, record) -> None:
        self.write_atomically(name, json.dumps(record, indent=2, sort_keys=True))

    def append_lines(self, name: str, lines: list[str]) -> None:
        """Add lines at the end of `name` by rewriting it whole (objects cannot be appended to)."""
        previous = self.read_text(name) if self.exists(name) else ""
        self.write_atomically(name, previous + "".join(line + "\n" for line in lines))

    def create_exclusively(self, name: str, data: bytes | str) -> bool:
        """Create `name` with `data` only if it does not exist; False if it does."""
        data = data.encode() if isinstance(data, str) else data
        if not self.is_local:
            try:
                self.fs.pipe_file(self._remote(name), data, mode="create")
            except FileExistsError:
                return False
            return True
        try:
            descriptor = os.open(self.root / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
        return True

    def staging_path(self, name: str) -> Path:
        """The local file to write `name` into before commit(): NAME.tmp beside it on
        disk; in a scratch folder of this process for an object store."""
        if self.is_local:
            return self.root / f"{name}.tmp"
        if self._staging is None:
            self._staging = Path(tempfile.mkdtemp(prefix="simlidar-staging-"))
            weakref.finalize(self, shutil.rmtree, self._staging, True)
        return self._staging / f"{name}.tmp"

    def commit(self, staged: Path, name: str) -> None:
        """Put the finished file `staged` under `name` in one step."""
        if self.is_local:
            os.replace(staged, self.root / name)
            return
        try:
            self.fs.put_file(str(staged), self._remote(name))
        finally:
            staged.unlink(missing_ok=True)

    def size(self, name: str) -> int | None:
        """The size of `name` in bytes, None when it does not exist."""
        try:
            return (self.root / name).stat().st_size if self.is_local else self.fs.info(self._remote(name))["size"]
        except FileNotFoundError:
            return None

    def sha256(self, name: str) -> str:
        with (self.root / name).open("rb") if self.is_local else self.fs.open(self._remote(name), "rb") as stream:
            return stream_sha256(stream)

    def remove(self, name: str) -> None:
        """Remove `name` if it exists."""
        if self.is_local:
            (self.root / name).unlink(missing_ok=True)
        elif self.exists(name):
            self.fs.rm_file(self._remote(name))

    def remove_folder(self, name: str) -> None:
        """Remove the folder `name` and all in it, if it exists."""
        if self.is_local:
            shutil.rmtree(self.root / name, ignore_errors=True)
            return
        self.fs.invalidate_cache(self._remote(name))
        if self.fs.exists(self._remote(name)):
            self.fs.rm(self._remote(name), recursive=True)

    def download(self, name: str, destination: Path) -> None:
        """Copy `name` to the local file `destination`."""
        destination.parent.mkdir(parents=True, exist_ok=True)
        if self.is_local:
            shutil.copyfile(self.root / name, destination)
        else:
            self.fs.get_file(self._remote(name), str(destination))

    def upload(self, source: Path, name: str) -> None:
        """Copy the local file `source` to `name` (whole, as commit() does, keeping `source`)."""
        if self.is_local:
            (self.root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, self.root / name)
        else:
            self.fs.put_file(str(source), self._remote(name))

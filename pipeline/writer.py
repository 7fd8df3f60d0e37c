"""The writer: one WebDataset tar per shard, written under a temporary name and
renamed when complete, with deterministic headers so equal samples give equal bytes;
and the shards' file names (shard-NNNNNN.tar and its .stats.json)."""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import PipelineError
from .output.store import Store
from .schema import MEMBER_ORDER, is_valid_key


class LostOutputLock(PipelineError):
    """The run that started this writer no longer holds the output folder (a newer run took
    it over after this one was killed): what it made must not land there."""


@dataclass(frozen=True)
class ShardPlan:
    """Shard `index` holds inputs [index * n, (index + 1) * n) of the sorted list
    (photos or a rig's frames)."""

    index: int
    items: tuple[Any, ...]

    @property
    def name(self) -> str:
        return f"shard-{self.index:06d}"

    @property
    def tar_name(self) -> str:
        return f"{self.name}.tar"

    @property
    def stats_name(self) -> str:
        return f"{self.name}.stats.json"


def plan_shards(items: list, shard_size: int) -> list[ShardPlan]:
    return [
        ShardPlan(index, tuple(items[start : start + shard_size]))
        for index, start in enumerate(range(0, len(items), shard_size))
    ]


class _HashingFile(io.RawIOBase):
    """A write-only file that also feeds a SHA-256 of everything written."""

    def __init__(self, handle):
        self._handle = handle
        self.sha256 = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self._handle.write(data)
        self.sha256.update(data)
        self.size += len(data)
        return len(data)

    def tell(self) -> int:
        return self.size


class ShardWriter:
    """Use as a context manager: the tar appears as `name` in `store` only if the block
    ends without an exception and `may_publish()` still says yes just before it takes its
    name (the run still holds the output folder); otherwise the partial file is removed.
    The temporary name is this process's own, so two writers never share one."""

    def __init__(self, store: Store, name: str, may_publish: Callable[[], bool] = lambda: True):
        self.store, self.name = store, name
        self._may_publish = may_publish
        self.samples = 0
        self.sha256 = ""
        self.size = 0

    def __enter__(self) -> ShardWriter:
        self._file = self.store.new_file(self.name)
        self._hashing = _HashingFile(self._file.handle)
        self._tar = tarfile.open(fileobj=self._hashing, mode="w", format=tarfile.GNU_FORMAT)
        return self

    def write(self, key: str, members: dict[str, bytes]) -> None:
        """Add one sample: members maps a member name ('jpg', 'sparse.png', ...) to its bytes."""
        if not is_valid_key(key):
            raise ValueError(f"invalid sample key {key!r}")
        for member in sorted(members, key=MEMBER_ORDER.index):
            info = tarfile.TarInfo(f"{key}.{member}")
            info.size = len(members[member])
            info.mode = 0o644
            info.mtime = 0
            self._tar.addfile(info, io.BytesIO(members[member]))
        self.samples += 1

    def __exit__(self, error_type, error, traceback) -> None:
        try:
            if error_type is None:
                self._tar.close()
                if not self._may_publish():
                    raise LostOutputLock(f"{self.store} is now held by another run; {self.name} not written")
                self._file.commit()
        finally:
            self._file.discard()
        self.sha256 = self._hashing.sha256.hexdigest()
        self.size = self._hashing.size

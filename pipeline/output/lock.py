"""One run at a time per output folder.

`generate.lock` in the output folder names its holder (host, pid, the process's start
time, when, and a token unique to the run); `simlidar train` holds `train.lock` in its
run folder the same way. A second run finds it and is refused with
who holds it; a lock whose process is gone (same host, no such pid, or the pid now
belongs to a later process) is stale and taken over. Every shard checks, just before
its tar takes its final name, that its run still holds the lock: a Ray worker left
over from a killed run cannot rename a shard into a folder a new run now owns.

Taking over goes through a second file, `generate.lock.takeover`, created
exclusively, so two runs that find the same stale lock cannot both take it."""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import PipelineError
from .store import Store, as_store

LOCK = "generate.lock"
TAKEOVER_SUFFIX = ".takeover"
# A takeover file older than this was left by a run that died while taking over.
TAKEOVER_STALE_S = 30.0
ATTEMPTS = 20


class OutputLocked(PipelineError):
    """Another live run holds the output folder."""


@dataclass(frozen=True)
class LockHolder:
    host: str
    pid: int
    process_start: str
    since: str
    token: str

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}, since {self.since}"


def _process_start(pid: int) -> str:
    """The kernel's start time of `pid` (clock ticks since boot, from /proc), '' when unknown:
    with the pid it names one process, even after the pid is reused."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rpartition(")")[2].split()[19]
    except (OSError, IndexError):
        return ""


def is_alive(holder: LockHolder) -> bool:
    """False only when the holder surely is gone: on this host, no such process or another
    process with its pid. A holder on another host is taken to be alive."""
    if holder.host != socket.gethostname():
        return True
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    start = _process_start(holder.pid)
    return not (holder.process_start and start and start != holder.process_start)


def read_holder(store: Store, name: str = LOCK) -> LockHolder | None:
    """Who holds the folder's lock (the file `name`); None when nobody does or the file is unreadable."""
    try:
        return LockHolder(**json.loads(store.read_bytes(name)))
    except (FileNotFoundError, ValueError, TypeError):
        return None


def still_held(store: Store, token: str, name: str = LOCK) -> bool:
    """Whether the run with `token` still holds the folder (checked before a shard is renamed)."""
    holder = read_holder(store, name)
    return holder is not None and holder.token == token


class OutputLock:
    """Use as a context manager around everything a run writes; `token` identifies the run.
    store: the folder (a Store, or a location open_store resolves); name: the lock file's."""

    def __init__(self, store: Store | str | Path, name: str = LOCK):
        self.store, self.name = as_store(store), name
        self.taken_over: LockHolder | None = None
        pid = os.getpid()
        self.holder = LockHolder(
            socket.gethostname(),
            pid,
            _process_start(pid),
            time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            uuid.uuid4().hex,
        )

    @property
    def token(self) -> str:
        return self.holder.token

    def acquire(self) -> None:
        """Take the lock (making the folder if needed); raises OutputLocked naming a live holder,
        PipelineError when the folder cannot be written."""
        try:
            self._acquire()
        except OSError as error:
            raise PipelineError(
                f"cannot write to {self.store} ({error.strerror or error}); choose an output folder you can write to"
            ) from None

    def _acquire(self) -> None:
        self.store.make_folder()
        record = json.dumps(asdict(self.holder)).encode()
        for _ in range(ATTEMPTS):
            if self.store.create_exclusively(self.name, record):
                return
            holder = read_holder(self.store, self.name)
            if holder is not None and is_alive(holder):
                raise OutputLocked(
                    f"{self.store} is in use by another simlidar run ({holder.describe()}); wait for it to end "
                    f"or use another output folder (if that run is gone, delete {self.store.where(self.name)})"
                )
            if self._take_over(holder):
                self.taken_over = holder
                return
            time.sleep(0.05)
        raise OutputLocked(f"could not take {self.store.where(self.name)}: other runs keep taking it; try again")

    def _take_over(self, stale: LockHolder | None) -> bool:
        """Replace a stale (or unreadable) lock by ours, if no other run is doing the same."""
        takeover = self.name + TAKEOVER_SUFFIX
        if not self.store.create_exclusively(takeover, self.token.encode()):
            if self.store.age_s(takeover) > TAKEOVER_STALE_S:
                self.store.remove(takeover)
            return False
        try:
            if read_holder(self.store, self.name) != stale:
                return False
            self.store.write_json_atomically(self.name, asdict(self.holder))
            return True
        finally:
            self.store.remove(takeover)

    def release(self) -> None:
        if still_held(self.store, self.token, self.name):
            self.store.remove(self.name)

    def __enter__(self) -> OutputLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()

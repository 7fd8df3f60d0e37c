"""What a shard was made from, so that a finished shard counts as done only while that is
still what it would be made from.

- Per input: a fingerprint of every file it is read from (the photo and every sidecar it
  may have, present or not; a rig frame's images, a sweep, a KITTI frame's files): a
  small file by its content, a larger one by its size and modification time, a file on an
  object store by its size and ETag as its listing gave them (so a shard's inputs cost no
  request). The kind says which files (`kind.input_files`: location -> the state its
  listing found, or None for a local file, looked up here).
- Per run: the content hash of every file its config names (sensor, mount, rig,
  calibration: `config.named_files()`), recorded in the manifest like the config itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat

# Files up to this size are fingerprinted by content (a photo.json, a sidecar .npy of a
# thumbnail): reading them costs what a stat does, and an edit that keeps size and
# modification time is still seen.
CONTENT_HASH_BYTES = 64 * 2**10
# Object-store fields that change with an object's content, in order of preference.
_VERSION_FIELDS = ("ETag", "etag", "md5Hash", "blob_id", "LastModified", "updated", "mtime", "last_modified")


def input_fingerprints(kind, items) -> list[str]:
    """Per item (in order), a 16-hex-digit fingerprint of the files `kind` reads it from."""
    files = [kind.input_files(item) for item in items]
    unknown = sorted({location for each in files for location, state in each.items() if state is None})
    found = file_states(unknown)
    return [
        _digest([[location, found[location] if state is None else state] for location, state in each.items()])[:16]
        for each in files
    ]


def listed_state(info: dict | None) -> str:
    """The state of a file as an fsspec listing describes it (None: not listed, absent)."""
    if info is None:
        return "absent"
    if info.get("type") != "file":
        return "not a regular file"
    version = next((str(info[name]) for name in _VERSION_FIELDS if info.get(name) is not None), "")
    return f"{info.get('size')}:{version}"


def changed_inputs(items, recorded: list, now: list[str]) -> list[str]:
    """The relpaths of the items whose fingerprint differs from the one recorded (all of
    them when the record does not fit the items)."""
    if not isinstance(recorded, list) or len(recorded) != len(items):
        return [item.relpath for item in items]
    return [item.relpath for item, then, current in zip(items, recorded, now, strict=True) if then != current]


def file_states(paths: list[str]) -> dict[str, str]:
    """The state of each local path as a string: "absent", "not a regular file", "sha256:..."
    (small files) or "size:mtime_ns"."""
    return {path: _local_state(path) for path in paths}


def _local_state(path: str) -> str:
    try:
        status = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return "absent"
    except OSError as error:
        return f"unreadable ({error.strerror})"
    if not stat.S_ISREG(status.st_mode):
        return "not a regular file"
    if status.st_size <= CONTENT_HASH_BYTES:
        try:
            with open(path, "rb") as handle:
                return "sha256:" + hashlib.sha256(handle.read(CONTENT_HASH_BYTES + 1)).hexdigest()
        except OSError as error:
            return f"unreadable ({error.strerror})"
    return f"{status.st_size}:{status.st_mtime_ns}"


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def named_file_hashes(named: dict[str, str]) -> dict[str, dict[str, str]]:
    """{role: {"path", "sha256"}} of the files a config names ({role: path}); a file that is
    not there is recorded as such (its absence is part of the run too)."""
    hashes = {}
    for role, path in sorted(named.items()):
        try:
            digest = file_sha256(path) if os.path.isfile(path) else "absent"
        except OSError as error:
            digest = f"unreadable ({error.strerror})"
        hashes[role] = {"path": path, "sha256": digest}
    return hashes


def named_file_changes(then: dict, now: dict) -> list[str]:
    """The files of two records of named_file_hashes at one path whose content differs, one
    line each (a file named by another path is a config change, reported as one)."""
    return [
        f"the {role} file {now[role]['path']} changed since that run (sha256 {then[role].get('sha256', '')[:12]} "
        f"then, {now[role]['sha256'][:12]} now)"
        for role in sorted(set(then) & set(now))
        if isinstance(then[role], dict)
        and then[role].get("path") == now[role]["path"]
        and then[role].get("sha256") != now[role]["sha256"]
    ]


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()

"""A local copy of an output on an object store, for the commands that read a whole
output (inspect, publish): its manifest, errors.jsonl and every shard the manifest
lists, each downloaded once (a copy whose size and SHA-256 match the manifest is kept
on the next call)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from ..errors import PipelineError
from .lock import LOCK
from .manifest import ERRORS, MANIFEST
from .store import LocalStore, ObjectStore

# Only plain shard names are fetched: a damaged manifest must not write outside the copy.
_SHARD_NAME = re.compile(r"^shard-[0-9]+\.tar$")


def download_output(out: ObjectStore, folder: Path) -> Path:
    """Bring `folder` up to date with the output in `out`; returns `folder`. Shards
    missing from the store are missing from the copy, for inspect to report."""
    if not out.exists(MANIFEST):
        raise PipelineError(f"{out} has no {MANIFEST}: not a simlidar output (make one with `simlidar generate`)")
    out.download(MANIFEST, folder / MANIFEST)
    copy = LocalStore(folder)
    for name in (ERRORS, LOCK):  # the lock: whether a run still writes it
        if out.exists(name):
            out.download(name, folder / name)
        else:
            copy.remove(name)
    for entry in _listed_shards(folder / MANIFEST):
        if copy.size_and_sha256(entry["shard"]) == (entry.get("bytes"), entry.get("sha256")):
            continue
        copy.remove(entry["shard"])
        if out.exists(entry["shard"]):
            out.download(entry["shard"], folder / entry["shard"])
    return folder


def _listed_shards(manifest_path: Path) -> list[dict]:
    """The manifest's shard entries with a plain shard name; anything else is left to inspect."""
    try:
        shards = json.loads(manifest_path.read_text()).get("shards", [])
    except (ValueError, AttributeError):
        return []
    if not isinstance(shards, list):
        return []
    return [
        entry
        for entry in shards
        if isinstance(entry, dict) and isinstance(entry.get("shard"), str) and _SHARD_NAME.match(entry["shard"])
    ]

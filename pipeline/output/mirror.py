"""A local copy of an output on an object store, for the commands that read a whole
output (inspect, publish): its manifest, errors.jsonl and every shard the manifest
lists, each downloaded once (a copy whose size and SHA-256 match the manifest is kept
on the next call), and, after inspect, the previews written locally uploaded back."""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
from pathlib import Path

from upath import UPath

from ..errors import PipelineError
from . import object_store, store
from .manifest import ERRORS, MANIFEST

PREVIEWS = "previews"
# Only plain shard names are fetched: a damaged manifest must not write outside the copy.
_SHARD_NAME = re.compile(r"^shard-[0-9]+\.tar$")


def mirror_folder(out: UPath) -> Path:
    """Where the copy of `out` lives by default: one folder per output URL in the temp folder."""
    digest = hashlib.sha256(str(out).rstrip("/").encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / "simlidar-mirror" / digest


def download_output(out: UPath, folder: Path) -> Path:
    """Bring `folder` up to date with the output at `out`; returns `folder`. Shards
    missing from the store are missing from the copy, for inspect to report."""
    if not object_store.exists(out / MANIFEST):
        raise PipelineError(f"{out} has no {MANIFEST}: not a simlidar output (make one with `simlidar generate`)")
    object_store.download(out / MANIFEST, folder / MANIFEST)
    if object_store.exists(out / ERRORS):
        object_store.download(out / ERRORS, folder / ERRORS)
    for entry in _listed_shards(folder / MANIFEST):
        local = folder / entry["shard"]
        if _matches(local, entry):
            continue
        local.unlink(missing_ok=True)
        if object_store.exists(out / entry["shard"]):
            object_store.download(out / entry["shard"], local)
    return folder


def upload_previews(folder: Path, out: UPath) -> None:
    """Copy what inspect wrote under folder/previews to the store."""
    for file in sorted((folder / PREVIEWS).rglob("*")):
        if file.is_file():
            object_store.upload(file, out / file.relative_to(folder).as_posix())


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


def _matches(local: Path, entry: dict) -> bool:
    return store.size_and_sha256(local) == (entry.get("bytes"), entry.get("sha256"))

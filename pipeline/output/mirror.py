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

from ..errors import PipelineError
from ..manifest import ERRORS, MANIFEST
from .store import OutputStore, stream_sha256

PREVIEWS = "previews"
# Only plain shard names are fetched: a damaged manifest must not write outside the copy.
_SHARD_NAME = re.compile(r"^shard-[0-9]+\.tar$")


def mirror_folder(store: OutputStore) -> Path:
    """Where the copy of `store` lives by default: one folder per output URL in the temp folder."""
    digest = hashlib.sha256(store.location.rstrip("/").encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / "simlidar-mirror" / digest


def download_output(store: OutputStore, folder: Path) -> Path:
    """Bring `folder` up to date with the output in `store`; returns `folder`.
    Shards missing from the store are missing from the copy, for inspect to report."""
    if not store.exists(MANIFEST):
        raise PipelineError(f"{store} has no {MANIFEST}: not a simlidar output (make one with `simlidar generate`)")
    folder.mkdir(parents=True, exist_ok=True)
    store.download(MANIFEST, folder / MANIFEST)
    if store.exists(ERRORS):
        store.download(ERRORS, folder / ERRORS)
    for entry in _listed_shards(folder / MANIFEST):
        local = folder / entry["shard"]
        if _matches(local, entry):
            continue
        local.unlink(missing_ok=True)
        if store.exists(entry["shard"]):
            store.download(entry["shard"], local)
    return folder


def upload_previews(folder: Path, store: OutputStore) -> None:
    """Copy what inspect wrote under folder/previews to the store."""
    for file in sorted((folder / PREVIEWS).rglob("*")):
        if file.is_file():
            store.upload(file, file.relative_to(folder).as_posix())


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
    if not local.is_file() or local.stat().st_size != entry.get("bytes"):
        return False
    with local.open("rb") as stream:
        return stream_sha256(stream) == entry.get("sha256")

"""Every kind of input behind one call: local photos (a folder, a glob, a list file),
photos on an object store (the same, as URLs) and WebDataset shards of images."""

from __future__ import annotations

from pathlib import Path

from simlidar.teachers import find_depth_sidecar

from .image_shards import ShardSample, is_shard_source, list_shard_samples
from .photos import SourceItem, list_inputs
from .remote import RemoteItem, StagedInput, list_remote_inputs
from .urls import is_url, local_path

InputItem = SourceItem | RemoteItem | ShardSample


def list_sources(source: str) -> tuple[list[InputItem], Path | str]:
    """The sorted inputs of `source` and the folder (path or URL) their keys are relative to."""
    if is_shard_source(source):
        return list_shard_samples(source)
    if is_url(source):
        return list_remote_inputs(source)
    return list_inputs(local_path(source))


def stage(item: InputItem, folder: Path) -> StagedInput:
    """The input as local files: a local photo is read where it is; the others are
    copied into `folder` (a worker's scratch folder) with their sidecars."""
    if isinstance(item, SourceItem):
        return StagedInput(item.path)
    return item.stage(folder)


def has_depth_sidecar(item) -> bool:
    """Whether the input brings its own depth (photo.depth.png / .npy, or a shard's
    depth member); for a local photo or a rig frame, its (first) camera's file."""
    if isinstance(item, RemoteItem):
        return any(suffix.startswith(".depth.") for suffix in item.sidecars)
    if isinstance(item, ShardSample):
        return any(extension.startswith("depth.") for extension, _, _ in item.members)
    return find_depth_sidecar(item.path) is not None

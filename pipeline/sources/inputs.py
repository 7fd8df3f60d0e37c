"""Photos behind one listing call, whatever form the source takes: local photos (a folder,
a glob, a list file), photos on an object store (the same, as URLs) and WebDataset shards
of images. Each item stages itself (`item.stage(folder)`) and knows whether depth comes
with it (`item.has_depth_sidecar()`)."""

from __future__ import annotations

from pathlib import Path

from .image_shards import ShardSample, is_shard_source, list_shard_samples
from .photos import SourceItem, list_inputs
from .remote import RemoteItem, list_remote_inputs
from .urls import is_url, local_path

InputItem = SourceItem | RemoteItem | ShardSample


def list_sources(source: str) -> tuple[list[InputItem], Path | str]:
    """The sorted inputs of `source` and the folder (path or URL) their keys are relative to."""
    if is_shard_source(source):
        return list_shard_samples(source)
    if is_url(source):
        return list_remote_inputs(source)
    return list_inputs(local_path(source))

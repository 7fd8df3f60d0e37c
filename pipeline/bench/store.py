"""`simlidar bench store --out URL`: the throughput of one run into an object store against
the same run on local disk: the same photos (copies of a bundled scene), one worker in
this process, every upload counted, after a one-photo warm-up run. The run on the store
is removed afterwards."""

from __future__ import annotations

import dataclasses
import tempfile
import time
import uuid
from pathlib import Path

import click

from ..config import GenerateConfig
from ..output.store import open_store
from ..runner import generate
from .scaling import copy_scene


def timed_run(config: GenerateConfig, out) -> tuple[float, dict]:
    """Seconds for a whole run into `out` and its manifest."""
    started = time.perf_counter()
    summary = generate(config, out, progress=False, workers=1)
    return time.perf_counter() - started, summary.manifest


def print_store_throughput(images: Path, url: str, frames: int) -> None:
    target = open_store(f"{url.rstrip('/')}/simlidar-bench-{uuid.uuid4().hex[:8]}")
    with tempfile.TemporaryDirectory(prefix="simlidar-bench-") as work:
        copy_scene(images / "street_kitti.jpg", Path(work) / "photos", frames)
        config = GenerateConfig(images=str(Path(work) / "photos"), shard_size=max(1, frames // 4))
        timed_run(dataclasses.replace(config, limit=1), open_store(Path(work) / "warm-up"))  # imports, first calls
        try:
            local = open_store(Path(work) / "out")
            runs = {"local disk": timed_run(config, local), str(target): timed_run(config, target)}
        finally:
            target.remove_folder("")
    for where, (seconds, manifest) in runs.items():
        megabytes = sum(shard["bytes"] for shard in manifest["shards"]) / 1e6
        click.echo(
            f"{where}: {frames} KITTI-size HDL-64 frames, {len(manifest['shards'])} shards, "
            f"{megabytes:.1f} MB in {seconds:.1f} s: {frames / seconds:.2f} frames/s, {megabytes / seconds:.2f} MB/s"
        )
    (local_s, local), (store_s, stored) = runs.values()
    same = [shard["sha256"] for shard in local["shards"]] == [shard["sha256"] for shard in stored["shards"]]
    click.echo(
        f"store / local disk throughput: {local_s / store_s:.2f} (shards byte-identical: {'yes' if same else 'NO'})"
    )

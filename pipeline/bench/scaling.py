"""`simlidar bench scaling`: how the runner scales. Listing a million input paths,
parallel efficiency of N Ray workers against one on the same shards, and peak memory
of a run over 100 and over 1000 photos (it must not grow with the input count)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click
import ray
from PIL import Image

from .. import schema
from ..config import GenerateConfig
from ..distributor import run_on_ray
from ..output.manifest import prepare_output
from ..output.store import LocalStore
from ..sources.photos import list_inputs
from ..writer import plan_shards

# A bundled scene's files: the photo, its depth sidecar and its intrinsics sidecar.
SCENE_FILES = (".jpg", ".depth.png", ".json")
MEMORY_PROBE = """
import resource, sys
from simlidar.pipeline.config import GenerateConfig
from simlidar.pipeline.runner import generate
generate(GenerateConfig(images=sys.argv[1], shard_size=50), __import__("pathlib").Path(sys.argv[2]), progress=False,
         workers=1)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""


def copy_scene(source: Path, folder: Path, copies: int, scale: int = 1, distinct: bool = False) -> None:
    """`copies` photos made from one bundled scene (photo, depth and intrinsics sidecars),
    downsampled by `scale`, each with its own name (and so its own key and seed). distinct:
    each photo's bytes differ (a JPEG comment naming its copy; the pixels stay the same), so
    that no two share a teacher cache entry and the teacher sees every one."""
    folder.mkdir(parents=True, exist_ok=True)
    rgb = Image.open(source)
    depth = schema.decode_depth_png(source.with_suffix(".depth.png").read_bytes())
    intrinsics = json.loads(source.with_suffix(".json").read_text())
    if scale > 1:
        rgb = rgb.resize((rgb.width // scale, rgb.height // scale))
        depth = depth[::scale, ::scale]
        intrinsics = {name: value / scale for name, value in intrinsics.items()}
    rgb.save(folder / "scene.jpg", quality=90)
    (folder / "scene.depth.png").write_bytes(schema.encode_depth_png(depth))
    (folder / "scene.json").write_text(json.dumps(intrinsics))
    photo = (folder / "scene.jpg").read_bytes()
    for index in range(copies):
        name = f"{source.stem}_{index:05d}"
        for suffix in SCENE_FILES:
            if distinct and suffix == ".jpg":
                (folder / f"{name}.jpg").write_bytes(with_jpeg_comment(photo, f"copy {index}"))
            else:
                os.link(folder / f"scene{suffix}", folder / f"{name}{suffix}")
    for suffix in SCENE_FILES:
        (folder / f"scene{suffix}").unlink()


def with_jpeg_comment(jpeg: bytes, text: str) -> bytes:
    """The JPEG with a comment segment (COM: FF FE, length, text) right after its start
    marker: other bytes, the same pixels."""
    comment = text.encode()
    return jpeg[:2] + b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment + jpeg[2:]


class _Silent:
    def inputs_done(self, count: int) -> None:
        pass

    def shard_done(self) -> None:
        pass

    def starting(self, what: str) -> None:
        pass


def parallel_efficiency(scene: Path, workers: int, photos: int, work_dir: Path) -> dict:
    """Seconds to make the same shards on Ray with 1 worker and with `workers`
    (Ray and its worker processes already started, so start-up is not counted)."""
    copy_scene(scene, work_dir / "photos", photos)
    config = GenerateConfig(images=str(work_dir / "photos"), shard_size=max(1, photos // (4 * workers)))
    items = list_inputs(config.images)[0]
    plans = plan_shards(items, config.shard_size)
    plan, seconds = config.resolve(), {}
    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        # An untimed round first, so that every worker process has imported its modules and
        # loaded the compiled kernels: the timed runs then measure shards, not process start-up.
        for name, count, shards in (("warm-up", workers, plans[:workers]), (1, 1, plans), (workers, workers, plans)):
            store = LocalStore(work_dir / f"out-{name}")
            prepare_output(store, plan, items, overwrite=True)
            started = time.perf_counter()
            failures = run_on_ray(plan, shards, store, _Silent(), count, None)
            seconds[name] = time.perf_counter() - started
            if failures:
                raise RuntimeError(f"bench run failed: {failures[0].reason}")
    finally:
        ray.shutdown()
    return {"workers": workers, "photos": photos, "shards": len(plans), "seconds": seconds}


def peak_memory(scene: Path, photos: int, work_dir: Path) -> int:
    """Peak resident bytes of an in-process run over `photos` photos."""
    copy_scene(scene, work_dir / f"photos-{photos}", photos, scale=2)
    result = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, str(work_dir / f"photos-{photos}"), str(work_dir / f"out-{photos}")],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(result.stdout.split()[-1])


def listing_seconds(work_dir: Path, count: int = 1_000_000) -> float:
    """Seconds to list `count` inputs from a text file of paths (sorted, keys made)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    listing = work_dir / "inputs.txt"
    listing.write_text("".join(f"set{index % 997:03d}/photo_{index:07d}.jpg\n" for index in range(count)))
    started = time.perf_counter()
    items, _ = list_inputs(str(listing))
    seconds = time.perf_counter() - started
    if len(items) != count:
        raise RuntimeError(f"listed {len(items)} of {count} paths")
    return seconds


def print_scaling(images: Path, workers: int) -> None:
    workers = workers or os.cpu_count() or 1
    street, yard = images / "street_kitti.jpg", images / "yard.jpg"
    with tempfile.TemporaryDirectory(prefix="simlidar-bench-") as work:
        click.echo(f"listing: 1,000,000 paths from a list file in {listing_seconds(Path(work) / 'listing'):.1f} s")
        # 32 frames a worker: with the march a frame is cheap, and fewer would time Ray's start-up.
        result = parallel_efficiency(street, workers, 32 * workers, Path(work) / "parallel")
        one, many = result["seconds"][1], result["seconds"][workers]
        speedup = one / many
        click.echo(
            f"parallel: {result['photos']} KITTI-size HDL-64 frames in {result['shards']} shards: "
            f"1 worker {one:.1f} s ({result['photos'] / one:.2f} frames/s), {workers} workers {many:.1f} s "
            f"({result['photos'] / many:.2f} frames/s); speed-up {speedup:.2f}x, "
            f"efficiency {speedup / workers:.2f}"
        )
        small, large = (peak_memory(yard, count, Path(work) / "memory") for count in (100, 1000))
        click.echo(
            f"peak memory (one worker, 320x240 photos): 100 photos {small / 2**20:.0f} MiB, "
            f"1000 photos {large / 2**20:.0f} MiB; ratio {large / small:.3f}"
        )
    click.echo(f"on {os.cpu_count()} cores")

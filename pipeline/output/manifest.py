"""The output folder: refuse to mix runs, resume finished shards, and record the run.

Beside the shards: manifest.json (the run's full config, versions, per-shard
counts and checksums) and errors.jsonl (one line per input skipped, with why).
"""

from __future__ import annotations

import json
import platform
import shutil
import time
from importlib import metadata
from pathlib import Path

from simlidar.sensors import SpinningLidar

from ..config import GenerateConfig
from ..errors import PipelineError
from ..writer import ShardPlan, stats_path, tar_path, write_json_atomically

MANIFEST = "manifest.json"
ERRORS = "errors.jsonl"
LOG = "generate.log"
FORMAT = "simlidar-webdataset-1"
RUN_FILE_PATTERNS = (
    "shard-*.tar",
    "shard-*.tar.tmp",
    "shard-*.stats.json",
    "shard-*.stats.json.tmp",
    ERRORS,
    MANIFEST,
    LOG,
)
RUN_FOLDERS = ("previews", "hub", "hub.tmp")


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for package in ("simlidar", "numpy", "open3d-cpu", "open3d", "pillow"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return found


def prepare_output(out_dir: Path, config: GenerateConfig, overwrite: bool) -> None:
    """Make `out_dir` ready: new, the same run (resume), or replaced with --overwrite."""
    if out_dir.exists() and not out_dir.is_dir():
        raise PipelineError(f"--out {out_dir} is a file; give a folder")
    manifest_path = out_dir / MANIFEST
    if manifest_path.is_file() and not overwrite:
        try:
            previous = GenerateConfig.from_dict(json.loads(manifest_path.read_text())["config"])
            changes = config.differences(previous)
        except (ValueError, KeyError, TypeError, PipelineError):
            changes = ["its manifest.json is unreadable"]
        if changes:
            raise PipelineError(
                f"{out_dir} holds a different run ({'; '.join(changes)}); "
                "use another --out, or pass --overwrite to replace it"
            )
    elif out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise PipelineError(f"{out_dir} is not empty and holds no simlidar run; use a new --out or pass --overwrite")
    if overwrite:
        _remove_run_files(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for leftover in out_dir.glob("shard-*.tmp"):
        leftover.unlink()
    if not manifest_path.is_file():
        write_json_atomically(
            manifest_path, {"format": FORMAT, "status": "running", "config": config.to_dict(), "versions": versions()}
        )


def _remove_run_files(out_dir: Path) -> None:
    """Remove what a simlidar run writes, and nothing else."""
    if not out_dir.is_dir():
        return
    for pattern in RUN_FILE_PATTERNS:
        for path in out_dir.glob(pattern):
            path.unlink()
    for folder in RUN_FOLDERS:
        shutil.rmtree(out_dir / folder, ignore_errors=True)


def shard_done(out_dir: Path, plan: ShardPlan) -> bool:
    return tar_path(out_dir, plan).is_file() and stats_path(out_dir, plan).is_file()


def read_stats(out_dir: Path, plan: ShardPlan) -> dict:
    return json.loads(stats_path(out_dir, plan).read_text())


def finalize_output(
    out_dir: Path,
    config: GenerateConfig,
    sensor: SpinningLidar,
    plans: list[ShardPlan],
    started_at: float,
    run_info: dict,
    failures: list,
) -> dict:
    """Write errors.jsonl and manifest.json from the finished shards' stats files;
    the manifest is "complete" only when no shard failed."""
    all_stats = [read_stats(out_dir, plan) for plan in plans if shard_done(out_dir, plan)]
    with open(out_dir / ERRORS, "w") as errors_file:
        for stats in all_stats:
            for error in stats["errors"]:
                errors_file.write(json.dumps(error, sort_keys=True) + "\n")
    samples = sum(stats["samples"] for stats in all_stats)
    points = sum(stats["points"]["total"] for stats in all_stats)
    manifest = {
        "format": FORMAT,
        "status": "incomplete" if failures else "complete",
        "config": config.to_dict(),
        "versions": versions(),
        "run": run_info,
        "failed_shards": [{"shard": failure.shard, "reason": failure.reason} for failure in failures],
        "sensor": {
            "name": sensor.name,
            "spec_hash": sensor.spec_hash(),
            "channels": sensor.channels,
            "points_per_frame": sensor.points_per_frame,
        },
        "shards": [
            {key: stats[key] for key in ("shard", "inputs", "images_written", "samples", "sha256", "bytes")}
            for stats in all_stats
        ],
        "totals": {
            "inputs": sum(stats["inputs"] for stats in all_stats),
            "images_written": sum(stats["images_written"] for stats in all_stats),
            "images_skipped": sum(len(stats["errors"]) for stats in all_stats),
            "samples": samples,
            "points": points,
            "points_per_sample": points / samples if samples else 0.0,
            "points_min": min((s["points"]["min"] for s in all_stats if s["samples"]), default=0),
            "points_max": max((s["points"]["max"] for s in all_stats if s["samples"]), default=0),
            "sparse_pixels_per_sample": sum(s["sparse_pixels_total"] for s in all_stats) / samples if samples else 0.0,
        },
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "elapsed_s": time.time() - started_at,
    }
    write_json_atomically(out_dir / MANIFEST, manifest)
    return manifest

"""The output folder: refuse to mix runs, resume finished shards, and record the run.

Beside the shards: manifest.json (the run's full config, versions, per-shard
counts and checksums), errors.jsonl (one line per input skipped, with why) and README.md
(the card that makes `datasets.load_dataset(OUT)` read the shards).
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from collections import Counter
from importlib import metadata

from .. import schema
from ..config import Plan
from ..errors import PipelineError
from ..sources.fingerprint import changed_inputs, input_fingerprints, named_file_changes
from ..writer import ShardPlan
from .card import FOLDER_CARD, folder_card, is_ours
from .lock import LOCK
from .store import Store

MANIFEST = "manifest.json"
ERRORS = "errors.jsonl"
LOG = "generate.log"
FORMAT = "simlidar-webdataset-1"
INPUTS = "inputs.jsonl"
RUN_FILE_PATTERNS = ("shard-*.tar", "shard-*.stats.json", ERRORS, MANIFEST, INPUTS, LOG)
# Temporary files of the run's writers (store.temporary_name), left behind by a kill.
TEMPORARY_PATTERNS = ("shard-*.tmp", *(f"{name}.*.tmp" for name in (MANIFEST, INPUTS, ERRORS, FOLDER_CARD)))
RUN_FOLDERS = ("previews", "hub", "hub.tmp")


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for package in ("simlidar", "numpy", "open3d-cpu", "open3d", "pillow"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return found


def run_command(manifest: dict) -> str:
    """The command that made an output (runs recorded before converters shared the engine
    were all generate's)."""
    command = manifest.get("command", "simlidar generate")
    return command if isinstance(command, str) else "the command that made it"


def input_list(items: list) -> bytes:
    """The run's inputs as stored in inputs.jsonl: one JSON string (relative path) per line, sorted."""
    return b"".join(json.dumps(item.relpath).encode() + b"\n" for item in items)


def input_record(items: list) -> dict:
    """The manifest's record of the input list: how many, and the SHA-256 of inputs.jsonl."""
    return {"count": len(items), "sha256": hashlib.sha256(input_list(items)).hexdigest()}


def prepare_output(store: Store, plan: Plan, items: list, overwrite: bool) -> None:
    """Make `store` (whose lock the caller holds) ready: new, the same run (same config, the
    files it names unchanged, same input list: resume), or replaced with overwrite."""
    config = plan.config
    listing = input_list(items)
    fingerprint = input_record(items)["sha256"]
    store.make_folder()
    if store.exists(MANIFEST) and not overwrite:
        changes = _run_changes(store, plan, listing, fingerprint)
        if changes:
            raise PipelineError(
                f"{store} holds a different run ({'; '.join(changes)}); "
                "use another `out`, or pass `overwrite` to replace it"
            )
    elif [name for name in store.list_names() if not name.startswith(LOCK)] and not overwrite:
        raise PipelineError(f"{store} is not empty and holds no simlidar run; use a new `out` or pass `overwrite`")
    if overwrite:
        _remove_run_files(store)
    remove_temporaries(store)
    if not store.exists(MANIFEST):
        store.write_atomically(INPUTS, listing)
        record = {"format": FORMAT, "status": "running", "command": config.command, "config": config.to_dict()}
        record.update(config_files=plan.config_files, versions=versions())
        store.write_json_atomically(MANIFEST, {**record, "inputs": input_record(items)})


def remove_temporaries(store: Store) -> None:
    """Half-written files of runs that were killed (the caller holds the lock: none is ours)."""
    for pattern in TEMPORARY_PATTERNS:
        for name in store.list_names(pattern):
            store.remove(name)


def _run_changes(store: Store, plan: Plan, listing: bytes, fingerprint: str) -> list[str]:
    """What differs between this run and the one recorded in `store`: the command that made
    it, config fields and the files they name, then inputs."""
    config = plan.config
    try:
        previous = store.read_json(MANIFEST)
        command = run_command(previous)
        if command != config.command:
            return [f"made by `{command}`"]
        changes = config.differences(type(config).from_dict(previous["config"]))
        # Runs recorded before config files were hashed name none.
        changes += named_file_changes(previous.get("config_files", plan.config_files), plan.config_files)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError, PipelineError):
        return ["its manifest.json is unreadable"]
    recorded = previous.get("inputs")
    if changes or not isinstance(recorded, dict) or recorded.get("sha256") == fingerprint:
        return changes
    now = {json.loads(line) for line in listing.splitlines()}
    try:
        before = {json.loads(line) for line in store.read_bytes(INPUTS).splitlines()}
    except (OSError, ValueError):
        return [f"the input list changed: {recorded.get('count')} inputs then, {len(now)} now"]
    added, removed = sorted(now - before), sorted(before - now)
    parts = [
        f"{len(names)} {what} ({_first_names(names)})"
        for names, what in ((added, "added"), (removed, "removed"))
        if names
    ]
    return ["inputs changed since it started: " + ", ".join(parts)]


def _first_names(names: list[str], shown: int = 3) -> str:
    return ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")


def _remove_run_files(store: Store) -> None:
    """Remove what a simlidar run writes, and nothing else."""
    for pattern in RUN_FILE_PATTERNS:
        for name in store.list_names(pattern):
            store.remove(name)
    for folder in RUN_FOLDERS:
        store.remove_folder(folder)
    if _holds_our_card(store):
        store.remove(FOLDER_CARD)


def check_shard(store: Store, plan: ShardPlan, kind) -> tuple[bool, str]:
    """(done, why not): done when its tar and stats exist, the tar's size and SHA-256 equal
    the stats' and its inputs' files (`kind` says which) are what the stats say it was made
    from. `why` is empty for a shard never finished (nothing or only a tar, as a kill leaves
    it) and says what is wrong with one that was finished and is damaged or out of date."""
    if not store.exists(plan.stats_name):
        return False, ""
    try:
        stats = store.read_json(plan.stats_name)
        expected = (int(stats["bytes"]), str(stats["sha256"]))
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return False, f"{plan.stats_name} is unreadable"
    found = store.size_and_sha256(plan.tar_name)
    if found is None:
        return False, f"{plan.tar_name} is missing"
    if found[0] != expected[0]:
        return False, f"{plan.tar_name} is {found[0]} bytes, its stats say {expected[0]}"
    if found[1] != expected[1]:
        return False, f"{plan.tar_name}'s SHA-256 differs from its stats"
    if "input_fingerprints" in stats:  # shards made before inputs were fingerprinted have none
        changed = changed_inputs(plan.items, stats["input_fingerprints"], input_fingerprints(kind, plan.items))
        if changed:
            return False, f"{len(changed)} of its inputs changed since it was made ({_first_names(changed)})"
    return True, ""


def forget_shard(store: Store, plan: ShardPlan) -> None:
    """Remove a damaged shard's tar and stats before it is made again."""
    store.remove(plan.stats_name)
    store.remove(plan.tar_name)


def read_stats(store: Store, plan: ShardPlan) -> dict:
    return store.read_json(plan.stats_name)


def mark_stopped(store: Store, why: str) -> None:
    """Record in the manifest, in place, that the run stopped and why: when the disk is too
    full for finalize_output, this still fits where the "running" manifest lies."""
    manifest = store.read_json(MANIFEST)
    manifest.update(status="incomplete", stopped=why)
    store.overwrite_in_place(MANIFEST, json.dumps(manifest, sort_keys=True).encode())


def _made(store: Store, plan: ShardPlan) -> bool:
    return store.exists(plan.tar_name) and store.exists(plan.stats_name)


def sample_sources(members: dict[str, bytes]) -> dict[str, str]:
    """Where a written sample's depth and intrinsics came from, as its json records them: the
    teacher that made its depth (sidecar, a model's name) and its intrinsics' source."""
    meta = json.loads(members[schema.META])
    # "random fov 61.20 deg", "exif 35mm-equivalent 28 mm": counted by their kind
    intrinsics = meta.get("intrinsics_source", "none").split()[0]
    teacher = meta.get("teacher") or "none"  # a recorded sample names its teacher.png's model
    return {"teacher": teacher["id"] if isinstance(teacher, dict) else teacher, "intrinsics": intrinsics}


def count_sources(sources: list[dict[str, str]]) -> dict[str, dict[str, int]]:
    """{"teacher": {name: samples}, "intrinsics": {source: samples}} of a shard's samples."""
    return {kind: dict(sorted(Counter(each[kind] for each in sources).items())) for kind in ("teacher", "intrinsics")}


def _sources(all_stats: list[dict]) -> dict[str, dict[str, int]]:
    """The shards' samples per teacher and per intrinsics source (count_sources);
    shards made before their stats counted them add nothing."""
    totals = {"teacher": Counter(), "intrinsics": Counter()}
    for stats in all_stats:
        for kind, counts in stats.get("sources", {}).items():
            totals[kind].update(counts)
    return {kind: dict(sorted(counts.items())) for kind, counts in totals.items()}


# How a summary and a dataset card say where a sample's intrinsics came from.
INTRINSICS_SOURCES = {
    "flag": "the intrinsics given for every photo",
    "sidecar": "the photo's .json",
    "exif": "EXIF focal length",
    "teacher": "the teacher's focal estimate",
    "fov": "the field of view given for every photo",
    "random": "a random field of view",
    "calibration": "the recording's calibration",
}


def describe_sources(resolved: dict) -> dict[str, str]:
    """{"teacher": ..., "intrinsics": ...}: the manifest's per-sample counts as words, e.g.
    "sidecar (all 6 samples)" or "the photo's .json (4 of 6 samples), ... (2 of 6)"."""
    described = {}
    for kind in ("teacher", "intrinsics"):
        counts = resolved.get(kind, {})
        total = sum(counts.values())
        words = {name: INTRINSICS_SOURCES.get(name, name) if kind == "intrinsics" else name for name in counts}
        if len(counts) == 1:
            described[kind] = f"{words[next(iter(counts))]} ({'all ' if total > 1 else ''}{_samples(total)})"
        else:
            described[kind] = ", ".join(
                f"{words[name]} ({count} of {_samples(total)})" for name, count in counts.items()
            )
    return described


def _samples(count: int) -> str:
    return f"{count} sample{'s' if count != 1 else ''}"


def finalize_output(
    store: Store,
    plan: Plan,
    shards: list[ShardPlan],
    started_at: float,
    run_info: dict,
    failures: list,
    stopped: str = "",
) -> dict:
    """Write errors.jsonl and manifest.json from the finished shards' stats files;
    the manifest is "complete" only when no shard failed and the run was not stopped
    (`stopped`: why it was, e.g. a full disk)."""
    all_stats = [read_stats(store, shard) for shard in shards if _made(store, shard)]
    errors = [json.dumps(error, sort_keys=True) + "\n" for stats in all_stats for error in stats["errors"]]
    store.write_atomically(ERRORS, "".join(errors).encode())
    samples = sum(stats["samples"] for stats in all_stats)
    points = sum(stats["points"]["total"] for stats in all_stats)
    manifest = {
        "format": FORMAT,
        "status": "incomplete" if failures or stopped else "complete",
        "stopped": stopped,
        "command": plan.config.command,
        "made_by": plan.kind.made_by(plan),
        "config": plan.config.to_dict(),
        "config_files": plan.config_files,
        "versions": versions(),
        "inputs": input_record([item for shard in shards for item in shard.items]),
        "run": run_info,
        "shards_planned": len(shards),
        "failed_shards": [{"shard": failure.shard, "reason": failure.reason} for failure in failures],
        "sensor": plan.manifest_sensor(),
        "resolved": {"mount": plan.resolved_mount(), **_sources(all_stats)},
        "shards": [
            {key: stats[key] for key in ("shard", "inputs", "images_written", "samples", "sha256", "bytes")}
            for stats in all_stats
        ],
        "totals": {
            "inputs": sum(stats["inputs"] for stats in all_stats),
            "images_written": sum(stats["images_written"] for stats in all_stats),
            "images_skipped": sum(len(stats["errors"]) for stats in all_stats),
            "empty_samples_left_out": sum(len(stats.get("empty_samples", [])) for stats in all_stats),
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
    store.write_json_atomically(MANIFEST, manifest)
    _write_folder_card(store, manifest)
    return manifest


def _write_folder_card(store: Store, manifest: dict) -> None:
    """README.md, which makes `datasets.load_dataset(OUT)` read the shards, unless the folder
    holds a README.md of the user's own."""
    if not store.exists(FOLDER_CARD) or _holds_our_card(store):
        store.write_atomically(FOLDER_CARD, folder_card(manifest).encode())


def _holds_our_card(store: Store) -> bool:
    return store.exists(FOLDER_CARD) and is_ours(store.read_bytes(FOLDER_CARD).decode("utf-8", "replace"))

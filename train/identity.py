"""A run's identity: what must stay the same for last.pt to be resumed.

It is the run's options (less those free to change, config.FREE_TO_CHANGE), its data by
content, not path (the shard list's fingerprint: names and sizes; --init's SHA-256), and
the torchrun world size (with the loader workers, it sets which samples make each batch).
A moved run folder or shards folder is the same run. --val-shards may be left out on a
resume, but a run validates on one set only, so that best.pt and val.csv never mix two.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict
from pathlib import Path

from .config import FREE_TO_CHANGE, TrainConfig
from .errors import TrainError
from .shards import fingerprint, fingerprint_changes

# Compared by content below (shards, init, val_shards) or not at all (out: the folder
# may move); width is checked against the weights when the model is loaded.
NOT_OPTIONS = {"shards", "init", "val_shards", "out", "width"}
HASH_CHUNK = 1 << 20


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def run_identity(config: TrainConfig, urls: list[str], val_urls: list[str], world_size: int) -> dict:
    """{"options", "shards" (fingerprint), "init" (SHA-256 or None; "" when the file is
    gone), "world_size", "val_shards" (fingerprint or None)}."""
    compared = set(asdict(config)) - FREE_TO_CHANGE - NOT_OPTIONS
    options = {name: _plain(value) for name, value in asdict(config).items() if name in compared}
    init = None
    if config.init is not None:
        init = file_sha256(config.init) if Path(config.init).is_file() else ""
    return {
        "options": options,
        "shards": fingerprint(urls),
        "init": init,
        "world_size": world_size,
        "val_shards": fingerprint(val_urls) if val_urls else None,
    }


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


def changes(recorded: dict, now: dict) -> list[str]:
    """What differs between a checkpoint's identity and this run's, one phrase each."""
    found = []
    before, after = recorded.get("options", {}), now["options"]
    for name in sorted(set(before) | set(after)):
        if _plain(before.get(name)) != after.get(name):
            found.append(f"--{name.replace('_', '-')} {before.get(name)!r} -> {after.get(name)!r}")
    if "shards" in recorded:
        shards = fingerprint_changes(recorded["shards"], now["shards"])
        found += [f"--shards: {shards}"] if shards else []
    init_before = recorded.get("init", now["init"])
    if now["init"] != "" and init_before != now["init"]:
        if init_before and now["init"]:
            found.append("--init: another checkpoint than the run began from")
        else:
            found.append("--init added (the run began without one)" if now["init"] else "--init left out")
    if recorded.get("world_size", now["world_size"]) != now["world_size"]:
        found.append(f"world size {recorded['world_size']} -> {now['world_size']} (torchrun --nproc_per_node)")
    return found


def check_same_run(out: Path, recorded: dict, now: dict) -> dict:
    """Refuse to resume a run whose identity changed, saying what changed and the ways on;
    returns the identity to record (the validation set carried over when none is given)."""
    found = changes(recorded, now)
    if found:
        raise TrainError(
            f"{out} holds a different run ({'; '.join(found)}): resume with the same options and data, "
            "pass --overwrite to start it over, or use another --out"
        )
    validated_on = recorded.get("val_shards")
    if validated_on and now["val_shards"] and fingerprint_changes(validated_on, now["val_shards"]):
        raise TrainError(
            f"{out} was validated on other --val-shards ({fingerprint_changes(validated_on, now['val_shards'])}): "
            "best.pt and val.csv would mix two sets; pass the same --val-shards (or none) to resume, or "
            "--overwrite / another --out to validate on these"
        )
    return {**now, "val_shards": now["val_shards"] or validated_on}

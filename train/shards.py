"""The shards a run reads: where they are (a folder, one .tar, a brace pattern, object-store
URLs), what identifies them (names and sizes, not paths: a moved folder is the same data)
and the index training streams by.

`index_shards` reads every shard once before training: its tar headers and each sample's
json. A sample that lacks a member or whose json does not parse is left out of the index
and recorded in `ShardIndex.bad` (the loop writes it to errors.jsonl), as the stream does
with a sample that fails to decode; a shard that is not a readable tar stops the run
before it starts.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import fsspec
import webdataset as wds
from fsspec.core import split_protocol
from simlidar.pipeline import schema

from .errors import TrainError

# Object stores webdataset has no opener of its own for (gs:// would need gsutil): read through fsspec.
FSSPEC_SCHEMES = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs"}


def _open_with_fsspec(url: str, mode: str = "rb", bufsize: int = 8192, **_) -> object:
    return fsspec.open(url, mode).open()


for _scheme in FSSPEC_SCHEMES:
    wds.gopen_schemes[_scheme] = _open_with_fsspec


def list_shards(source: str | Path, flag: str = "--shards") -> list[str]:
    """The shard URLs of a folder (its *.tar files, sorted), a single .tar, or a
    webdataset brace pattern ('shards/shard-{000000..000099}.tar'); the folder and the
    .tar may be fsspec URLs (s3://bucket/run/). flag: the option that named them (errors)."""
    text = str(source)
    if "{" in text:
        return list(wds.shardlists.expand_urls(text))
    scheme = split_protocol(text)[0]
    if scheme in FSSPEC_SCHEMES:
        return _list_remote_shards(text, scheme, flag)
    path = Path(text)
    if path.is_dir():
        # Regular files only: a FIFO named like a shard would block the index forever.
        shards = sorted(str(shard) for shard in path.glob("*.tar") if shard.is_file())
        if not shards:
            raise TrainError(f"no shards (*.tar) in {path}: point {flag} at the folder `simlidar generate` wrote")
        return shards
    if not path.is_file():
        raise TrainError(f"{flag} {text} is neither a shard folder, a .tar file nor a brace pattern of shards")
    return [text]


def _list_remote_shards(url: str, scheme: str, flag: str) -> list[str]:
    try:
        fs, path = fsspec.core.url_to_fs(url)
        if path.endswith(".tar") and fs.isfile(path):
            return [url]
        shards = sorted(fs.unstrip_protocol(found) for found in fs.glob(path.rstrip("/") + "/*.tar"))
    except ImportError:
        extra = FSSPEC_SCHEMES[scheme]
        raise TrainError(f'{scheme}:// shards need an optional package: pip install "simlidar[{extra}]"') from None
    except OSError as error:
        raise TrainError(f"cannot list the shards in {url} ({type(error).__name__}: {error})") from None
    if not shards:
        raise TrainError(f"no shards (*.tar) in {url}: point {flag} at the folder `simlidar generate` wrote")
    return shards


def shard_names(urls: list[str]) -> list[str]:
    """Each shard's name relative to the folder (or URL prefix) all of them share, so that
    a moved folder keeps its names: ['shard-000000.tar', ...] for a folder."""
    cut = os.path.commonprefix(list(urls)).rfind("/") + 1
    return [url[cut:] for url in urls]


def _size(url: str) -> int:
    try:
        if split_protocol(url)[0] in FSSPEC_SCHEMES:
            fs, path = fsspec.core.url_to_fs(url)
            return int(fs.size(path))
        return os.path.getsize(url)
    except OSError as error:
        raise TrainError(f"cannot read {url} ({error.strerror or error})") from None


def fingerprint(urls: list[str]) -> dict:
    """What identifies a list of shards, wherever it lies: {"count", "bytes", "sha256" (of
    every shard's name and size, in order), "shards" [[name, size], ...]}."""
    shards = [[name, _size(url)] for name, url in zip(shard_names(urls), urls, strict=True)]
    digest = hashlib.sha256("".join(f"{name}\t{size}\n" for name, size in shards).encode()).hexdigest()
    return {"count": len(shards), "bytes": sum(size for _, size in shards), "sha256": digest, "shards": shards}


def fingerprint_changes(before: dict, now: dict) -> str:
    """What differs between two fingerprints, in words ('' when nothing does)."""
    if before.get("sha256") == now["sha256"]:
        return ""
    sizes_before, sizes_now = dict(map(tuple, before.get("shards", []))), dict(map(tuple, now["shards"]))
    changes = {
        "added": sorted(set(sizes_now) - set(sizes_before)),
        "removed": sorted(set(sizes_before) - set(sizes_now)),
        "of another size": sorted(
            name for name in sizes_now if name in sizes_before and sizes_before[name] != sizes_now[name]
        ),
    }
    parts = [f"{len(names)} {what} ({_first(names)})" for what, names in changes.items() if names]
    return ", ".join(parts) or "the same shards in another order"


def _first(names: list[str], shown: int = 3) -> str:
    return ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")


@dataclass(frozen=True)
class ShardIndex:
    """What training reads from each shard, in file order: shard urls[i] (named names[i],
    see shard_names) holds units[i], a unit being the keys of one sample, or with `scenes`
    the keys of every view of one scene in view order. views: the distinct view counts of
    the scenes (() for samples); incomplete: scenes left out because a view is missing;
    samples: every sample in the shards, bad ones included; bad: the samples left out, as
    errors.jsonl records ({"shard", "key", "reason"}); teacher_samples: samples with a
    teacher.png member; teacher_sources: samples with a teacher (teacher.png, or a
    generated sample's teacher record: its dense map is the teacher's depth)."""

    urls: tuple[str, ...]
    units: tuple[tuple[tuple[str, ...], ...], ...]
    names: tuple[str, ...] = ()
    scenes: bool = False
    views: tuple[int, ...] = ()
    incomplete: int = 0
    samples: int = 0
    bad: tuple[dict, ...] = ()
    teacher_samples: int = 0
    teacher_sources: int = 0

    @property
    def unit_count(self) -> int:
        return sum(len(units) for units in self.units)

    def unit_of(self, shard_name: str, key: str) -> tuple[int, int] | None:
        """(shard, unit) of a sample by its shard's name and its key; None when the index has none."""
        if shard_name not in self.names:
            return None
        shard = self.names.index(shard_name)
        return next(((shard, unit) for unit, keys in enumerate(self.units[shard]) if key in keys), None)


@dataclass
class _Sample:
    members: set[str] = field(default_factory=set)
    meta: dict | None = None
    reason: str = ""


def index_shards(urls: list[str], scenes: bool = False) -> ShardIndex:
    """Read the tar headers and jsons of every shard once (remote shards are streamed):
    better now than an hour into training. scenes: group the views of each scene (see
    `group_scenes`); a scene whose views span two shards is an error. The index may hold
    no unit at all (every sample bad, or every scene incomplete): the caller says why."""
    names = shard_names(urls)
    units, bad, views, counts, previous = [], [], set(), {"incomplete": 0, "samples": 0, "png": 0, "any": 0}, None
    for url, name in zip(urls, names, strict=True):
        samples = _shard_samples(url)
        if not samples:
            raise TrainError(f"{url} holds no samples; regenerate it or remove it from the shard folder")
        good = {key: sample for key, sample in samples.items() if not sample.reason}
        bad += [
            {"shard": name, "key": key, "reason": sample.reason} for key, sample in samples.items() if key not in good
        ]
        counts["samples"] += len(samples)
        counts["png"] += sum(schema.TEACHER in sample.members for sample in good.values())
        counts["any"] += sum(schema.TEACHER in sample.members or _has_teacher(sample.meta) for sample in good.values())
        if not scenes:
            units.append(tuple((key,) for key in good))
            continue
        groups = group_scenes(url, [(key, sample.meta) for key, sample in good.items()])
        if previous is not None and groups and groups[0].scene == previous.scene and not previous.complete:
            raise TrainError(
                f"scene {previous.scene!r} has views in {previous.url} and {url}: --view-relational needs every "
                "scene within one shard; regenerate with `simlidar generate --rig` (it keeps a photo's views together)"
            )
        previous = groups[-1] if groups else None
        units.append(tuple(group.keys for group in groups if group.complete))
        views.update(group.views for group in groups if group.complete)
        counts["incomplete"] += sum(not group.complete for group in groups)
    return ShardIndex(
        tuple(urls), tuple(units), tuple(names), scenes, tuple(sorted(views)), counts["incomplete"],
        counts["samples"], tuple(bad), counts["png"], counts["any"],
    )  # fmt: skip


def _has_teacher(meta: dict | None) -> bool:
    return isinstance(meta, dict) and isinstance(meta.get("teacher"), dict)


def _shard_samples(url: str) -> dict[str, _Sample]:
    """key -> its member names, parsed json and why it is unusable ('' when it is not),
    for one shard, in file order."""
    samples: dict[str, _Sample] = {}
    local, stream = Path(url).is_file(), None
    try:
        stream = None if local else wds.gopen(url, "rb")
        with tarfile.open(url) if local else tarfile.open(fileobj=stream, mode="r|*") as tar:
            for member in tar:
                key, suffix = wds.tariterators.base_plus_ext(member.name)
                if key is None or not member.isfile():
                    continue
                sample = samples.setdefault(key, _Sample())
                sample.members.add(suffix)
                if suffix == schema.META:
                    sample.meta, sample.reason = parse_meta(tar.extractfile(member).read())
    except (tarfile.TarError, OSError) as error:
        raise TrainError(f"{url} is not a readable tar shard ({error}); regenerate it") from None
    finally:
        if stream is not None:
            stream.close()
    for sample in samples.values():
        missing = schema.missing_members(sample.members)
        if missing:
            sample.reason = f"no {', '.join(missing)} member"
    return samples


def parse_meta(raw: bytes) -> tuple[dict | None, str]:
    """(the sample's json, '') or (None, why it is unusable)."""
    try:
        meta = json.loads(raw)
    except ValueError as error:
        return None, f"its json does not parse ({error})"
    if not isinstance(meta, dict):
        return None, f"its json is a {type(meta).__name__}, not an object"
    return meta, ""


@dataclass(frozen=True)
class SceneGroup:
    url: str
    scene: str
    keys: tuple[str, ...]
    views: int
    complete: bool


def group_scenes(url: str, samples: list[tuple[str, dict]]) -> list[SceneGroup]:
    """One shard's (key, json) in file order -> its scenes. A scene is a run of consecutive
    samples with one scene id (the writer puts a photo's views next to each other), closed
    when the id changes, when it holds the scene's recorded view count (rig.views), or at
    the end of the shard; its keys are sorted by view. It is complete when it holds every
    view exactly once. A scene of one view, or a sample of no rig, is an error: it has no
    neighbour to relate to."""
    groups: list[SceneGroup] = []
    run: list[tuple[str, int]] = []
    scene, views = None, 0

    def close() -> None:
        keys = tuple(key for key, _ in sorted(run, key=lambda item: item[1]))
        complete = sorted(view for _, view in run) == list(range(views))
        groups.append(SceneGroup(url, scene, keys, views, complete))

    for key, meta in samples:
        rig = meta.get("rig") if isinstance(meta, dict) else None
        if not isinstance(rig, dict) or meta.get("scene") is None or int(rig.get("views", 1)) < 2:
            where = (
                f"scene {meta.get('scene')!r}" if isinstance(meta, dict) and meta.get("scene") else f"sample {key!r}"
            )
            raise TrainError(
                f"{url}: {where} has a single view; --view-relational needs scenes of 2+ adjacent views: "
                "make shards with `simlidar generate --rig virtual`"
            )
        if run and (meta["scene"] != scene or len(run) == views):
            close()
            run = []
        scene, views = meta["scene"], int(rig["views"])
        run.append((key, int(rig.get("view", 0))))
    if run:
        close()
    return groups

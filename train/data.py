"""Streaming samples from WebDataset shards into batches of tensors.

A sample becomes a dict of float tensors: rgb (3, H, W) in 0..1, sparse and dense
(1, H, W) in metres (0 = no value, decoded from 16 bits, never squeezed to 8), teacher
(1, H, W) relative disparity in 0..1 with teacher_valid (1, H, W) 0/1. Training
crops and flips all maps identically.

Training reads *units*: a sample, or with `scenes` a whole scene (every view of one rig
frame, for view-relational training). `index_shards` lists each shard's units once, from
the tar headers (and, for scenes, the json members), before training starts; the index
is what lets a worker group a scene within one pass over one shard and skip whole shards.

Training streams are endless and a pure function of (seed, rank, world size, workers,
units already consumed):

- the shard sequence is every shard once per epoch in an order drawn from (seed, epoch);
  position i of it goes to rank i % world, then to loader worker (i // world) % workers,
  so ranks and workers read disjoint positions;
- each worker shuffles its units' *addresses* (shard position, unit) through a seeded
  buffer, then reads the shards in order and hands units out in the shuffled order;
- each unit's crop and flip come from a generator seeded by (seed, rank, worker, index).

A DataLoader takes batch i from worker i % workers. A run that resumes after S batches
gives worker w the role of worker (w + S) % workers, and each role skips the units it
gave to the first S batches by replaying the buffer on addresses only (no I/O): shards
whose units were all used are never opened. The resumed run sees exactly the batches an
uninterrupted run would have, for any worker count and any stop step.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import fsspec
import numpy as np
import torch
import webdataset as wds
from fsspec.core import split_protocol
from PIL import Image
from simlidar.pipeline import schema

from .correspondence import pixel_index_map, scene_matches
from .errors import TrainError

# Object stores webdataset has no opener of its own for (gs:// would need gsutil): read through fsspec.
FSSPEC_SCHEMES = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs"}


def _open_with_fsspec(url: str, mode: str = "rb", bufsize: int = 8192, **_) -> object:
    return fsspec.open(url, mode).open()


for _scheme in FSSPEC_SCHEMES:
    wds.gopen_schemes[_scheme] = _open_with_fsspec


def list_shards(source: str | Path) -> list[str]:
    """The shard URLs of a folder (its *.tar files, sorted), a single .tar, or a
    webdataset brace pattern ('shards/shard-{000000..000099}.tar'); the folder and the
    .tar may be fsspec URLs (s3://bucket/run/)."""
    text = str(source)
    if "{" in text:
        return list(wds.shardlists.expand_urls(text))
    scheme = split_protocol(text)[0]
    if scheme in FSSPEC_SCHEMES:
        return _list_remote_shards(text, scheme)
    path = Path(text)
    if path.is_dir():
        shards = sorted(str(shard) for shard in path.glob("*.tar"))
        if not shards:
            raise TrainError(f"no shards (*.tar) in {path}: point --shards at the folder `simlidar generate` wrote")
        return shards
    if not path.is_file():
        raise TrainError(f"{text} is neither a shard folder, a .tar file nor a brace pattern of shards")
    return [text]


def _list_remote_shards(url: str, scheme: str) -> list[str]:
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
        raise TrainError(f"no shards (*.tar) in {url}: point --shards at the folder `simlidar generate` wrote")
    return shards


@dataclass(frozen=True)
class ShardIndex:
    """What training reads from each shard, in file order: shard urls[i] holds units[i],
    a unit being the keys of one sample, or with `scenes` the keys of every view of one
    scene in view order. views: the distinct view counts of the scenes (() for samples);
    incomplete: scenes left out because a view is missing (a view that failed to generate);
    teacher_samples: samples with a teacher.png member."""

    urls: tuple[str, ...]
    units: tuple[tuple[tuple[str, ...], ...], ...]
    scenes: bool = False
    views: tuple[int, ...] = ()
    incomplete: int = 0
    teacher_samples: int = 0

    @property
    def unit_count(self) -> int:
        return sum(len(units) for units in self.units)


def index_shards(urls: list[str], scenes: bool = False) -> ShardIndex:
    """Read the tar headers of every shard (and, for scenes, the json members) and check
    each sample has the required members: better now than an hour into training. Remote
    shards are streamed once for this. scenes: group the views of each scene (see
    `group_scenes`); a scene whose views span two shards is an error."""
    units, views, incomplete, teacher_samples, previous = [], set(), 0, 0, None
    for url in urls:
        samples = _shard_samples(url, with_meta=scenes)
        if not samples:
            raise TrainError(f"{url} holds no samples; regenerate it or remove it from the shard folder")
        teacher_samples += sum(schema.TEACHER in present for present, _ in samples.values())
        for key, (present, _) in samples.items():
            missing = schema.missing_members(present)
            if missing:
                raise TrainError(
                    f"{url}: sample {key!r} has no {', '.join(missing)} member; every sample needs "
                    f"{' or '.join(schema.IMAGE_MEMBERS)} and {', '.join(schema.REQUIRED_MEMBERS)}"
                )
        if not scenes:
            units.append(tuple((key,) for key in samples))
            continue
        groups = group_scenes(url, [(key, meta) for key, (_, meta) in samples.items()])
        if previous is not None and groups and groups[0].scene == previous.scene and not previous.complete:
            raise TrainError(
                f"scene {previous.scene!r} has views in {previous.url} and {url}: --view-relational needs every "
                "scene within one shard; regenerate with `simlidar generate --rig` (it keeps a photo's views together)"
            )
        previous = groups[-1] if groups else None
        units.append(tuple(group.keys for group in groups if group.complete))
        views.update(group.views for group in groups if group.complete)
        incomplete += sum(not group.complete for group in groups)
    index = ShardIndex(tuple(urls), tuple(units), scenes, tuple(sorted(views)), incomplete, teacher_samples)
    if index.unit_count == 0:
        raise TrainError(f"no complete scene in {len(urls)} shard(s): every scene misses a view; regenerate them")
    return index


def check_shards(urls: list[str]) -> None:
    """index_shards' checks alone (for eval and the bench)."""
    index_shards(urls)


def _shard_samples(url: str, with_meta: bool) -> dict[str, tuple[set[str], dict | None]]:
    """key -> (member names, parsed json or None) of one shard, in file order."""
    samples: dict[str, tuple[set[str], dict | None]] = {}
    local, stream = Path(url).is_file(), None
    try:
        stream = None if local else wds.gopen(url, "rb")
        with tarfile.open(url) if local else tarfile.open(fileobj=stream, mode="r|*") as tar:
            for member in tar:
                key, suffix = wds.tariterators.base_plus_ext(member.name)
                if key is None or not member.isfile():
                    continue
                present = samples.setdefault(key, (set(), None))[0]
                present.add(suffix)
                if with_meta and suffix == schema.META:
                    samples[key] = (present, json.loads(tar.extractfile(member).read()))
    except (tarfile.TarError, OSError, ValueError) as error:
        raise TrainError(f"{url} is not a readable tar shard ({error}); regenerate it") from None
    finally:
        if stream is not None:
            stream.close()
    return samples


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


def decode_sample(sample: dict) -> dict:
    """Raw WebDataset sample (member name -> bytes) -> numpy maps: rgb (H, W, 3) uint8,
    sparse and dense (H, W) float32 metres, teacher (H, W) float32 0..1 and teacher_valid
    (H, W) bool (from teacher.png; for a generated sample without it, from its dense
    teacher depth; all zero for real data with no teacher), and the key."""
    missing = schema.missing_members(sample)
    if missing:
        raise TrainError(f"{sample.get('__url__', '?')}: sample {sample['__key__']!r} has no {', '.join(missing)}")
    with Image.open(io.BytesIO(schema.image_bytes(sample))) as image:
        rgb = np.asarray(image.convert("RGB"))
    sparse = schema.decode_depth_png(sample[schema.SPARSE])
    dense = schema.decode_depth_png(sample[schema.DENSE])
    meta = json.loads(sample[schema.META])
    if schema.TEACHER in sample:
        teacher, teacher_valid = schema.decode_relative_png(sample[schema.TEACHER])
    elif isinstance(meta.get("teacher"), dict):
        teacher, teacher_valid = relative_from_dense(dense)
    else:
        teacher, teacher_valid = np.zeros_like(dense), np.zeros(dense.shape, bool)
    if not (rgb.shape[:2] == sparse.shape == dense.shape == teacher.shape):
        raise TrainError(f"sample {sample['__key__']!r}: image and depth maps differ in size")
    return {
        "key": sample["__key__"],
        "rgb": rgb,
        "sparse": sparse,
        "dense": dense,
        "teacher": teacher,
        "teacher_valid": teacher_valid,
        "teacher_range": teacher_range(meta, dense),
        "meta": meta,
    }


def teacher_range(meta: dict, dense_m: np.ndarray) -> np.ndarray:
    """(2,) float32: the (min, max) of the teacher's own disparity that teacher.png's 0..1
    stand for (its json's record; for a generated sample without it, of 1 / dense), so
    that the views of one scene can share one normalisation."""
    record = meta.get("teacher_relative")
    if isinstance(record, dict) and "min" in record and "max" in record:
        return np.array([record["min"], record["max"]], np.float32)
    valid = dense_m > 0
    if not valid.any():
        return np.array([0.0, 1.0], np.float32)
    return np.array([1.0 / dense_m[valid].max(), 1.0 / dense_m[valid].min()], np.float32)


def relative_from_dense(dense_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The teacher's relative disparity of a generated sample, whose dense map is the
    teacher's own depth in metres (a relative disparity mapped affinely, or a metric
    depth scaled): 1 / dense, min-max normalised on valid pixels as in teacher.png.
    Returns ((H, W) float32 in 0..1, (H, W) bool valid)."""
    valid = dense_m > 0
    disparity = np.where(valid, 1.0 / np.where(valid, dense_m, 1.0), 0.0)
    if not valid.any():
        return np.zeros_like(dense_m), valid
    low, high = disparity[valid].min(), disparity[valid].max()
    relative = np.where(valid, (disparity - low) / (high - low if high > low else 1.0), 0.0)
    return relative.astype(np.float32), valid


def crop_and_flip(maps: dict, crop_hw: tuple[int, int], rng: np.random.Generator) -> dict:
    """A random (crop_h, crop_w) window and a horizontal flip with p = 0.5, the same for
    every (H, W, ...) array in maps. Images smaller than the crop are zero-padded at the
    bottom and right first (0 = no depth, so padding adds no supervision)."""
    crop_h, crop_w = crop_hw
    height, width = next(iter(maps.values())).shape[:2]
    padded = {}
    for name, array in maps.items():
        pad = [(0, max(crop_h - height, 0)), (0, max(crop_w - width, 0))] + [(0, 0)] * (array.ndim - 2)
        padded[name] = np.pad(array, pad)
    height, width = max(height, crop_h), max(width, crop_w)
    top = int(rng.integers(0, height - crop_h + 1))
    left = int(rng.integers(0, width - crop_w + 1))
    flip = bool(rng.random() < 0.5)
    out = {}
    for name, array in padded.items():
        window = array[top : top + crop_h, left : left + crop_w]
        out[name] = np.ascontiguousarray(window[:, ::-1] if flip else window)
    return out


def to_tensors(maps: dict) -> dict:
    """numpy maps -> float32 tensors, channels first."""
    return {
        "rgb": rgb_tensor(maps["rgb"]),
        "sparse": torch.from_numpy(maps["sparse"])[None],
        "dense": torch.from_numpy(maps["dense"])[None],
        "teacher": torch.from_numpy(maps["teacher"])[None],
        "teacher_valid": torch.from_numpy(maps["teacher_valid"].astype(np.float32))[None],
    }


def rgb_tensor(rgb: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float32 in 0..1, as the model sees an image."""
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float() / 255.0


MAP_NAMES = ("rgb", "sparse", "dense", "teacher", "teacher_valid")

# An address: (position in the worker's shard sequence, shard index, unit index in the shard).
Address = tuple[int, int, int]


class AddressShuffle:
    """A seeded shuffle buffer over an endless iterator: filled to `size`, then each item
    out is a random pick among the buffered ones, replaced by the next item in. Fed
    addresses instead of samples, it can be replayed without reading any data."""

    # Uniform draws are taken from the generator this many at a time (replay speed).
    DRAWS = 4096

    def __init__(self, items: Iterator[Address], size: int, rng: np.random.Generator):
        self.items, self.size, self.rng = items, size, rng
        self.buffer: list[Address] = []
        self.last_in: Address | None = None
        self.draws: list[float] = []

    def __iter__(self):
        return self

    def __next__(self) -> Address:
        while len(self.buffer) < self.size:
            self.last_in = next(self.items)
            self.buffer.append(self.last_in)
        if not self.draws:
            self.draws = self.rng.random(self.DRAWS).tolist()[::-1]
        pick = int(self.draws.pop() * len(self.buffer))
        self.buffer[pick], self.buffer[-1] = self.buffer[-1], self.buffer[pick]
        return self.buffer.pop()

    def still_to_come(self):
        """A test of the addresses this shuffle will still hand out: the buffered ones and
        every one after the last taken in."""
        buffered, last_in = {address[::2] for address in self.buffer}, self.last_in
        return lambda address: last_in is None or address > last_in or address[::2] in buffered


class TrainStream(torch.utils.data.IterableDataset):
    """The endless training stream of one rank, in the order the module docstring
    describes. Each item is one unit decoded, cropped and flipped: for samples, a dict of
    MAP_NAMES tensors (C, H, W); for scenes (index.scenes), the same stacked per view
    (V, C, H, W) plus `neighbours` (V, V), 1 where two views are adjacent (the DataLoader
    adds the batch dimension; `flatten_scenes` turns S scenes into S * V samples).
    batches_done: batches this rank's loader already gave (a resumed run's step)."""

    def __init__(
        self,
        index: ShardIndex,
        batch_size: int,
        crop_hw: tuple[int, int],
        seed: int,
        batches_done: int = 0,
        shuffle_buffer: int = 256,
        rank: int = 0,
        world_size: int = 1,
    ):
        super().__init__()
        self.index, self.batch_size, self.crop_hw, self.seed = index, batch_size, tuple(crop_hw), seed
        self.batches_done, self.shuffle_buffer = batches_done, shuffle_buffer
        self.rank, self.world_size = rank, world_size

    def __iter__(self) -> Iterator[dict]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        role = (worker + self.batches_done) % workers
        used = len(range(role, self.batches_done, workers)) * self.batch_size
        rng = np.random.default_rng([self.seed, self.rank, role])
        addresses = AddressShuffle(self._addresses(role, workers), self.shuffle_buffer, rng)
        for _ in range(used):
            next(addresses)
        reader = self._units_in_order(role, workers, addresses.still_to_come())
        pending: dict[tuple[int, int], list[dict]] = {}
        for number, address in enumerate(addresses, start=used):
            while address[::2] not in pending:
                key, unit = next(reader)
                pending[key] = unit
            yield self._augment(pending.pop(address[::2]), [self.seed, self.rank, role, number])

    def _shard_positions(self, role: int, workers: int) -> Iterator[tuple[int, int]]:
        """(position, shard index) of this rank and worker role, forever."""
        count = len(self.index.urls)
        sequence = (
            shard for epoch in range(1 << 62) for shard in np.random.default_rng([self.seed, epoch]).permutation(count)
        )
        first, step = self.rank + self.world_size * role, self.world_size * workers
        return enumerate(islice(sequence, first, None, step))

    def _addresses(self, role: int, workers: int) -> Iterator[Address]:
        for position, shard in self._shard_positions(role, workers):
            for unit in range(len(self.index.units[shard])):
                yield position, shard, unit

    def _units_in_order(self, role: int, workers: int, wanted) -> Iterator[tuple[tuple[int, int], list[dict]]]:
        """((position, unit), its samples) of the wanted addresses, reading the shards in
        order; a shard with no wanted unit is not opened."""
        for position, shard in self._shard_positions(role, workers):
            units = self.index.units[shard]
            if any(wanted((position, shard, unit)) for unit in range(len(units))):
                for unit, samples in self._read_shard(shard):
                    if wanted((position, shard, unit)):
                        yield (position, unit), samples

    def _read_shard(self, shard: int) -> Iterator[tuple[int, list[dict]]]:
        """(unit index, its samples in view order) of one shard, as the samples stream by."""
        url, units = self.index.urls[shard], self.index.units[shard]
        place = {key: (unit, view) for unit, keys in enumerate(units) for view, key in enumerate(keys)}
        collected: dict[int, list] = {}
        done = 0
        for sample in wds.tarfile_samples([{"url": url}]):
            if sample["__key__"] not in place:
                continue
            unit, view = place[sample["__key__"]]
            views = collected.setdefault(unit, [None] * len(units[unit]))
            views[view] = sample
            if all(item is not None for item in views):
                done += 1
                yield unit, collected.pop(unit)
        if done != len(units):
            raise TrainError(f"{url} changed since training started ({done} of {len(units)} units read); restart")

    def _augment(self, samples: list[dict], seed: list[int]) -> dict:
        """Decode, crop and flip a unit; every view of a scene gets the same window and flip.
        Each view carries `teacher_range` (2,) (see teacher_range). A scene's maps are
        stacked (V, C, H, W), `neighbours` (V, V) marks adjacent views and `matches`
        (V, V, M, 4), `match_rays` (V, V, M, 2, 6) and `match_valid` (V, V, M) hold their
        corresponding pixels in the crops (see correspondence.py)."""
        names = (*MAP_NAMES, "pixel_index") if self.index.scenes else MAP_NAMES
        views, decoded = [], []
        for sample in samples:
            maps = decode_sample(sample)
            if self.index.scenes:
                maps["pixel_index"] = pixel_index_map(*maps["sparse"].shape)
            crop = crop_and_flip({name: maps[name] for name in names}, self.crop_hw, np.random.default_rng(seed))
            views.append({**to_tensors(crop), "teacher_range": torch.from_numpy(maps["teacher_range"])})
            decoded.append((maps, crop.get("pixel_index")))
        if not self.index.scenes:
            return views[0]
        neighbours = np.zeros((len(views), len(views)), np.float32)
        for position, (maps, _) in enumerate(decoded):
            for other in maps["meta"]["rig"].get("neighbours", []):
                neighbours[position, other] = neighbours[other, position] = 1
        matches, match_rays, match_valid = scene_matches(
            [maps["sparse"] for maps, _ in decoded],
            [maps["meta"] for maps, _ in decoded],
            [pixel_index for _, pixel_index in decoded],
            neighbours,
            np.random.default_rng(seed),
        )
        stacked = {name: torch.stack([view[name] for view in views]) for name in (*MAP_NAMES, "teacher_range")}
        pairs = {"neighbours": neighbours, "matches": matches, "match_rays": match_rays, "match_valid": match_valid}
        return {**stacked, **{name: torch.from_numpy(array) for name, array in pairs.items()}}


# Members of a scene batch that describe pairs of views, kept per scene by flatten_scenes.
PAIR_NAMES = ("neighbours", "matches", "match_rays", "match_valid")


def flatten_scenes(batch: dict) -> dict:
    """A batch of scenes (S, V, C, H, W) -> views (S * V, C, H, W); neighbours (S, V, V),
    matches (S, V, V, M, 4), match_rays (S, V, V, M, 2, 6) and match_valid (S, V, V, M)
    stay per scene."""
    return {name: tensor if name in PAIR_NAMES else tensor.flatten(0, 1) for name, tensor in batch.items()}


def _full_frames(samples: Iterator[dict]) -> Iterator[dict]:
    for sample in samples:
        maps = decode_sample(sample)
        yield {"key": maps["key"], **to_tensors(maps), "teacher_range": torch.from_numpy(maps["teacher_range"])}


def eval_stream(urls: list[str]) -> wds.DataPipeline:
    """Every sample once, in shard order, at full size (all of it on every rank: the
    caller decides who evaluates)."""
    return wds.DataPipeline(wds.SimpleShardList(urls), wds.tarfile_to_samples(), wds.pipelinefilter(_full_frames)())


def train_loader(
    index: ShardIndex,
    batch_size: int,
    crop_hw: tuple[int, int],
    seed: int,
    workers: int,
    batches_done: int = 0,
    shuffle_buffer: int = 256,
    rank: int = 0,
    world_size: int = 1,
) -> torch.utils.data.DataLoader:
    """Batches of cropped units (batch_size samples, or batch_size whole scenes), forever.
    At most one worker per shard of this rank, so that no worker reads a shard twice in one epoch."""
    workers = max(0, min(workers, len(index.urls[rank::world_size])))
    stream = TrainStream(index, batch_size, crop_hw, seed, batches_done, shuffle_buffer, rank, world_size)
    return torch.utils.data.DataLoader(
        stream,
        batch_size=batch_size,
        num_workers=workers,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers else None,
    )

"""Streaming samples from WebDataset shards into batches of tensors.

A sample becomes a dict of float tensors: rgb (3, H, W) in 0..1, sparse and dense
(1, H, W) in metres (0 = no value, decoded from 16 bits, never squeezed to 8), teacher
(1, H, W) relative disparity in 0..1 with teacher_valid (1, H, W) 0/1. Training
crops and flips all maps identically.

Training reads *units*: a sample, or with `scenes` a whole scene (every view of one rig
frame, for view-relational training). `shards.index_shards` lists each shard's units once,
before training starts; the index is what lets a worker group a scene within one pass
over one shard and skip whole shards.

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

A unit that does not decode (a truncated JPEG, an 8-bit depth PNG, maps of two sizes,
a json that does not parse) is skipped: its worker takes the next address, and records
the unit on the next item it gives (the loop writes errors.jsonl). Bad units are bad on
every pass, so skipping is as deterministic as the rest: the checkpoint keeps the bad
units met so far, and the replay skips them again without reading, so a resumed run
still sees the batches of an uninterrupted one.
"""

from __future__ import annotations

import io
import signal
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice

import numpy as np
import torch
import webdataset as wds
from PIL import Image
from simlidar.pipeline import schema
from torch.utils.data import default_collate

from .correspondence import match_offsets, pixel_index_map, scene_matches
from .errors import TrainError
from .shards import ShardIndex, parse_meta, shard_names


def decode_sample(sample: dict) -> dict:
    """Raw WebDataset sample (member name -> bytes) -> numpy maps: rgb (H, W, 3) uint8,
    sparse and dense (H, W) float32 metres, teacher (H, W) float32 0..1 and teacher_valid
    (H, W) bool (from teacher.png; for a generated sample without it, from its dense
    teacher depth; all zero for real data with no teacher), and the key. A sample that
    cannot be decoded, or whose maps disagree in size, raises TrainError naming the member."""
    missing = schema.missing_members(sample)
    if missing:
        raise TrainError(f"no {', '.join(missing)} member")
    rgb = _decode_member(sample, schema.IMAGE if schema.IMAGE in sample else schema.IMAGE_PNG, _decode_rgb)
    sparse = _decode_member(sample, schema.SPARSE, schema.decode_depth_png)
    dense = _decode_member(sample, schema.DENSE, schema.decode_depth_png)
    meta, unusable = parse_meta(sample[schema.META])
    if unusable:
        raise TrainError(unusable)
    if schema.TEACHER in sample:
        teacher, teacher_valid = _decode_member(sample, schema.TEACHER, schema.decode_relative_png)
    elif isinstance(meta.get("teacher"), dict):
        teacher, teacher_valid = relative_from_dense(dense)
    else:
        teacher, teacher_valid = np.zeros_like(dense), np.zeros(dense.shape, bool)
    sizes = {"image": rgb.shape[:2], schema.SPARSE: sparse.shape, schema.DENSE: dense.shape, "teacher": teacher.shape}
    if len(set(sizes.values())) > 1:
        shown = ", ".join(f"{name} {height} x {width}" for name, (height, width) in sizes.items())
        raise TrainError(f"its maps differ in size ({shown}, as H x W)")
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


# What decoding a sample's bytes may raise (Pillow alone raises several kinds): the sample
# is bad, and is skipped and recorded; the run goes on.
DECODE_ERRORS = (
    TrainError,
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    KeyError,
    TypeError,
    Image.DecompressionBombError,
)


def _decode_rgb(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def _decode_member(sample: dict, name: str, decode):
    try:
        return decode(sample[name])
    except DECODE_ERRORS as error:
        raise TrainError(f"{name}: {describe(error)}") from None


def describe(error: Exception) -> str:
    """One line for errors.jsonl: a TrainError's own message, else its type and message."""
    text = str(error).splitlines()[0] if str(error) else ""
    return text if isinstance(error, TrainError) else f"{type(error).__name__}: {text}".rstrip(": ")


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


class BadSample(TrainError):
    """A sample of a unit that does not decode: its key, and why (the message)."""

    def __init__(self, key: str, reason: str):
        super().__init__(reason)
        self.key = key


@dataclass(frozen=True)
class StreamFailure:
    """What a loader worker hands on instead of a unit when it cannot go on (a shard gone or
    changed since the index, nothing but bad samples): plain data, so that the loop stops
    the run with this one line instead of a worker's traceback; `skipped`: the records of
    the bad units met since the last unit handed on."""

    message: str
    skipped: list = field(default_factory=list)


class TrainStream(torch.utils.data.IterableDataset):
    """The endless training stream of one rank, in the order the module docstring
    describes. Each item is one unit decoded, cropped and flipped: for samples, a dict of
    MAP_NAMES tensors (C, H, W); for scenes (index.scenes), the same stacked per view
    (V, C, H, W) plus `neighbours` (V, V), 1 where two views are adjacent (the DataLoader
    adds the batch dimension; `flatten_scenes` turns S scenes into S * V samples). Each
    item also names its unit ("sample": 'KEY (SHARD)') and carries the records of the bad
    units skipped since the previous item ("skipped").
    batches_done: batches this rank's loader already gave (a resumed run's step);
    known_bad: (shard, unit) of units known not to decode (skipped unread)."""

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
        known_bad: frozenset[tuple[int, int]] = frozenset(),
    ):
        super().__init__()
        self.index, self.batch_size, self.crop_hw, self.seed = index, batch_size, tuple(crop_hw), seed
        self.batches_done, self.shuffle_buffer = batches_done, shuffle_buffer
        self.rank, self.world_size, self.known_bad = rank, world_size, known_bad

    def __iter__(self) -> Iterator[dict | StreamFailure]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        role = (worker + self.batches_done) % workers
        rng = np.random.default_rng([self.seed, self.rank, role])
        addresses = AddressShuffle(self._addresses(role, workers), self.shuffle_buffer, rng)
        bad, skipped = set(self.known_bad), []
        try:
            passed = self._replay(addresses, len(range(role, self.batches_done, workers)) * self.batch_size, bad)
            reader = self._units_in_order(role, workers, addresses.still_to_come(), bad)
            yield from self._good_units(addresses, reader, passed, role, bad, skipped)
        except (TrainError, OSError, tarfile.TarError) as error:
            yield StreamFailure(describe(error), skipped)

    def _replay(self, addresses: AddressShuffle, used: int, bad: set) -> int:
        """Pass the addresses whose units this role gave to the batches already done,
        without reading anything (the bad units among them were skipped then, and are
        known now); returns how many addresses were passed."""
        passed = in_a_row = 0
        while used:
            address = next(addresses)
            passed += 1
            in_a_row = in_a_row + 1 if address[1:] in bad else 0
            used -= not in_a_row
            self._check_not_all_bad(in_a_row)
        return passed

    def _check_not_all_bad(self, bad_in_a_row: int) -> None:
        if bad_in_a_row > self.index.unit_count:
            raise TrainError("every sample this loader reads is bad: see errors.jsonl")

    def _good_units(self, addresses, reader, passed: int, role: int, bad: set, skipped: list) -> Iterator[dict]:
        """The stream from the first address not yet passed: units that decode, in address
        order; one that does not is added to `bad` and its record to `skipped`, which the
        next good unit carries."""
        pending: dict[tuple[int, int], list[dict]] = {}
        in_a_row = 0
        for number, address in enumerate(addresses, start=passed):
            if address[1:] in bad:
                pending.pop(address[::2], None)
                in_a_row += 1
                self._check_not_all_bad(in_a_row)
                continue
            while address[::2] not in pending:
                key, unit = next(reader)
                pending[key] = unit
            samples = pending.pop(address[::2])
            try:
                item = self._augment(samples, [self.seed, self.rank, role, number])
            except DECODE_ERRORS as error:
                bad.add(address[1:])
                skipped.append(self._bad_record(address[1], samples, error))
                in_a_row += 1
                self._check_not_all_bad(in_a_row)
                continue
            in_a_row = 0
            name = f"{samples[0]['__key__']} ({self.index.names[address[1]]})"
            yield {**item, "sample": name, "skipped": list(skipped)}
            skipped.clear()

    def _bad_record(self, shard: int, samples: list[dict], error: Exception) -> dict:
        """errors.jsonl's record of a unit that does not decode: its shard, the key of the
        sample that failed (the unit's first when it cannot tell) and why."""
        key = error.key if isinstance(error, BadSample) else samples[0]["__key__"]
        return {"shard": self.index.names[shard], "key": key, "reason": describe(error)}

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

    def _units_in_order(self, role: int, workers: int, still_to_come, bad: set):
        """((position, unit), its samples) of the addresses still to come whose units are
        not known to be bad (`bad` grows as the stream goes), reading the shards in order;
        a shard with no such unit is not opened."""

        def wanted(address: Address) -> bool:
            return address[1:] not in bad and still_to_come(address)

        for position, shard in self._shard_positions(role, workers):
            units = self.index.units[shard]
            if any(wanted((position, shard, unit)) for unit in range(len(units))):
                for unit, samples in read_units(self.index, shard):
                    if wanted((position, shard, unit)):
                        yield (position, unit), samples

    def _augment(self, samples: list[dict], seed: list[int]) -> dict:
        """Decode, crop and flip a unit; every view of a scene gets the same window and flip.
        Each view carries `teacher_range` (2,) (see teacher_range). A scene's maps are
        stacked (V, C, H, W), `neighbours` (V, V) marks adjacent views and `matches`
        (V, V, M, 4), `match_rays` (V, V, M, 2, 6) and `match_valid` (V, V, M) hold their
        corresponding pixels in the crops (see correspondence.py)."""
        names = (*MAP_NAMES, "pixel_index") if self.index.scenes else MAP_NAMES
        views, decoded = [], []
        for sample in samples:
            try:
                maps = decode_sample(sample)
            except DECODE_ERRORS as error:
                raise BadSample(sample["__key__"], describe(error)) from None
            if self.index.scenes:
                maps["pixel_index"] = pixel_index_map(*maps["sparse"].shape)
            crop = crop_and_flip({name: maps[name] for name in names}, self.crop_hw, np.random.default_rng(seed))
            views.append({**to_tensors(crop), "teacher_range": torch.from_numpy(maps["teacher_range"])})
            decoded.append((maps, crop.get("pixel_index")))
        if not self.index.scenes:
            return views[0]
        neighbours = adjacent_views([maps["meta"] for maps, _ in decoded])
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


def read_units(index: ShardIndex, shard: int) -> Iterator[tuple[int, list[dict]]]:
    """(unit index, its samples in view order) of one shard, as the samples stream by."""
    url, units = index.urls[shard], index.units[shard]
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


def adjacent_views(metas: list[dict]) -> np.ndarray:
    """(V, V) float32, 1 where the jsons' rig.neighbours make two views of a scene adjacent."""
    neighbours = np.zeros((len(metas), len(metas)), np.float32)
    for position, meta in enumerate(metas):
        for other in meta["rig"].get("neighbours", []):
            neighbours[position, other] = neighbours[other, position] = 1
    return neighbours


def first_scene_offsets(index: ShardIndex, scenes: int = 4) -> np.ndarray:
    """correspondence.match_offsets of the first `scenes` scenes that decode, read from the
    first shard that has any (for the check that a crop can hold a match)."""
    shard = next(shard for shard, units in enumerate(index.units) if units)
    offsets = [np.zeros((0, 2), np.int64)]
    for _, samples in islice(read_units(index, shard), scenes):
        try:
            decoded = [decode_sample(sample) for sample in samples]
            metas = [maps["meta"] for maps in decoded]
            offsets.append(match_offsets([maps["sparse"] for maps in decoded], metas, adjacent_views(metas)))
        except DECODE_ERRORS:
            continue
    return np.concatenate(offsets)


# Members of a scene batch that describe pairs of views, kept per scene by flatten_scenes.
PAIR_NAMES = ("neighbours", "matches", "match_rays", "match_valid")


def flatten_scenes(batch: dict) -> dict:
    """A batch of scenes (S, V, C, H, W) -> views (S * V, C, H, W); neighbours (S, V, V),
    matches (S, V, V, M, 4), match_rays (S, V, V, M, 2, 6) and match_valid (S, V, V, M)
    stay per scene."""
    return {name: tensor if name in PAIR_NAMES else tensor.flatten(0, 1) for name, tensor in batch.items()}


def eval_stream(urls: list[str], on_bad=None) -> wds.DataPipeline:
    """Every sample once, in shard order, at full size (all of it on every rank: the
    caller decides who evaluates). A sample that does not decode is left out; on_bad, if
    given, receives its record ({"shard", "key", "reason"})."""
    names = dict(zip(urls, shard_names(urls), strict=True))

    def full_frames(samples: Iterator[dict]) -> Iterator[dict]:
        for sample in samples:
            try:
                maps = decode_sample(sample)
            except DECODE_ERRORS as error:
                if on_bad is not None:
                    on_bad({"shard": names.get(sample["__url__"]), "key": sample["__key__"], "reason": describe(error)})
                continue
            yield {"key": maps["key"], **to_tensors(maps), "teacher_range": torch.from_numpy(maps["teacher_range"])}

    return wds.DataPipeline(wds.SimpleShardList(urls), wds.tarfile_to_samples(), wds.pipelinefilter(full_frames)())


def collate(items: list) -> dict:
    """The stream's items -> one batch: their tensors stacked, "samples" (the units' names)
    and "skipped" (records of the bad units met on the way); {"failure": message} when a
    worker could not go on."""
    failures = [item for item in items if isinstance(item, StreamFailure)]
    skipped = [
        record for item in items for record in (item.skipped if isinstance(item, StreamFailure) else item["skipped"])
    ]
    if failures:
        return {"failure": failures[0].message, "skipped": skipped}
    tensors = [{name: value for name, value in item.items() if name not in ("sample", "skipped")} for item in items]
    return {**default_collate(tensors), "samples": [item["sample"] for item in items], "skipped": skipped}


def _leave_ctrl_c_to_the_trainer(_worker: int) -> None:
    """Loader workers ignore SIGINT (a terminal's Ctrl-C reaches the whole process group):
    the training process finishes its step, saves it, then ends them. SIGTERM keeps its
    default: multiprocessing ends leftover workers with it when Python exits, and a worker
    that ignored it would be waited for forever. A worker that SIGTERM (Slurm's, sent to
    every process) ends before the trainer stops is noticed at the next step boundary
    (signals.StopSignals.check_workers)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def shut_down(batches: Iterator[dict]) -> None:
    """End the worker processes of a loader's iterator now, and have torch forget them (its
    SIGCHLD check then ignores their exits): what dropping the last reference does, which an
    exception's traceback can delay. torch has no public call for it."""
    shutdown = getattr(batches, "_shutdown_workers", None)
    if shutdown is not None:
        shutdown()


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
    known_bad: frozenset[tuple[int, int]] = frozenset(),
) -> torch.utils.data.DataLoader:
    """Batches of cropped units (batch_size samples, or batch_size whole scenes), forever
    (see `collate`; TrainStream for known_bad). At most one worker per shard of this rank,
    so that no worker reads a shard twice in one epoch."""
    workers = max(0, min(workers, len(index.urls[rank::world_size])))
    stream = TrainStream(index, batch_size, crop_hw, seed, batches_done, shuffle_buffer, rank, world_size, known_bad)
    return torch.utils.data.DataLoader(
        stream,
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=torch.cuda.is_available(),
        worker_init_fn=_leave_ctrl_c_to_the_trainer,
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers else None,
    )

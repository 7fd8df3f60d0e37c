"""Streaming samples from WebDataset shards into batches of tensors.

A sample becomes a dict of float tensors: rgb (3, H, W) in 0..1, sparse and dense
(1, H, W) in metres (0 = no value, decoded from 16 bits, never squeezed to 8), teacher
(1, H, W) relative disparity in 0..1 with teacher_valid (1, H, W) 0/1. Training
crops and flips all maps identically.

Training streams are endless and a pure function of (seed, samples already
consumed): shards are reshuffled per epoch with the seed, split by node and then by
DataLoader worker, shuffled in a seeded buffer, and each sample's crop and flip come
from its own seeded generator. A run that resumes at step S skips what the first S
batches used, so it sees exactly the batches an uninterrupted run would have.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
from functools import partial
from itertools import islice
from pathlib import Path

import fsspec
import numpy as np
import torch
import webdataset as wds
from fsspec.core import split_protocol
from PIL import Image
from simlidar.pipeline import schema

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


def check_shards(urls: list[str]) -> None:
    """Read the tar headers of local shards (no data) and fail on the first sample that
    lacks a required member: better now than an hour into training."""
    for url in urls:
        if not Path(url).is_file():
            continue
        try:
            with tarfile.open(url) as tar:
                names = tar.getnames()
        except (tarfile.TarError, OSError) as error:
            raise TrainError(f"{url} is not a readable tar shard ({error}); regenerate it") from None
        members: dict[str, set[str]] = {}
        for name in names:
            key, _, member = Path(name).name.partition(".")
            members.setdefault(key, set()).add(member)
        if not members:
            raise TrainError(f"{url} holds no samples; regenerate it or remove it from the shard folder")
        for key, present in members.items():
            missing = [member for member in schema.REQUIRED_MEMBERS if member not in present]
            if missing:
                raise TrainError(
                    f"{url}: sample {key!r} has no {', '.join(missing)} member; "
                    f"every sample needs {', '.join(schema.REQUIRED_MEMBERS)}"
                )


def decode_sample(sample: dict) -> dict:
    """Raw WebDataset sample (member name -> bytes) -> numpy maps: rgb (H, W, 3) uint8,
    sparse and dense (H, W) float32 metres, teacher (H, W) float32 0..1 and teacher_valid
    (H, W) bool (from teacher.png; for a generated sample without it, from its dense
    teacher depth; all zero for real data with no teacher), and the key."""
    missing = [member for member in schema.REQUIRED_MEMBERS if member not in sample]
    if missing:
        raise TrainError(f"{sample.get('__url__', '?')}: sample {sample['__key__']!r} has no {', '.join(missing)}")
    with Image.open(io.BytesIO(sample[schema.IMAGE])) as image:
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
        "meta": meta,
    }


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
        "rgb": torch.from_numpy(np.ascontiguousarray(maps["rgb"].transpose(2, 0, 1))).float() / 255.0,
        "sparse": torch.from_numpy(maps["sparse"])[None],
        "dense": torch.from_numpy(maps["dense"])[None],
        "teacher": torch.from_numpy(maps["teacher"])[None],
        "teacher_valid": torch.from_numpy(maps["teacher_valid"].astype(np.float32))[None],
    }


MAP_NAMES = ("rgb", "sparse", "dense", "teacher", "teacher_valid")


def _endless_shards(urls: list[str], seed: int) -> Iterator[dict]:
    """Every shard once per epoch, in an order drawn from (seed, epoch), forever."""
    for epoch in range(1 << 62):
        for index in np.random.default_rng([seed, epoch]).permutation(len(urls)):
            yield {"url": urls[index]}


def _skip_and_augment(
    samples: Iterator[dict], batch_size: int, batches_done: int, crop_hw: tuple[int, int], seed: int
) -> Iterator[dict]:
    """Drop what this worker gave to the first batches_done batches (the DataLoader
    takes batch i from worker i % num_workers), then decode, crop and flip each sample
    with a generator seeded by (seed, rank, worker, sample index): a sample's
    augmentation does not depend on what ran before it."""
    rank, _, worker, num_workers = wds.utils.pytorch_worker_info()
    skipped = len(range(worker, batches_done, num_workers)) * batch_size
    for index, sample in enumerate(islice(samples, skipped, None), start=skipped):
        maps = decode_sample(sample)
        rng = np.random.default_rng([seed, rank, worker, index])
        yield to_tensors(crop_and_flip({name: maps[name] for name in MAP_NAMES}, crop_hw, rng))


def _scene_views(sample: dict) -> tuple[str | None, int]:
    """(scene id, view index) from a sample's json; scene None for samples of no rig."""
    meta = json.loads(sample[schema.META])
    return meta.get("scene"), int(meta.get("rig", {}).get("view", 0))


def _group_scenes(samples: Iterator[dict]) -> Iterator[list[dict]]:
    """Consecutive samples of one scene (the writer puts a photo's rig views next to each
    other) -> one list per scene, in view order. A scene of one view is an error: it has
    no neighbour to relate to."""
    group: list[dict] = []
    scene = None

    def finished() -> list[dict]:
        if len(group) < 2:
            raise TrainError(_one_view_message(group[0]["__key__"], scene, group[0].get("__url__", "?")))
        return sorted(group, key=lambda sample: _scene_views(sample)[1])

    for sample in samples:
        sample_scene, _ = _scene_views(sample)
        if sample_scene is None:
            raise TrainError(_one_view_message(sample["__key__"], None, sample.get("__url__", "?")))
        if group and sample_scene != scene:
            yield finished()
            group = []
        group.append(sample)
        scene = sample_scene
    if group:
        yield finished()


def _one_view_message(key: str, scene: str | None, url: str) -> str:
    where = f"scene {scene!r}" if scene is not None else f"sample {key!r} (no scene id)"
    return (
        f"{url}: {where} has a single view; --view-relational needs scenes of 2+ adjacent views: "
        "make shards with `simlidar generate --rig virtual`"
    )


def check_scenes(urls: list[str]) -> None:
    """Read the json members of the first local shard and fail on the first scene with a
    single view (or a sample with no scene id): better now than inside a loader worker."""
    local = [url for url in urls if Path(url).is_file()]
    if not local:
        return
    with tarfile.open(local[0]) as tar:
        samples = [
            {
                "__key__": Path(member.name).name.partition(".")[0],
                "__url__": local[0],
                schema.META: tar.extractfile(member).read(),
            }
            for member in tar.getmembers()
            if member.name.endswith("." + schema.META)
        ]
    for _ in _group_scenes(iter(samples)):
        pass


def _skip_and_augment_scenes(
    scenes: Iterator[list[dict]], batch_size: int, batches_done: int, crop_hw: tuple[int, int], seed: int
) -> Iterator[dict]:
    """_skip_and_augment for whole scenes: every view of a scene gets the same crop window
    and flip; maps are stacked (V, C, H, W) and `neighbours` (V, V) marks adjacent views."""
    rank, _, worker, num_workers = wds.utils.pytorch_worker_info()
    skipped = len(range(worker, batches_done, num_workers)) * batch_size
    for index, scene in enumerate(islice(scenes, skipped, None), start=skipped):
        views = []
        neighbours = torch.zeros(len(scene), len(scene))
        for position, sample in enumerate(scene):
            maps = decode_sample(sample)
            rng = np.random.default_rng([seed, rank, worker, index])
            views.append(to_tensors(crop_and_flip({name: maps[name] for name in MAP_NAMES}, crop_hw, rng)))
            for other in maps["meta"]["rig"].get("neighbours", []):
                if other < len(scene):
                    neighbours[position, other] = neighbours[other, position] = 1
        yield {**{name: torch.stack([view[name] for view in views]) for name in MAP_NAMES}, "neighbours": neighbours}


def flatten_scenes(batch: dict) -> dict:
    """A batch of scenes (S, V, C, H, W) -> views (S * V, C, H, W); neighbours stay (S, V, V)."""
    return {name: tensor if name == "neighbours" else tensor.flatten(0, 1) for name, tensor in batch.items()}


def train_stream(
    urls: list[str],
    batch_size: int,
    crop_hw: tuple[int, int],
    seed: int,
    batches_done: int = 0,
    shuffle_buffer: int = 256,
    scenes: bool = False,
) -> wds.DataPipeline:
    """The endless training pipeline, one sample at a time (the DataLoader batches);
    scenes: one scene (all its views) at a time instead, for view-relational training."""
    if scenes:
        return wds.DataPipeline(
            partial(_endless_shards, urls, seed),
            wds.split_by_node,
            wds.split_by_worker,
            wds.tarfile_to_samples(),
            wds.pipelinefilter(_group_scenes)(),
            wds.shuffle(shuffle_buffer, min(shuffle_buffer, 64), seed=seed),
            wds.pipelinefilter(_skip_and_augment_scenes)(batch_size, batches_done, tuple(crop_hw), seed),
        )
    return wds.DataPipeline(
        partial(_endless_shards, urls, seed),
        wds.split_by_node,
        wds.split_by_worker,
        wds.tarfile_to_samples(),
        wds.shuffle(shuffle_buffer, min(shuffle_buffer, 64), seed=seed),
        wds.pipelinefilter(_skip_and_augment)(batch_size, batches_done, tuple(crop_hw), seed),
    )


def _full_frames(samples: Iterator[dict]) -> Iterator[dict]:
    for sample in samples:
        maps = decode_sample(sample)
        yield {"key": maps["key"], **to_tensors(maps)}


def eval_stream(urls: list[str]) -> wds.DataPipeline:
    """Every sample once, in shard order, at full size."""
    return wds.DataPipeline(
        wds.SimpleShardList(urls),
        wds.split_by_node,
        wds.split_by_worker,
        wds.tarfile_to_samples(),
        wds.pipelinefilter(_full_frames)(),
    )


def train_loader(
    urls: list[str],
    batch_size: int,
    crop_hw: tuple[int, int],
    seed: int,
    workers: int,
    batches_done: int = 0,
    shuffle_buffer: int = 256,
    scenes: bool = False,
) -> torch.utils.data.DataLoader:
    """Batches of cropped samples (scenes: of batch_size whole scenes), forever. At most
    one worker per shard of this node, so that no worker is left without data."""
    rank, world_size, _, _ = wds.utils.pytorch_worker_info()
    workers = max(0, min(workers, len(urls[rank::world_size])))
    stream = train_stream(urls, batch_size, crop_hw, seed, batches_done, shuffle_buffer, scenes)
    return torch.utils.data.DataLoader(
        stream,
        batch_size=batch_size,
        num_workers=workers,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers else None,
    )

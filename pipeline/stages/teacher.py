"""The teacher cache: raw teacher output per image in a zarr hierarchy, so a second
run (another sensor, seed, mount or mesh) makes no model call.

One entry per (image content, teacher): an array at TEACHER/AB/SHA256 where SHA256
is the hash of the photo file's bytes and TEACHER names the teacher, its weights
revision and the settings that change its output. The depth map is one
Blosc-zstd-compressed float32 chunk; the entry's attributes (output kind, focal
length, teacher, revision) are written after the data with "complete": true, so an
entry cut short by a crash or a full disk reads as missing and is recomputed.
What is cached is the teacher's own output: the relative-to-metric conversion,
which depends on the seed, happens after it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from simlidar.teachers import DepthPrediction, Teacher, TeacherError, TeacherInput, cache_id, load_teacher
from simlidar.teachers.model_io import ModelRunner

from ..output.store import Store, open_store
from ..sources.fingerprint import file_sha256
from .timing import StageTimes

DEFAULT_FOLDER = "teacher-cache"
FORMAT = 1


def teacher_cache_dir(option: str, out: Store) -> str:
    """--cache (a folder or a URL), or teacher-cache in the output's store `out` when not
    given: on the object store too when OUT is a URL, so every node of a cluster reuses
    what any node computed. A URL is checked now (a missing package or credentials in it:
    one line now, not in every task)."""
    return open_store(option).location if option else out.where(DEFAULT_FOLDER)


def _slug(text: str) -> str:
    """A teacher id as one readable path component (zarr node names cannot hold '/'),
    with a hash of the id so that ids differing only in punctuation stay apart."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")[:80]
    return f"{readable}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


class TeacherCache:
    """A zarr group of teacher outputs under `root`, a folder or an fsspec URL (created
    on first write)."""

    def __init__(self, root: str | Path):
        self.root = str(root)
        self._group = None

    @staticmethod
    def entry_path(image_sha256: str, teacher_id: str) -> str:
        return f"{_slug(teacher_id)}/{image_sha256[:2]}/{image_sha256}"

    def _root_group(self):
        import zarr

        if self._group is None:
            try:
                self._group = zarr.open_group(self.root, mode="a", attributes={"simlidar_teacher_cache": FORMAT})
            except zarr.errors.ContainsGroupError:  # another shard task made it after this one looked
                self._group = zarr.open_group(self.root, mode="r+")
        return self._group

    def get(self, path: str, shape: tuple[int, int]) -> DepthPrediction | None:
        """The complete entry at `path` whose depth is (H, W) = shape, else None."""
        import zarr

        try:
            array = zarr.open_array(self.root, path=path, mode="r")
        except (FileNotFoundError, KeyError, ValueError, zarr.errors.NodeNotFoundError):
            return None
        attributes = dict(array.attrs)
        if not attributes.get("complete") or tuple(array.shape) != tuple(shape):
            return None
        try:
            depth = np.asarray(array[...], dtype=np.float32)
        except (OSError, ValueError, RuntimeError):
            return None
        return DepthPrediction(
            depth=depth,
            kind=attributes["kind"],
            focal_px=attributes.get("focal_px"),
            conversion=attributes.get("conversion", {}),
            teacher=attributes.get("teacher", ""),
            revision=attributes.get("revision", ""),
        )

    def put(self, path: str, prediction: DepthPrediction) -> None:
        """Write (or overwrite) the entry at `path`: data first, then the attributes
        that mark it complete."""
        from zarr.codecs import BloscCodec

        depth = np.ascontiguousarray(prediction.depth, dtype=np.float32)
        array = self._root_group().create_array(
            path,
            shape=depth.shape,
            dtype="float32",
            chunks=depth.shape,
            compressors=BloscCodec(cname="zstd", clevel=3, shuffle="shuffle"),
            overwrite=True,
        )
        array[...] = depth
        array.attrs.update(
            {
                "kind": prediction.kind,
                "focal_px": prediction.focal_px,
                "conversion": prediction.conversion,
                "teacher": prediction.teacher,
                "revision": prediction.revision,
                "complete": True,
            }
        )


class CachedTeacher:
    """`teacher` behind a TeacherCache: cached images skip the teacher; what it
    predicts for the others is stored. hits / misses count entries found / computed;
    `times` gets the seconds of the teacher (stage "teacher") and of the cache's
    hashing, reads and writes ("teacher cache")."""

    def __init__(self, teacher: Teacher, cache: TeacherCache, times: StageTimes | None = None):
        self.teacher, self.cache = teacher, cache
        self.name = teacher.name
        self.times = times or StageTimes()
        self.hits = 0
        self.misses = 0

    def predict(self, batch: Sequence[TeacherInput]) -> list[DepthPrediction | TeacherError]:
        results: list[DepthPrediction | TeacherError | None] = [None] * len(batch)
        paths: list[str | None] = []
        for index, item in enumerate(batch):
            teacher_id = cache_id(self.teacher, item)
            paths.append(None)
            if teacher_id:
                with self.times.stage("teacher cache"):
                    paths[index] = self.cache.entry_path(file_sha256(item.path), teacher_id)
                    results[index] = self.cache.get(paths[index], item.rgb.shape[:2])
                self.hits += results[index] is not None
        todo = [index for index, result in enumerate(results) if result is None]
        if not todo:
            return results
        with self.times.stage("teacher"):
            predictions = self.teacher.predict([batch[i] for i in todo])
        for index, prediction in zip(todo, predictions, strict=True):
            results[index] = prediction
            if paths[index] is not None and isinstance(prediction, DepthPrediction):
                with self.times.stage("teacher cache"):
                    self.cache.put(paths[index], prediction)
                self.misses += 1
        return results


@dataclass(frozen=True)
class TeacherSpec:
    """How to build the run's teacher: its --teacher name and the settings load_teacher takes."""

    name: str
    output: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    batch_size: int = 4
    max_size: int = 1536
    revision: str | None = None


class NoTeacher:
    """The teacher of a run that has none (a converter without --teacher): it is never asked."""

    name = ""

    def predict(self, batch: Sequence[TeacherInput]) -> list[DepthPrediction | TeacherError]:
        if batch:
            raise ValueError("this run has no teacher; its inputs ask for none")
        return []


def build_teacher(spec: TeacherSpec | None, runner: ModelRunner | None = None) -> Teacher:
    """The teacher `spec` asks for (weights located, model not yet loaded); None: none.
    runner: where its model's forward runs (None: in this process)."""
    if spec is None:
        return NoTeacher()
    settings = dataclasses.asdict(spec)
    return load_teacher(settings.pop("name"), runner=runner, **settings)

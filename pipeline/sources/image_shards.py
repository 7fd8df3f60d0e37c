"""WebDataset shards of images as input (img2dataset's output): a brace pattern
(`'s3://bucket/coco-{00000..00099}.tar'`), a glob (`'shards/*.tar'`) or one `.tar`,
local or on any fsspec filesystem.

Listing reads each tar's headers once and records where every sample's members lie;
a worker then reads one sample with one ranged read and stages it as local files:
the image as KEY.EXT, `KEY.depth.png` / `KEY.depth.npy` as the depth sidecar and
`KEY.json` as the intrinsics sidecar when it holds fx, fy, cx or cy. The shard's own
`json` and `txt` go into the sample's json as `source_meta`. Keys are the shard's
`__key__` (sanitised; a key found in two shards gets a hash of its shard appended)."""

from __future__ import annotations

import glob
import json
import posixpath
import re
import tarfile
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

from braceexpand import braceexpand

from ..errors import PipelineError
from ..schema import sanitize_key
from .fingerprint import listed_state
from .photos import BadImage, StagedInput, disambiguate
from .urls import filesystem, is_url, join

# Image members in order of preference when a sample has more than one.
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff")
KEPT_EXTENSIONS = (*IMAGE_EXTENSIONS, "depth.png", "depth.npy", "json", "txt")
INTRINSICS_FIELDS = ("fx", "fy", "cx", "cy")
# WebDataset's split of a member name: key = up to the first dot of the file name.
_KEY_AND_EXTENSION = re.compile(r"^((?:.*/|)[^./]+)\.([^/]*)$")
# Tar headers between a sample's members; more than this apart and members are read one by one.
_HEADER_ALLOWANCE = 2048


@dataclass(frozen=True)
class ShardSample:
    """One sample of an input shard. root: the folder (path or URL) shards are listed
    from; shard: the tar's path relative to it; sample_key: the shard's __key__; key:
    the sample key of the run; members: (extension, offset, size) inside the tar."""

    root: str
    shard: str
    sample_key: str
    key: str
    members: tuple[tuple[str, int, int], ...]
    occurrence: int = 0
    shard_state: str = ""

    @property
    def relpath(self) -> str:
        """shard/__key__, and #N for the N-th sample of a __key__ the shard repeats."""
        return f"{self.shard}/{self.sample_key}" + (f"#{self.occurrence + 1}" if self.occurrence else "")

    def has_depth_sidecar(self) -> bool:
        return any(extension.startswith("depth.") for extension, _, _ in self.members)

    def files(self) -> dict[str, str]:
        """What this sample is read from: its shard, with its state as listed."""
        return {join(self.root, self.shard): self.shard_state}

    def stage(self, folder: Path) -> StagedInput:
        """Write the sample's image and sidecars to folder/KEY/ (see the module's doc)."""
        contents = self._read()
        target = folder / self.key
        target.mkdir(parents=True, exist_ok=True)
        image_extension = next(extension for extension in IMAGE_EXTENSIONS if extension in contents)
        image_path = target / f"{self.key}.{image_extension}"
        image_path.write_bytes(contents[image_extension])
        for depth in ("depth.png", "depth.npy"):
            if depth in contents:
                (target / f"{self.key}.{depth}").write_bytes(contents[depth])
        source_meta = {}
        if "json" in contents:
            source_meta["json"] = self._json(contents["json"])
            if isinstance(source_meta["json"], dict) and any(f in source_meta["json"] for f in INTRINSICS_FIELDS):
                (target / f"{self.key}.json").write_bytes(contents["json"])
        if "txt" in contents:
            source_meta["txt"] = contents["txt"].decode("utf-8", errors="replace")
        return StagedInput(image_path, source_meta or None)

    def _read(self) -> dict[str, bytes]:
        """The members' bytes: one ranged read when they lie together, as WebDataset writes them."""
        fs, path = filesystem(join(self.root, self.shard))
        start = min(offset for _, offset, _ in self.members)
        end = max(offset + size for _, offset, size in self.members)
        try:
            if end - start <= sum(size for *_, size in self.members) + _HEADER_ALLOWANCE * len(self.members):
                span = fs.cat_file(path, start=start, end=end)
                return {name: span[offset - start : offset - start + size] for name, offset, size in self.members}
            parts = fs.cat_ranges(
                [path] * len(self.members),
                [offset for _, offset, _ in self.members],
                [offset + size for _, offset, size in self.members],
            )
        except FileNotFoundError:
            raise BadImage(f"its shard {self.shard} was removed from the store after listing") from None
        return {extension: part for (extension, _, _), part in zip(self.members, parts, strict=True)}

    def _json(self, data: bytes):
        """The sample's json as standard JSON (no NaN: it goes into the output's json as it is)."""
        where = f"{self.sample_key}.json in {self.shard}"
        try:
            return json.loads(data, parse_constant=_refuse_constant)
        except (UnicodeDecodeError, ValueError) as error:
            raise BadImage(f"{where} is not valid JSON ({error})") from None
        except RecursionError:
            raise BadImage(f"{where} is nested deeper than JSON can be read here") from None


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number in standard JSON")


def is_shard_source(source: str) -> bool:
    """True when `source` names tar shards (a .tar, a brace pattern or a glob of them)."""
    return str(source).rstrip("/").endswith(".tar")


def list_shard_samples(source: str) -> tuple[list[ShardSample], str]:
    """Every sample with an image in the shards `source` names, in shard order and tar
    order, and the folder (path or URL) the shards are listed from."""
    shard_paths, fs, root = _expand(source)
    samples, states = [], {}
    for shard_path in shard_paths:
        relative = shard_path[len(root) + 1 :] if root else shard_path
        samples.extend(_read_index(fs, shard_path, relative))
        states[relative] = listed_state(fs.info(shard_path))
    root_location = fs.unstrip_protocol(root) if is_url(source) else root
    items = [
        ShardSample(root_location, shard, sample_key, "", members, occurrence, states[shard])
        for shard, sample_key, members, occurrence in samples
    ]
    keys = disambiguate([sanitize_key(item.sample_key) for item in items], [item.relpath for item in items])
    return [replace(item, key=key) for item, key in zip(items, keys, strict=True)], root_location


def _expand(source: str) -> tuple[list[str], object, str]:
    """The shard paths of `source` (on their filesystem, sorted as listed), the
    filesystem, and the longest folder they share (the root of relative paths)."""
    patterns = list(braceexpand(source))
    fs, _ = filesystem(patterns[0])
    paths: list[str] = []
    try:
        for pattern in patterns:
            path = filesystem(pattern)[1]
            if glob.has_magic(path):
                paths.extend(sorted(found for found in fs.glob(path) if found.endswith(".tar")))
            elif fs.isfile(path):
                paths.append(path)
            else:
                raise PipelineError(f"input shard {pattern} does not exist")
    except (PermissionError, OSError) as error:
        raise PipelineError(f"cannot list the shards of {source} ({type(error).__name__}: {error})") from None
    if not paths:
        raise PipelineError(f"no .tar shards match {source}")
    root = posixpath.commonpath(paths) if len(paths) > 1 else posixpath.dirname(paths[0])
    if root in paths:
        root = posixpath.dirname(root)
    return paths, fs, root


def _read_index(fs, path: str, relative: str) -> list[tuple[str, str, tuple[tuple[str, int, int], ...], int]]:
    """(shard, sample key, members, occurrence) for each sample of the tar at `path` that has an
    image. As WebDataset reads a tar, a sample is a run of members with one key: a key that comes
    back later (or a member name repeated) starts another sample, its `occurrence` counted."""
    grouped: list[tuple[str, list[tuple[str, int, int]]]] = []
    try:
        with fs.open(path, "rb") as stream, tarfile.open(fileobj=stream, mode="r:") as tar:
            for member in tar:
                match = _KEY_AND_EXTENSION.match(member.name)
                if not member.isfile() or not match or posixpath.basename(member.name).startswith((".", "_")):
                    continue
                key, extension = match.group(1), match.group(2).lower()
                if extension not in KEPT_EXTENSIONS:
                    continue
                if not grouped or grouped[-1][0] != key or extension in {name for name, _, _ in grouped[-1][1]}:
                    grouped.append((key, []))
                grouped[-1][1].append((extension, member.offset_data, member.size))
    except (tarfile.TarError, EOFError) as error:
        raise PipelineError(f"input shard {relative} is not a readable tar ({error}); fix or remove it") from None
    except (PermissionError, OSError) as error:
        raise PipelineError(f"cannot read input shard {relative} ({type(error).__name__}: {error})") from None
    seen: Counter = Counter()
    samples = []
    for key, members in grouped:
        if any(extension in IMAGE_EXTENSIONS for extension, _, _ in members):
            samples.append((relative, key, tuple(members), seen[key]))
            seen[key] += 1
    return samples

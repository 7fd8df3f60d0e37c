"""`simlidar inspect`: check every shard of an output against its manifest, gather
statistics, and draw a contact sheet of samples a person can look at."""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from .. import schema
from ..errors import PipelineError
from .lock import is_alive, read_holder
from .manifest import MANIFEST, run_command
from .preview import PreviewSample, contact_sheet
from .store import LocalStore

PREVIEWS = "previews"
CONTACT_SHEET = "contact_sheet.png"
STATS_FILE = "stats.json"
DEPTH_BIN_EDGES_M = (0, 5, 10, 20, 30, 40, 60, 80, 120, 256)
SHARD_FIELDS = ("shard", "samples", "sha256", "bytes")
_SHARD_NAME = re.compile(r"^shard-[0-9]{6}\.tar$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass
class Inspection:
    """What `inspect_output` found: problems (one line each) and statistics."""

    out_dir: Path
    manifest: dict
    problems: list[str] = field(default_factory=list)
    samples: int = 0
    points_per_sample: list[int] = field(default_factory=list)
    sparse_density: list[float] = field(default_factory=list)
    dense_coverage: list[float] = field(default_factory=list)
    sparse_depth_histogram: np.ndarray = field(default_factory=lambda: np.zeros(len(DEPTH_BIN_EDGES_M) - 1, np.int64))
    per_sensor: Counter = field(default_factory=Counter)
    image_sizes: Counter = field(default_factory=Counter)
    preview_keys: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    shards: list[dict] = field(default_factory=list)
    member_sets: set[frozenset[str]] = field(default_factory=set)

    def stats(self) -> dict:
        def summary(values):
            return {"mean": float(np.mean(values)), "min": float(np.min(values)), "max": float(np.max(values))}

        return {
            "samples": self.samples,
            "shards": len(self.shards),
            "points_per_sample": summary(self.points_per_sample) if self.samples else None,
            "sparse_density": summary(self.sparse_density) if self.samples else None,
            "dense_coverage": summary(self.dense_coverage) if self.samples else None,
            "sparse_depth_histogram": {
                f"{low}-{high} m": int(count)
                for low, high, count in zip(
                    DEPTH_BIN_EDGES_M[:-1], DEPTH_BIN_EDGES_M[1:], self.sparse_depth_histogram, strict=True
                )
            },
            "per_sensor": dict(sorted(self.per_sensor.items())),
            "image_sizes": {f"{w}x{h}": count for (w, h), count in sorted(self.image_sizes.items())},
            "problems": len(self.problems),
        }


def read_manifest(out_dir: Path) -> dict:
    """The manifest as a dict; PipelineError when there is none or it is not a JSON object."""
    path = out_dir / MANIFEST
    if not path.is_file():
        raise PipelineError(f"{out_dir} has no {MANIFEST}: not a simlidar output (make one with `simlidar generate`)")
    try:
        manifest = json.loads(path.read_bytes())
    except (OSError, ValueError) as error:
        raise PipelineError(f"{path} is unreadable ({error}); re-run the command that made this folder") from None
    if not isinstance(manifest, dict):
        raise PipelineError(
            f"{path} is a JSON {type(manifest).__name__}, not a simlidar manifest (an object); "
            "re-run the command that made this folder"
        )
    return manifest


def listed_shards(out_dir: Path, manifest: dict, problems: list[str]) -> list[dict]:
    """The manifest's well-formed shard entries; what is wrong with the others, shards on
    disk it does not list, and gaps in its numbering go to `problems`."""
    entries = manifest.get("shards")
    if not isinstance(entries, list):
        problems.append(f"{MANIFEST} has no list of shards: re-run `{run_command(manifest)}` on this folder")
        return []
    good = []
    for position, entry in enumerate(entries):
        problem = _shard_entry_problem(entry)
        if problem:
            problems.append(f"{MANIFEST}: shard entry {position} {problem}")
        else:
            good.append(entry)
    names = {entry["shard"] for entry in good}
    problems += [
        f"{name}: on disk but not in {MANIFEST}"
        for name in sorted(path.name for path in out_dir.glob("shard-*.tar"))
        if name not in names
    ]
    failures = manifest.get("failed_shards")
    failed = {f"{f.get('shard')}.tar" for f in failures if isinstance(f, dict)} if isinstance(failures, list) else set()
    accounted = names | failed
    planned = manifest.get("shards_planned", 1 + max((int(name[6:12]) for name in names), default=-1))
    if not isinstance(planned, int):
        problems.append(f"{MANIFEST}: shards_planned is {planned!r}, not a count")
    elif planned > len(accounted):
        first_gap = next(name for name in map(_shard_name, range(planned)) if name not in accounted)
        problems.append(f"{MANIFEST} lists {len(accounted)} of {planned} shards (first missing: {first_gap})")
    return good


def _shard_name(index: int) -> str:
    return f"shard-{index:06d}.tar"


def _shard_entry_problem(entry) -> str | None:
    if not isinstance(entry, dict):
        return f"is a JSON {type(entry).__name__}, not an object"
    missing = [name for name in SHARD_FIELDS if name not in entry]
    if missing:
        return f"lacks {', '.join(missing)}"
    if not (isinstance(entry["shard"], str) and _SHARD_NAME.match(entry["shard"])):
        return f"names {entry['shard']!r}, not shard-NNNNNN.tar"
    if not (isinstance(entry["sha256"], str) and _SHA256.match(entry["sha256"])):
        return f"({entry['shard']}) has a malformed sha256"
    if not all(isinstance(entry[name], int) and entry[name] >= 0 for name in ("samples", "bytes")):
        return f"({entry['shard']}) has non-integer samples or bytes"
    return None


def inspect_output(out_dir: Path, previews: int = 12) -> Inspection:
    """Check every shard listed in the manifest (present, checksum, members, decodable,
    counts) and write `previews/` (a contact sheet of up to `previews` samples and stats.json)."""
    manifest = read_manifest(out_dir)
    report = Inspection(out_dir, manifest)
    if manifest.get("status") != "complete":
        report.problems.append(_unfinished(out_dir, manifest))
    missing = [name for name in ("config", "sensor", "totals") if not isinstance(manifest.get(name), dict)]
    if missing:
        report.problems.append(
            f"{MANIFEST} lacks {', '.join(missing)}: re-run `{run_command(manifest)}` on this folder"
        )
    report.shards = listed_shards(out_dir, manifest, report.problems)
    with_points = not missing and bool(manifest["config"].get("save_points"))
    total_samples = sum(shard["samples"] for shard in report.shards)
    preview_every = max(1, total_samples // max(previews, 1))
    panels = []
    for shard in report.shards:
        for key, members in _check_shard(out_dir, shard, with_points, report):
            if previews and len(panels) < previews and (report.samples - 1) % preview_every == 0:
                image = schema.image_bytes(members)
                panels.append(PreviewSample.decode(key, image, members[schema.SPARSE], members[schema.DENSE]))
                report.preview_keys.append(key)
    preview_dir = out_dir / PREVIEWS
    if preview_dir.is_file():
        report.problems.append(f"{PREVIEWS} is a file, not a folder: remove it so previews can be written")
        return report
    preview_dir.mkdir(parents=True, exist_ok=True)
    if panels:
        contact_sheet(panels).save(preview_dir / CONTACT_SHEET, optimize=True)
    (preview_dir / STATS_FILE).write_text(json.dumps(report.stats(), indent=2))
    return report


def _unfinished(out_dir: Path, manifest: dict) -> str:
    """What to say of a run whose manifest does not say complete."""
    command = run_command(manifest)
    status = manifest.get("status")
    if status != "running":
        why = f" ({manifest['stopped']})" if manifest.get("stopped") else ""
        return f"the run is {status or 'of unknown status'}{why}: re-run the `{command}` that made it to finish it"
    holder = read_holder(LocalStore(out_dir))
    if holder is not None and is_alive(holder):
        return f"a run is still writing it ({holder.describe()}): inspect it when that run has ended"
    return f"the run stopped before it finished (killed: no run holds it now): re-run the `{command}` that made it"


def _check_shard(out_dir: Path, shard: dict, with_points: bool, report: Inspection):
    """Yield (key, decoded members) of each good sample of one shard; record problems."""
    path = out_dir / shard["shard"]
    if not path.is_file():
        report.problems.append(f"{shard['shard']}: missing")
        return
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != shard["sha256"]:
        report.problems.append(f"{shard['shard']}: checksum differs from the manifest (changed or damaged)")
    samples = defaultdict(dict)
    try:
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for member in tar.getmembers():
                key, _, name = member.name.partition(".")
                samples[key][name] = tar.extractfile(member).read()
    except tarfile.TarError as error:
        report.problems.append(f"{shard['shard']}: not a readable tar ({error})")
        return
    if len(samples) != shard["samples"]:
        report.problems.append(f"{shard['shard']}: {len(samples)} samples, the manifest says {shard['samples']}")
    required = (schema.POINTS,) if with_points else ()
    for key, members in samples.items():
        report.keys.append(key)
        report.member_sets.add(frozenset(members))
        problem = _check_sample(key, members, required, report)
        if problem:
            report.problems.append(f"{shard['shard']}: {key}: {problem}")
            continue
        yield key, members


def _check_sample(key: str, members: dict, required: tuple[str, ...], report: Inspection) -> str | None:
    """Decode one sample in place and add it to the statistics; the problem, if any."""
    if not schema.is_valid_key(key):
        return "invalid key"
    missing = schema.missing_members(members) + [name for name in required if name not in members]
    if missing:
        return f"missing {', '.join(missing)}"
    try:
        meta = json.loads(members[schema.META])
        with Image.open(io.BytesIO(schema.image_bytes(members))) as image:
            image_size = image.size
        sparse = schema.decode_depth_png(members[schema.SPARSE])
        dense = schema.decode_depth_png(members[schema.DENSE])
    except (ValueError, OSError) as error:
        return f"undecodable ({error})"
    width, height = meta["image_size"]
    if image_size != (width, height) or sparse.shape != (height, width) or dense.shape != (height, width):
        return f"sizes differ: image {image_size}, sparse {sparse.shape}, dense {dense.shape}, json {[width, height]}"
    valid = np.count_nonzero(sparse)
    if valid != meta["counts"]["sparse_pixels"]:
        return f"{valid} sparse pixels, its json says {meta['counts']['sparse_pixels']}"
    if valid == 0:
        return "no sparse pixel: an empty sample (a re-run of the command that made it skips such inputs)"
    members[schema.SPARSE], members[schema.DENSE] = sparse, dense
    report.samples += 1
    report.points_per_sample.append(meta["counts"]["points"])
    report.sparse_density.append(valid / sparse.size)
    report.dense_coverage.append(np.count_nonzero(dense) / dense.size)
    report.sparse_depth_histogram += np.histogram(sparse[sparse > 0], bins=DEPTH_BIN_EDGES_M)[0]
    report.per_sensor[meta["sensor"]["name"]] += 1
    report.image_sizes[(width, height)] += 1
    return None


def format_report(report: Inspection) -> list[str]:
    """The statistics as lines for a terminal."""
    stats = report.stats()
    shards = f"{stats['shards']} shard{'s' if stats['shards'] != 1 else ''}"
    lines = [f"{report.out_dir}: {stats['samples']} samples in {shards}"]
    if report.samples:
        points, density = stats["points_per_sample"], stats["sparse_density"]
        lines += [
            f"points per sample: {points['mean']:.0f} (min {points['min']:.0f}, max {points['max']:.0f})",
            f"sparse valid pixels: {100 * density['mean']:.2f}% (min {100 * density['min']:.2f}%, "
            f"max {100 * density['max']:.2f}%)",
            f"dense coverage: {100 * stats['dense_coverage']['mean']:.1f}%",
            "per sensor: " + ", ".join(f"{name} {count}" for name, count in stats["per_sensor"].items()),
            "image sizes: " + ", ".join(f"{size} {count}" for size, count in stats["image_sizes"].items()),
            "sparse depth histogram:",
        ]
        peak = max(stats["sparse_depth_histogram"].values()) or 1
        for label, count in stats["sparse_depth_histogram"].items():
            lines.append(f"  {label:>9} {'#' * round(40 * count / peak):<40} {count}")
    return lines

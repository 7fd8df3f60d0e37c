"""`simlidar bench gpu`: what a GPU user gets, measured in one prepared run that needs no
editing and no download (gpu_plan.py sets its size):

1. teacher: the bare batched forward of Depth Anything V2 small and base (the real weights
   where the Hugging Face cache holds them, else the published architecture with random
   weights: a forward costs the same), fp32 and fp16, batch 1/8/32 at their 518 px input:
   images/s and peak GPU memory;
2. generate on copies of the bundled street photo with the teacher on a GPU actor per GPU and
   shard tasks on the other cores: photos/s in a timed run's steady window against the bare
   forward at the photos' own input and batch (the goal: >= 0.9), GPU utilisation, and where
   the shard tasks' time goes;
3. training on those shards, which the train package measures (simlidar.train.gpu_bench):
   the loop with AMP and channels-last per objective, the loader workers it needs, torchrun.

It prints one table and writes it as JSON. Without a CUDA GPU it says so and runs the CPU
half (every part, scaled down). A part that fails is a row saying why (its traceback in the
JSON) and the others still run.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import math
import os
import shutil
import subprocess
import tempfile
import threading
import time
import traceback
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Protocol

import click
import numpy as np
import ray
import torch
from PIL import Image
from simlidar.teachers import TeacherUnavailable, load_teacher
from simlidar.teachers.hf import HFModel, fetch_weights
from simlidar.teachers.model_io import ModelBatch, level_table
from simlidar.teachers.registry import HF_PREFIX, MODELS

from ..config import GenerateConfig
from ..distributor import teacher_pool
from ..errors import PipelineError
from ..runner import generate
from ..sources.bundled import STREET, existing
from ..stages.teacher import TeacherSpec, build_teacher
from .gpu_plan import PLANS, BenchPlan, GeneratePlan, TeacherPlan, TrainPlan
from .scaling import copy_scene
from .teacher import DA_V2_INPUT_PX, bare_images_per_second, bench_teacher, random_depth_anything_v2

GENERATE_TEACHER = "depth-anything-v2-small"
RUNS = ("warm-up", "timed")
RAY_QUIET = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}


@dataclass
class Row:
    """One line of the table. error: why the row failed (a traceback for a part that raised)."""

    part: str
    what: str
    rate: float | None = None
    unit: str = ""
    peak_gpu_gb: float | None = None
    gpu_util: float | None = None
    note: str = ""
    figures: dict = field(default_factory=dict)
    error: str = ""


class Training(Protocol):
    """The training part (simlidar.train.gpu_bench: pipeline/ never imports train itself)."""

    OBJECTIVES: tuple[str, ...]

    def single_device(self, shards: str, scratch: Path, objective: str, **plan) -> dict:
        """One objective's figures; plan: a TrainPlan's fields."""

    def torchrun(self, shards: str, scratch: Path, batch_size: int, crop, timed_steps: int) -> list[dict]:
        """Each objective's figures under torchrun."""


def choose_plan(size: str) -> BenchPlan:
    """The plan of --size (auto: gpu where torch sees a CUDA GPU, else cpu)."""
    has_gpu = torch.cuda.is_available()
    if size == "gpu" and not has_gpu:
        raise PipelineError(
            f"--size gpu needs a CUDA GPU and this torch ({torch.__version__}) sees none; "
            "--size auto runs the CPU half here"
        )
    if size == "auto":
        size = "gpu" if has_gpu else "cpu"
    return PLANS[size]


def check_json_path(path: Path) -> None:
    """Refuse a --json whose folder cannot be made or written to, before any work."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise PipelineError(f"--json {path}: cannot make its folder ({error.strerror})") from None
    if not os.access(path.parent, os.W_OK):
        raise PipelineError(f"--json {path}: its folder is not writable")


def device_info() -> dict:
    cuda = torch.cuda.is_available()
    return {
        "gpus": [torch.cuda.get_device_name(index) for index in range(torch.cuda.device_count())] if cuda else [],
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "ray": ray.__version__,
        "simlidar": version("simlidar"),
    }


def run_gpu_bench(size: str, json_path: Path, training: Training) -> bool:
    """Run every part of `size`'s plan, print the table, write the JSON; False when a row failed."""
    plan = choose_plan(size)
    check_json_path(json_path)
    existing(STREET, "the bundled street scene (examples/scenes of a checkout)", "run it from a clone of simlidar")
    device = device_info()
    if not device["gpus"]:
        click.echo(
            f"no CUDA GPU here (torch {device['torch']}): running the CPU half of `simlidar bench gpu`, every part "
            f"scaled to a few minutes on {device['cpus']} cores; on a machine with a GPU the same command runs the "
            "full size"
        )
    slots, actors = task_slots(plan.generate)
    click.echo(describe(plan, slots, actors))
    started = time.perf_counter()
    rows, seconds = [], {}
    with tempfile.TemporaryDirectory(prefix="simlidar-bench-gpu-") as scratch:
        models = ModelFolders(Path(scratch) / "models")
        work = Path(scratch)
        parts: dict[str, Callable[[], list[Row]]] = {
            "teacher": lambda: teacher_rows(plan.teacher, models),
            "generate": lambda: generate_rows(plan.generate, plan.teacher.repeats, models, work / "generate"),
            "train": lambda: training_rows(plan.train, training, work / "generate" / "timed", work / "train"),
        }
        for number, (part, measure) in enumerate(parts.items(), start=1):
            click.echo(f"part {number}/{len(parts)}: {part} ...", err=True)
            part_started = time.perf_counter()
            rows += run_part(part, measure)
            seconds[part] = time.perf_counter() - part_started
    seconds["total"] = time.perf_counter() - started
    print_table(rows, seconds)
    report = {"plan": dataclasses.asdict(plan), "device": device, "seconds": seconds}
    write_report(json_path, {**report, "rows": [dataclasses.asdict(row) for row in rows]})
    click.echo(f"written to {json_path}")
    failed = [row for row in rows if row.error]
    if failed:
        click.echo(f"{len(failed)} row(s) failed: {failed[0].part}: {failed[0].note}", err=True)
    return not failed


def run_part(part: str, measure: Callable[[], list[Row]]) -> list[Row]:
    """The part's rows, or one row saying why it failed (the traceback goes in the JSON)."""
    try:
        return measure()
    except Exception as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return [Row(part, "failed", note=f"{type(error).__name__}: {reason}", error=traceback.format_exc())]


def task_slots(plan: GeneratePlan) -> tuple[int, int]:
    """(shard tasks that run at once, teacher actors) of generate's runs: an actor per GPU
    (one on the CPU without one), each holding a core."""
    actors = max(1, torch.cuda.device_count())
    cpus = plan.cpus or os.cpu_count() or 1
    return max(1, cpus - actors), actors


def describe(plan: BenchPlan, slots: int, actors: int) -> str:
    teacher, gen, train = plan.teacher, plan.generate, plan.train
    photos = "/".join(str(count) for count in photo_counts(gen, slots))
    return (
        f"size {plan.name}: teacher: {', '.join(teacher.models)} x {', '.join(teacher.precisions)} x batch "
        f"{', '.join(map(str, teacher.batch_sizes))} at {teacher.input_px}x{teacher.input_px}, median of "
        f"{teacher.repeats}; generate: {photos} photos (warm-up, timed run; shards of {gen.shard_size}, "
        f"{slots} task slot(s) + {actors} teacher actor(s)), the street photo / {gen.photo_scale}, teacher input "
        f"{gen.input_px} px; train: {train.steps} steps per objective (batch {train.batch_size}, crop "
        f"{train.crop[0]}x{train.crop[1]}), {train.timed_steps} compute-only steps alone and under torchrun"
    )


def photo_counts(plan: GeneratePlan, slots: int) -> list[int]:
    return [waves * slots * plan.shard_size for waves in plan.waves]


class ModelFolders:
    """The folder of each teacher model the bench runs and what its weights are: the real
    ones where the Hugging Face cache holds them (at the models' own input size), else the
    published architecture with random weights, made once per (model, input size)."""

    def __init__(self, root: Path):
        self.root = root
        self._folders: dict[tuple[str, int], tuple[Path, str]] = {}

    def folder(self, name: str, input_px: int) -> tuple[Path, str]:
        key = (name, input_px)
        if key not in self._folders:
            cached = self._cached(name) if input_px == DA_V2_INPUT_PX else None
            folder = self.root / f"{name}-{input_px}"
            self._folders[key] = cached or (random_depth_anything_v2(name, folder, input_px), "random")
        return self._folders[key]

    @staticmethod
    def _cached(name: str) -> tuple[Path, str] | None:
        entry = MODELS[name]
        try:
            folder, revision = fetch_weights(name, entry.repo_id, entry.revision, download=False)
        except TeacherUnavailable:
            return None
        return folder, f"cached {revision[:12]}"


def free_gpu_memory() -> None:
    """Hand the memory of models let go of back to the GPU (the next part, or process, needs it)."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def peak_gpu_gb(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else None


def teacher_rows(plan: TeacherPlan, models: ModelFolders) -> list[Row]:
    """Part 1: a row per model x precision x batch size."""
    rows = []
    for name in plan.models:
        folder, weights = models.folder(name, plan.input_px)
        for precision in plan.precisions:
            teacher = load_teacher(f"{HF_PREFIX}{folder}", output="disparity", dtype=precision)
            parameters = sum(parameter.numel() for parameter in teacher.runner.model.parameters())
            note = f"{parameters / 1e6:.2f} M parameters (published {MODELS[name].params_m} M), {weights} weights"
            for batch_size in plan.batch_sizes:
                what = f"{name} {precision}, batch {batch_size}, {plan.input_px}x{plan.input_px}"
                figures = {
                    "model": name,
                    "precision": precision,
                    "batch_size": batch_size,
                    "input_px": plan.input_px,
                    "parameters": parameters,
                    "published_parameters_m": MODELS[name].params_m,
                    "weights": weights,
                }
                row = Row("teacher", what, unit="img/s", note=note, figures=figures)
                rows.append(time_forward(teacher.runner, batch_size, plan, row))
                click.echo(f"  {what}: {row.rate or 0:.1f} img/s", err=True)
            del teacher
            free_gpu_memory()
    return rows


def time_forward(model: HFModel, batch_size: int, plan: TeacherPlan, row: Row) -> Row:
    """`row` with the bare forward's images/s and peak GPU memory (or why it has none)."""
    device = model.device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    try:
        pixel_values = torch.rand(batch_size, 3, plan.input_px, plan.input_px, device=device)
        row.rate = bare_images_per_second(model, pixel_values, plan.repeats)
    except torch.OutOfMemoryError:  # a smaller GPU: the row says so and the next one runs
        row.note = f"out of GPU memory at batch {batch_size}; {row.note}"
    row.peak_gpu_gb = peak_gpu_gb(device)
    return row


def generate_rows(plan: GeneratePlan, repeats: int, models: ModelFolders, work: Path) -> list[Row]:
    """Part 2: a warm-up run and a timed run of generate on Ray (started here once, so that no
    run pays for it), the teacher alone at the photos' input beside them, and where a shard
    task's time went: all taken in the timed run's steady window; then a teacher actor alone."""
    slots, actors = task_slots(plan)
    counts = photo_counts(plan, slots)
    folder, weights = models.folder(GENERATE_TEACHER, plan.input_px)
    copy_scene(STREET, work / "photos", counts[-1], plan.photo_scale, distinct=True)
    config = GenerateConfig(
        images=str(work / "photos"),
        teacher=f"{HF_PREFIX}{folder}",
        teacher_output="disparity",
        shard_size=plan.shard_size,
    )
    photo = next((work / "photos").glob("*.jpg"))
    with Image.open(photo) as image:
        width, height = image.size
    alone = teacher_alone(config, (height, width), repeats)
    free_gpu_memory()
    with local_ray(plan.cpus) as address:
        seconds, utilisation = timed_runs(config, counts, work, actors, address)
        fed = actor_alone(config.resolve().teacher, photo, plan.actor_calls, alone["bare_ips"])
    spans = shard_spans(work / "timed")
    window = steady_window(spans)
    if window is None:  # a single wave: no shard starts after one has ended
        rate, how = counts[-1] / seconds[-1], "the whole run (a single wave: no steady window)"
        shares = spans
    else:
        rate, how = steady_rate(spans, window), f"its steady {window[1] - window[0]:.1f} s"
        shares = [span for span in spans if span.start >= window[0]] or spans
    ratio = rate / (alone["bare_ips"] * actors)
    note = f"{ratio:.2f} of the teacher alone x {actors} (goal >= 0.9), over {how}"
    what = f"{counts[-1]} photos {width}x{height}, {slots} shard task(s) + {actors} teacher actor(s)"
    figures = {"photos": counts, "seconds": seconds, "ratio": ratio, "window_s": window and window[1] - window[0]}
    return [
        Row("generate", f"teacher alone, {alone['what']}", alone["bare_ips"], "img/s", note=alone["note"]),
        Row("generate", what, rate, "photos/s", gpu_util=utilisation.mean(window), note=note, figures=figures),
        time_shares(shares),
        fed,
    ]


def teacher_alone(config: GenerateConfig, photo_hw: tuple[int, int], repeats: int) -> dict:
    """generate's own teacher (its device, precision and batch) in this process on photos of
    photo_hw: the bare forward's images/s at the photos' model input, and the teacher stage's."""
    teacher = build_teacher(config.resolve().teacher)
    [measured] = bench_teacher(teacher, [teacher.batch_size], photo_hw, repeats)
    precision = str(teacher.runner.amp_dtype).removeprefix("torch.") if teacher.runner.amp_dtype else "fp32"
    return {
        "what": f"{precision}, batch {measured['batch_size']}, {measured['input']} (the photos' model input)",
        "bare_ips": measured["bare_ips"],
        "note": "bare forward; the teacher stage (prepare, forward, resize back, to metric) "
        f"{measured['stage_ips']:.1f} img/s in one process",
    }


@contextmanager
def local_ray(cpus: int | None) -> Iterator[str]:
    """A Ray on this machine with `cpus` cores (None: all) for the block: its address."""
    ray.init(address="local", num_cpus=cpus or os.cpu_count(), **RAY_QUIET)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def timed_runs(
    config: GenerateConfig, counts: list[int], work: Path, actors: int, address: str
) -> tuple[list[float], GpuUtilisation]:
    """Each run's seconds (0 for a run of 0 photos, which is left out) on the Ray at
    `address` and the GPU utilisation sampled over the timed run (the last)."""
    seconds = []
    for name, count in zip(RUNS, counts, strict=True):
        utilisation = GpuUtilisation()
        if count:
            with utilisation:
                run_config = dataclasses.replace(config, limit=count)
                generate(run_config, work / name, progress=False, address=address, teacher_actors=actors)
            click.echo(f"  {name} run: {count} photos in {utilisation.seconds:.1f} s", err=True)
        seconds.append(utilisation.seconds)
    return seconds, utilisation


def actor_alone(spec: TeacherSpec, photo: Path, calls: int, bare_ips: float) -> Row:
    """A teacher actor as generate starts it, sent `calls` batches of `photo` ready as a shard
    task prepares them (generate's batch size) all at once, after one that loads its model:
    its images/s against the bare forward's, and its time per photo besides the forward."""
    teacher = build_teacher(spec)  # this process only prepares: its model is never loaded
    with Image.open(photo) as image:
        prepared = teacher.prepare(np.asarray(image.convert("RGB")))
    batch = ray.put(ModelBatch(np.stack([prepared] * teacher.batch_size), level_table(teacher.processor)))
    with teacher_pool(spec, 1) as [actor]:
        ray.get(actor.run.remote(batch))
        before = ray.get(actor.timings.remote())
        started = time.perf_counter()
        ray.get([actor.run.remote(batch) for _ in range(calls)])
        seconds = time.perf_counter() - started
        spent = {key: value - before[key] for key, value in ray.get(actor.timings.remote()).items()}
    photos = spent["photos"]
    figures = {
        "photos": photos,
        "seconds": seconds,
        "forward_ms": 1000 * spent["forward_s"] / photos,
        "input_ms": 1000 * spent["input_s"] / photos,
        "ratio": photos / seconds / bare_ips,
    }
    note = (
        f"{figures['ratio']:.2f} of the bare forward; per photo {figures['forward_ms']:.1f} ms forward (outputs back "
        f"included), {figures['input_ms']:.1f} ms input to the device and normalised"
    )
    what = f"a teacher actor alone, {calls} ready batches of {teacher.batch_size} {prepared.dtype} at once"
    return Row("generate", what, photos / seconds, "img/s", note=note, figures=figures)


@dataclass(frozen=True)
class ShardSpan:
    """When a shard's task ran (wall-clock seconds: its stats file is written as it ends, after
    `seconds["total"]`), its photos and its stats' seconds per stage."""

    start: float
    end: float
    photos: int
    seconds: dict


def shard_spans(out_dir: Path) -> list[ShardSpan]:
    spans = []
    for stats_file in out_dir.glob("*.stats.json"):
        stats = json.loads(stats_file.read_text())
        end = stats_file.stat().st_mtime
        spans.append(ShardSpan(end - stats["seconds"]["total"], end, stats["inputs"], stats["seconds"]))
    return spans


def steady_window(spans: list[ShardSpan]) -> tuple[float, float] | None:
    """From the first shard's end (the actors have loaded and served; every task slot is
    busy) to the last shard's start (after which slots fall idle); None when that is empty."""
    start, end = min(span.end for span in spans), max(span.start for span in spans)
    return (start, end) if end > start else None


def steady_rate(spans: list[ShardSpan], window: tuple[float, float]) -> float:
    """Photos/s made within `window`, each shard's photos spread evenly over its span."""
    start, end = window
    made = sum(
        span.photos * max(0.0, min(span.end, end) - max(span.start, start)) / (span.end - span.start)
        for span in spans
        if span.end > span.start
    )
    return made / (end - start)


def time_shares(spans: list[ShardSpan]) -> Row:
    """Where a shard task's time goes: each stage's milliseconds per photo and share, over the
    shards that started in the steady window (so not the first tasks' wait for an actor to
    load its model). A task's teacher stage is its preparing the model inputs, its wait on the
    actor (queue and forward) and the resize back; its teacher cache stage is hashing the photo
    and writing the cache entry."""
    seconds: dict[str, float] = defaultdict(float)
    for span in spans:
        for stage, spent in span.seconds.items():
            seconds[stage] += spent
    total = seconds.pop("total", 0.0) or math.nan
    seconds["other"] = max(0.0, total - sum(seconds.values()))
    ranked = sorted(seconds.items(), key=lambda item: -item[1])
    photos = sum(span.photos for span in spans)
    per_photo_ms = {stage: 1000 * spent / photos for stage, spent in ranked}
    note = ", ".join(f"{stage} {spent / total:.0%} ({per_photo_ms[stage]:.0f} ms)" for stage, spent in ranked[:5])
    what = f"a shard task's time per photo ({len(spans)} shards)"
    return Row("generate", what, note=note, figures={"shards": len(spans), "ms_per_photo": per_photo_ms})


def training_rows(plan: TrainPlan, training: Training, shards: Path, work: Path) -> list[Row]:
    """Part 3, on part 2's timed run: the loop per objective on this device, then torchrun."""
    if not (shards / "manifest.json").is_file():
        raise PipelineError("part 2 made no shards to train on (see its row)")
    rows = []
    for objective in training.OBJECTIVES:
        with GpuUtilisation(devices=1) as utilisation:
            figures = training.single_device(str(shards), work, objective, **dataclasses.asdict(plan))
        rows.append(loop_row(figures, utilisation.mean(utilisation.middle_half())))
        click.echo(f"  {objective}: {figures['samples_per_s']:.1f} samples/s", err=True)
    free_gpu_memory()  # torchrun's rank 0 shares this process's GPU
    for figures in training.torchrun(str(shards), work / "torchrun", plan.batch_size, plan.crop, plan.timed_steps):
        rows.append(torchrun_row(figures))
    return rows


def loop_row(figures: dict, utilisation: float | None) -> Row:
    note = (
        f"AMP {figures['amp']}, channels-last {'on' if figures['channels_last'] else 'off'}; compute alone "
        f"{figures['compute_samples_per_s']:.1f}/s, one loader worker {figures['loader_samples_per_s_per_worker']:.1f}"
        f"/s: {figures['workers_needed']} worker(s) keep up ({figures['workers_used']} used)"
    )
    return Row(
        "train",
        figures["what"],
        figures["samples_per_s"],
        "samples/s",
        figures["peak_gpu_gb"],
        utilisation,
        note,
        figures,
    )


def torchrun_row(figures: dict) -> Row:
    """A torchrun row; an error when the ranks' weights differ (DDP keeps them identical)."""
    spread, ranks = figures["weight_spread"], figures["ranks"]
    what = f"{figures['objective']}, {ranks} rank(s) ({figures['backend']}), {figures['steps']} compute-only steps"
    if ranks == 1:
        agreement, error = "one rank: no other to agree with", ""
    elif spread == 0:
        agreement, error = "the ranks' weights agree bit for bit", ""
    else:
        agreement = error = f"the ranks' weights differ by up to {spread:.3g}"
    if figures.get("retried_after"):
        agreement += f"; a second attempt (the first: {figures['retried_after'].splitlines()[0]})"
    row = Row("torchrun", what, figures["samples_per_s"], "samples/s", figures["peak_gpu_gb"], note=agreement)
    row.figures, row.error = figures, error
    return row


class GpuUtilisation:
    """The utilisation of the GPUs this torch sees (nvidia-smi's utilization.gpu: the share
    of time a kernel ran), sampled every `interval_ms` by one `nvidia-smi --loop-ms` process
    while the block runs; devices: the first N of them only (None: all). nvidia-smi comes
    with the NVIDIA driver; without a GPU or without it, mean() is None. Times are wall-clock
    (time.time(), as files' modification times are); seconds: how long the block took."""

    def __init__(self, interval_ms: int = 200, devices: int | None = None):
        self.interval_ms, self.devices = interval_ms, devices
        self.samples: list[tuple[float, float]] = []
        self.started = self.ended = self.seconds = 0.0
        self._process: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None

    def __enter__(self) -> GpuUtilisation:
        command = shutil.which("nvidia-smi")
        if command and torch.cuda.is_available():
            query = ["--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", f"--loop-ms={self.interval_ms}"]
            self._process = subprocess.Popen(
                [command, *query, *self._id_option()], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
            )
            self._reader = threading.Thread(target=self._read, daemon=True)
            self._reader.start()
        self.started = time.time()
        return self

    def _id_option(self) -> list[str]:
        """nvidia-smi's --id of the GPUs measured: CUDA_VISIBLE_DEVICES's (indices or UUIDs,
        both of which it takes), the first `devices` of them."""
        visible = [part.strip() for part in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if part.strip()]
        if self.devices is not None:
            visible = (visible or [str(index) for index in range(self.devices)])[: self.devices]
        return [f"--id={','.join(visible)}"] if visible else []

    def _read(self) -> None:
        for line in self._process.stdout:
            try:
                self.samples.append((time.time(), float(line)))
            except ValueError:
                continue  # "[N/A]" or a message: not a sample

    def __exit__(self, *exc_info) -> None:
        self.ended = time.time()
        self.seconds = self.ended - self.started
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
            self._reader.join(timeout=10)

    def middle_half(self) -> tuple[float, float]:
        """The block's middle half: without its start-up and its last moments."""
        quarter = (self.ended - self.started) / 4
        return self.started + quarter, self.ended - quarter

    def mean(self, window: tuple[float, float] | None = None) -> float | None:
        """Mean percentage over the GPUs and the block (or `window` of it: wall-clock start
        and end), or None without samples there."""
        start, end = window or (self.started, self.ended)
        values = [value for at, value in self.samples if start <= at <= end]
        return sum(values) / len(values) if values else None


def _finite(value):
    """JSON without NaN or infinity (which json.dumps would write and no parser reads)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def write_report(path: Path, report: dict) -> None:
    """The report as JSON at `path`, whole or not at all (written aside, then renamed)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(json.dumps(_finite(report), indent=2, allow_nan=False) + "\n")
        temporary.replace(path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise PipelineError(f"cannot write --json {path}: {error.strerror or error}") from None


def print_table(rows: list[Row], seconds: dict[str, float]) -> None:
    click.echo(f"{'part':<10}{'what':<66}{'rate':>18}{'GPU mem':>10}{'util':>6}  note")
    for row in rows:
        rate = f"{row.rate:.1f} {row.unit}" if row.rate is not None and math.isfinite(row.rate) else "-"
        memory = f"{row.peak_gpu_gb:.2f} GB" if row.peak_gpu_gb is not None else "-"
        utilisation = f"{row.gpu_util:.0f}%" if row.gpu_util is not None else "-"
        click.echo(f"{row.part:<10}{row.what:<66}{rate:>18}{memory:>10}{utilisation:>6}  {row.note}")
    click.echo("seconds: " + ", ".join(f"{part} {spent:.0f}" for part, spent in seconds.items()))

"""A training run's state, built once before the first step.

`open_run` checks everything that can be checked before training, on every rank: the
shards, the run folder (rank 0 takes its lock, as `generate` does: the holder is named,
a stale lock of a dead process is taken over), the checkpoint to resume and the run's
identity (identity.py), the data against the options, the model against --init, the
validation shards; bad samples met on the way go to errors.jsonl. `build_run` then makes
the state the loop steps: model, optimizer, EMA, AMP scaler, batches, logs.

A run lives in one folder: config.json, log.csv, val.csv, errors.jsonl, tensorboard/,
last.pt (and best.pt, by validation RMSE). Running the same command again resumes from
last.pt, exactly where it stopped; --steps may be raised to train longer.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from simlidar.pipeline.output.lock import OutputLock
from tqdm import tqdm

from . import data, distributed
from .checkpoint import EMA, load_checkpoint, rng_state, set_rng_state
from .config import (
    TrainConfig,
    bad_samples_allowed,
    check_batch_norm,
    check_data,
    check_init,
    check_stop_at,
    check_val,
    check_view_overlap,
)
from .errors import TrainError
from .factory import load_model, new_model
from .identity import check_same_run, run_identity
from .model import parameter_count
from .objectives import LOSS_PARTS
from .runlog import ErrorLog, RunLog
from .schedule import get_lr
from .shards import ShardIndex, index_shards, list_shards
from .signals import StopSignals
from .validate import scan_samples

LAST, BEST, CONFIG, ERRORS, LOCK = "last.pt", "best.pt", "config.json", "errors.jsonl", "train.lock"
# What a run writes into its folder, and nothing else (--overwrite removes these).
RUN_FILES = (LAST, BEST, CONFIG, ERRORS, "log.csv", "val.csv", LAST + ".tmp", BEST + ".tmp")
RUN_FOLDERS = ("tensorboard",)


def say(ranks: distributed.Ranks, message: str) -> None:
    """One line on stderr, from rank 0 only, without breaking the progress bar."""
    if ranks.is_main:
        tqdm.write(message, file=sys.stderr)


@dataclass
class Start:
    """What open_run found: the lock and errors.jsonl (rank 0's), the shards' index, the
    validation shards, the run's identity, its model (new, --init's or last.pt's), the
    checkpoint it resumes (None for a new run), the step it is at and the step it trains
    to, and the bad training samples known so far ((shard, key) -> the step whose batch met
    them)."""

    lock: OutputLock | None
    errors: ErrorLog | None
    index: ShardIndex
    val_urls: list[str]
    identity: dict
    model: torch.nn.Module | None = None
    resume: dict | None = None
    step: int = 0
    end: int = 0
    bad: dict[tuple[str, str], int] = field(default_factory=dict)

    def close(self) -> None:
        _release(self.lock, self.errors)


def open_run(config: TrainConfig, stop_at: int | None, ranks: distributed.Ranks, overwrite: bool) -> Start:
    """Everything checked before the first step (see the module doc); the caller closes
    the Start it gets, and nothing stays held when this raises."""
    urls = list_shards(config.shards)
    val_urls = list_shards(config.val_shards, "--val-shards") if config.val_shards else []
    out = Path(config.out)
    lock = take_lock(out) if ranks.is_main else None
    errors = None
    try:
        resume = _checkpoint_to_resume(out, ranks, overwrite)
        identity = run_identity(config, urls, val_urls, ranks.world_size)
        step = resume["step"] if resume else 0
        if resume is not None:
            identity = check_same_run(out, resume.get("identity", {}), identity)
            _check_steps(config, out, step)
        check_stop_at(stop_at, step, config.steps)
        errors = ErrorLog(out / ERRORS, step if resume else None) if ranks.is_main else None
        start = Start(lock, errors, _read_index(config, urls, errors, step, ranks), val_urls, identity)
        if config.view_relational:
            check_view_overlap(config, data.first_scene_offsets(start.index))
        if val_urls and ranks.is_main:
            _check_val_shards(config, val_urls, errors, step)
        start.model = _resolve_model(config, out, resume)
        check_batch_norm(config, start.model.deepest_stride, min(start.index.views, default=1))
        start.resume, start.step = resume, step
        start.end = min(config.steps, stop_at) if stop_at is not None else config.steps
        start.bad = {(record["shard"], record["key"]): step for record in start.index.bad}
        start.bad |= {(shard, key): met for shard, key, met in (resume or {}).get("bad_samples", [])}
        return start
    except BaseException:
        _release(lock, errors)
        raise


def _release(lock: OutputLock | None, errors: ErrorLog | None) -> None:
    if errors is not None:
        errors.close()
    if lock is not None:
        lock.release()


def take_lock(out: Path) -> OutputLock:
    """OUT/train.lock for the run's lifetime: generate's lock (pipeline/output/lock.py),
    reused rather than copied, so a folder has one writer with the same guarantees."""
    lock = OutputLock(out, LOCK)
    lock.acquire()
    return lock


def _checkpoint_to_resume(out: Path, ranks: distributed.Ranks, overwrite: bool) -> dict | None:
    """last.pt's content, or None for a new run (the folder emptied of a run's files with
    overwrite); a folder of other files is refused, so that nothing of its is lost."""
    if overwrite:
        if ranks.is_main:
            for name in RUN_FILES:
                (out / name).unlink(missing_ok=True)
            for name in RUN_FOLDERS:
                shutil.rmtree(out / name, ignore_errors=True)
        return None
    if (out / LAST).is_file():
        advice = "the run cannot resume from it: pass --overwrite to start it over, or use another --out"
        return load_checkpoint(out / LAST, advice)
    # A run killed before its first checkpoint left config.json; one refused left errors.jsonl.
    others = set(os.listdir(out)) - {ERRORS, LOCK, LOCK + ".takeover"} if out.is_dir() else set()
    if ranks.is_main and others and not _holds_a_run_config(out / CONFIG):
        raise TrainError(f"{out} is not empty and holds no training run: use a new --out, or pass --overwrite")
    return None


def _holds_a_run_config(path: Path) -> bool:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and {"shards", "schedule"} <= set(record)


def _check_steps(config: TrainConfig, out: Path, step: int) -> None:
    if config.steps < step:
        raise TrainError(
            f"{out} is at step {step}: --steps {config.steps} is behind it; pass --steps of at least that, "
            "or another --out"
        )


def _read_index(config: TrainConfig, urls: list[str], errors, step: int, ranks) -> ShardIndex:
    """The shards' index; the samples it left out go to errors.jsonl before the checks."""
    index = index_shards(urls, scenes=config.view_relational)
    for record in index.bad if errors is not None else ():
        errors.write({"split": "train", **record, "step": step})
    if index.incomplete:
        say(ranks, f"{index.incomplete} scene(s) miss a view (not generated) and are left out")
    check_data(config, index)
    return index


def _check_val_shards(config: TrainConfig, val_urls: list[str], errors: ErrorLog, step: int) -> None:
    """Rank 0 decodes every validation sample now, not at the first validation after
    hours of training: its bad samples go to errors.jsonl (validation skips them)."""
    index_shards(val_urls)
    bad, samples, with_ground_truth = scan_samples(val_urls)
    for record in bad:
        errors.write({"split": "val", **record, "step": step})
    check_val(config, len(bad), samples, with_ground_truth)


def _resolve_model(config: TrainConfig, out: Path, resume: dict | None) -> torch.nn.Module:
    """The model the run starts from: last.pt's (raw weights), --init's (EMA weights when it
    has them) or a new one; seeded first, so that a new model is the seed's."""
    torch.manual_seed(config.seed)
    if resume is not None:
        return load_model(resume, out / LAST, config.width, ema=False)
    if config.init is not None:
        checkpoint = load_checkpoint(config.init)
        check_init(config, checkpoint["model_config"])
        return load_model(checkpoint, config.init, config.width)
    return new_model(config)


@dataclass
class Clock:
    """Wall time of the run (counted on from a resumed run's) and of the current log
    window (samples per second)."""

    elapsed_before: float = 0.0
    started: float = field(default_factory=time.perf_counter)
    window_start: float = 0.0
    window_samples: int = 0

    def __post_init__(self):
        self.started -= self.elapsed_before
        self.window_start = time.perf_counter()

    def elapsed(self, now: float | None = None) -> float:
        return (now or time.perf_counter()) - self.started


@dataclass
class Run:
    """Everything a training run holds between steps. `model` is the network itself,
    `trained` the module that trains (DDP around the model under torchrun); `log`, `errors`
    and the files are rank 0's alone. `buffers_before`: the model's buffers before the
    current step's forward pass (a step that fails puts them back). `bad`: the bad training
    samples met so far ((shard, key)); `allowed`: how many may be (--max-bad-samples)."""

    config: TrainConfig
    start: Start
    device: torch.device
    ranks: distributed.Ranks
    model: torch.nn.Module
    trained: torch.nn.Module
    optimizer: torch.optim.Optimizer
    ema: EMA | None
    scaler: torch.amp.GradScaler
    amp_dtype: torch.dtype
    schedule: list[dict]
    best_rmse: float
    log: RunLog | None
    bar: tqdm
    batches: Iterator[dict]
    clock: Clock
    signals: StopSignals
    allowed: int
    step: int = 0
    buffers_before: dict[str, torch.Tensor] = field(default_factory=dict)
    last_row: dict = field(default_factory=dict)

    @property
    def out(self) -> Path:
        return Path(self.config.out)

    @property
    def end(self) -> int:
        return self.start.end

    @property
    def on_cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.on_cuda else torch.contiguous_format

    def say(self, message: str) -> None:
        say(self.ranks, message)

    def checkpoint_state(self) -> dict:
        """What last.pt and best.pt hold: the step and everything needed to resume it."""
        return dict(
            step=self.step,
            model_config=self.model.config.to_dict(),
            train_config=asdict(self.config),
            model=self.model.state_dict(),
            ema=self.ema.model.state_dict() if self.ema else None,
            optimizer=self.optimizer.state_dict(),
            scaler=self.scaler.state_dict(),
            rng=rng_state(),
            schedule=self.schedule,
            best_val_rmse_mm=self.best_rmse if self.best_rmse < float("inf") else None,
            identity=self.start.identity,
            # What the batches up to this step met: a stop saves step k after batch k + 1 came in.
            bad_samples=sorted([*sample, met] for sample, met in self.start.bad.items() if met <= self.step),
            elapsed_s=self.clock.elapsed(),
        )


def schedule_record(config: TrainConfig, resume: dict | None, step: int, ranks: distributed.Ranks) -> list[dict]:
    """The run's schedule history: the step counts it was planned with, and from when."""
    history = list(resume.get("schedule", [])) if resume else []
    if not history or history[-1]["steps"] != config.steps:
        if history:
            before = get_lr(step, history[-1]["steps"], config.lr, config.warmup, config.min_lr, config.decay)
            now = get_lr(step, config.steps, config.lr, config.warmup, config.min_lr, config.decay)
            say(
                ranks,
                f"--steps {history[-1]['steps']} -> {config.steps} at step {step}: the schedule is recomputed "
                f"for {config.steps} steps (learning rate {before:.3g} -> {now:.3g})",
            )
        history.append({"from_step": step, "steps": config.steps})
    return history


def build_run(
    config: TrainConfig, start: Start, device: torch.device, ranks: distributed.Ranks, progress: bool, signals
) -> Run:
    """The run's state at its first step. The order matters for exact resumes: the saved
    RNG state is restored before the loader draws its seed."""
    on_cuda = device.type == "cuda"
    memory_format = torch.channels_last if on_cuda else torch.contiguous_format
    model = start.model.to(device, memory_format=memory_format).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    ema = EMA(model, config.ema) if config.ema > 0 else None
    amp_dtype = torch.bfloat16 if on_cuda and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=on_cuda and amp_dtype == torch.float16)
    resume = start.resume or {}
    if start.resume is not None:
        optimizer.load_state_dict(resume["optimizer"])
        scaler.load_state_dict(resume["scaler"])
        if ema is not None:
            ema.model.load_state_dict(resume["ema"])
        set_rng_state(resume["rng"])
    schedule = schedule_record(config, start.resume, start.step, ranks)
    trained = distributed.wrap(model, ranks, device)
    if ranks.is_main:
        write_config(config, start.identity, schedule)
        start.errors.begin()
    allowed = bad_samples_allowed(config, start.index.samples)
    batches = _batches(config, start, ranks)
    resumed_at = start.step if start.resume else None
    log = RunLog(Path(config.out), LOSS_PARTS[config.objective], resumed_at) if ranks.is_main else None
    bar = tqdm(
        total=config.steps,
        initial=start.step,
        disable=not (progress and ranks.is_main),
        unit="step",
        dynamic_ncols=True,
    )
    best_rmse = resume.get("best_val_rmse_mm") or float("inf")
    return Run(
        config, start, device, ranks, model, trained, optimizer, ema, scaler, amp_dtype, schedule, best_rmse,
        log, bar, batches, Clock(resume.get("elapsed_s", 0.0)), signals, allowed,
        start.step,
    )  # fmt: skip


def describe_start(config: TrainConfig, start: Start, device: torch.device, ranks: distributed.Ranks) -> str:
    """The line a run says before its first step: where it runs, the model, the data, the run
    folder and whether it resumes."""
    where = str(device) + (f", {torch.get_num_threads()} threads" if device.type == "cpu" else "")
    where += f", {ranks.world_size} ranks" if ranks.world_size > 1 else ""
    parameters = parameter_count(start.model)
    shards = len(start.index.urls)
    begin = f"resuming from step {start.step}" if start.resume is not None else "a new run"
    return (
        f"training on {where}: {config.objective} model of {parameters / 1e6:.2f} M parameters; "
        f"{start.index.samples} samples in {shards} shard{'s' if shards != 1 else ''} of {config.shards}; "
        f"run folder {config.out}; {begin}, to step {start.end}"
    )


def write_config(config: TrainConfig, identity: dict, schedule: list[dict]) -> None:
    """OUT/config.json: the options, the schedule, the world size and the data's fingerprints."""
    data_record = {
        name: identity[name] and {part: identity[name][part] for part in ("count", "bytes", "sha256")}
        for name in ("shards", "val_shards")
    }
    record = {**asdict(config), "schedule": schedule, "world_size": identity["world_size"], "data": data_record}
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / CONFIG).write_text(json.dumps(record, indent=2) + "\n")


def _batches(config: TrainConfig, start: Start, ranks: distributed.Ranks) -> Iterator[dict]:
    """This rank's batches from the run's step on; the units known to be bad are skipped unread."""
    known = {start.index.unit_of(shard, key) for shard, key in start.bad} - {None}
    loader = data.train_loader(
        start.index,
        config.batch_size,
        config.crop,
        config.seed,
        config.workers,
        start.step,
        config.shuffle_buffer,
        ranks.rank,
        ranks.world_size,
        frozenset(known),
    )
    return iter(loader)


def copy_buffers(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: buffer.clone() for name, buffer in model.named_buffers()}

"""A training run's state, built once before the first step: where it starts (a new
model, --init's, or last.pt's to resume), the optimizer, EMA and AMP scaler, the batches
it reads and what it writes (config.json, the logs, the checkpoints' contents).

A run lives in one folder: config.json, log.csv, val.csv, tensorboard/, last.pt (and
best.pt, by validation RMSE). Running the same command again resumes from last.pt,
exactly where it stopped; --steps may be raised to train longer.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from tqdm import tqdm

from . import data, distributed
from .checkpoint import EMA, load_checkpoint, rng_state, set_rng_state
from .config import FREE_TO_CHANGE, TrainConfig, check_data
from .errors import TrainError
from .factory import load_model, new_model
from .objectives import LOSS_PARTS
from .runlog import RunLog
from .schedule import get_lr


def say(ranks: distributed.Ranks, message: str) -> None:
    """One line on stderr, from rank 0 only, without breaking the progress bar."""
    if ranks.is_main:
        tqdm.write(message, file=sys.stderr)


@dataclass
class Clock:
    """Wall time of the run and of the current log window (samples per second)."""

    started: float = field(default_factory=time.perf_counter)
    window_start: float = 0.0
    window_samples: int = 0

    def __post_init__(self):
        self.window_start = self.started


@dataclass
class Run:
    """Everything a training run holds between steps. `model` is the network itself,
    `trained` the module that trains (DDP around the model under torchrun); `log` and
    the files are rank 0's alone. `buffers_before`: the model's buffers before the
    current step's forward pass (a step cut short puts them back)."""

    config: TrainConfig
    out: Path
    device: torch.device
    ranks: distributed.Ranks
    val_urls: list[str]
    model: torch.nn.Module
    trained: torch.nn.Module
    optimizer: torch.optim.Optimizer
    ema: EMA | None
    scaler: torch.amp.GradScaler
    amp_dtype: torch.dtype
    memory_format: torch.memory_format
    step: int
    end: int
    schedule: list[dict]
    best_rmse: float
    log: RunLog | None
    bar: tqdm
    batches: Iterator[dict]
    clock: Clock
    buffers_before: dict[str, torch.Tensor]
    last_row: dict = field(default_factory=dict)

    @property
    def on_cuda(self) -> bool:
        return self.device.type == "cuda"

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
        )


@dataclass
class Start:
    """Where a run begins: its model (new, --init's or last.pt's), the checkpoint it
    resumes (None for a new run), the step it is at and the step it trains to."""

    index: data.ShardIndex
    val_urls: list[str]
    model: torch.nn.Module
    resume: dict | None
    step: int
    end: int


def find_start(config: TrainConfig, stop_at: int | None, ranks: distributed.Ranks) -> Start:
    """Index and check the shards, then resolve the model and the step the run starts from."""
    index = data.index_shards(data.list_shards(config.shards), scenes=config.view_relational)
    check_data(config, index)
    val_urls = data.list_shards(config.val_shards) if config.val_shards else []
    if val_urls:
        data.check_shards(val_urls)
    if index.incomplete:
        say(ranks, f"{index.incomplete} scene(s) miss a view (not generated) and are left out")
    torch.manual_seed(config.seed)
    model, resume = _resolve_model(config, Path(config.out))
    step = resume["step"] if resume else 0
    end = min(config.steps, stop_at) if stop_at is not None else config.steps
    return Start(index, val_urls, model, resume, step, end)


def _same_place(value):
    """Paths compared by where they point (`K16` and `./K16` are one run)."""
    if isinstance(value, str) and "://" not in value and "{" not in value:
        return os.path.abspath(os.path.expanduser(value))
    return list(value) if isinstance(value, tuple) else value


def _resolve_model(config: TrainConfig, out: Path):
    """(model, resume checkpoint or None): a fresh, initialised or resumed model."""
    last = out / "last.pt"
    if last.is_file():
        checkpoint = load_checkpoint(last)
        saved = checkpoint["train_config"]
        changed = [
            f"{option.name} {saved.get(option.name)!r} -> {getattr(config, option.name)!r}"
            for option in fields(config)
            if option.name not in FREE_TO_CHANGE
            and option.name != "width"
            and _same_place(saved.get(option.name, option.default)) != _same_place(getattr(config, option.name))
        ]
        if changed:
            raise TrainError(
                f"{out} holds a run with other options ({'; '.join(changed)}): "
                "use the same options to resume, or another --out"
            )
        if config.steps < checkpoint["step"]:
            raise TrainError(
                f"{out} is at step {checkpoint['step']}: --steps {config.steps} is behind it; "
                "pass --steps of at least that, or another --out"
            )
        return load_model(checkpoint, last, config.width, ema=False), checkpoint
    if config.init is not None:
        return load_model(load_checkpoint(config.init), config.init, config.width), None
    return new_model(config), None


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


def build_run(config: TrainConfig, start: Start, device: torch.device, ranks: distributed.Ranks, progress: bool) -> Run:
    """The run's state at its first step. The order matters for exact resumes: the saved
    RNG state is restored before the loader draws its seed."""
    on_cuda = device.type == "cuda"
    memory_format = torch.channels_last if on_cuda else torch.contiguous_format
    model = start.model.to(device, memory_format=memory_format).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    ema = EMA(model, config.ema) if config.ema > 0 else None
    amp_dtype = torch.bfloat16 if on_cuda and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=on_cuda and amp_dtype == torch.float16)
    best_rmse = float("inf")
    resume = start.resume
    if resume is not None:
        optimizer.load_state_dict(resume["optimizer"])
        scaler.load_state_dict(resume["scaler"])
        if ema is not None:
            ema.model.load_state_dict(resume["ema"])
        set_rng_state(resume["rng"])
        best_rmse = resume.get("best_val_rmse_mm") or float("inf")
    schedule = schedule_record(config, resume, start.step, ranks)
    trained = distributed.wrap(model, ranks, device)
    out = Path(config.out)
    if ranks.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps({**asdict(config), "schedule": schedule}, indent=2) + "\n")
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
    )
    log = RunLog(out, LOSS_PARTS[config.objective], start.step if resume else None) if ranks.is_main else None
    bar = tqdm(
        total=config.steps,
        initial=start.step,
        disable=not (progress and ranks.is_main),
        unit="step",
        dynamic_ncols=True,
    )
    clock = Clock()
    batches = iter(loader)
    buffers = copy_buffers(model)
    return Run(
        config, out, device, ranks, start.val_urls, model, trained, optimizer, ema, scaler, amp_dtype,
        memory_format, start.step, start.end, schedule, best_rmse, log, bar, batches, clock, buffers,
    )  # fmt: skip


def copy_buffers(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: buffer.clone() for name, buffer in model.named_buffers()}

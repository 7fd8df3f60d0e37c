"""The training loop (stage 1 pretrain, stage 2 finetune, bins-kd students; the losses
are in objectives.py, the run's state in run.py).

    train: check the options, join the torchrun group, find where the run starts,
           build its state once, then step until the end:
        training_step: learning rate, forward, loss, backward, optimizer, EMA, step += 1
        after_step:    a log.csv row, a validation, a checkpoint, each when it is due

Ctrl-C saves the last complete step first. Under torchrun each rank trains on its own
shard positions, rank 0 writes everything.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from contextlib import contextmanager

import torch

from . import data, distributed
from .checkpoint import save_checkpoint
from .config import TrainConfig, check_options
from .errors import TrainError, TrainingInterrupted
from .factory import pick_device
from .metrics import mean_metrics
from .objectives import LOSS_PARTS, as_float, compute_loss
from .run import Run, build_run, copy_buffers, find_start, say
from .schedule import get_lr
from .validate import model_metrics

VAL_PREVIEWS = 3


def train(config: TrainConfig, stop_at: int | None = None, progress: bool = True) -> dict:
    """Train until config.steps (or stop_at, to continue later). Returns {"step", "loss"
    (the last logged row's, or None), "done_before" (the run had already reached it)}.
    Writes OUT/config.json, log.csv, val.csv, tensorboard/, last.pt and best.pt."""
    check_options(config, stop_at)
    device = pick_device(config.device, int(os.environ.get("LOCAL_RANK", "0")))
    ranks = distributed.setup(device.type == "cuda")
    try:
        start = find_start(config, stop_at, ranks)
        if start.step >= start.end:
            say(ranks, f"{config.out} is already at step {start.step}: nothing to do (raise --steps to train longer)")
            return {"step": start.step, "loss": None, "done_before": True}
        run = build_run(config, start, device, ranks, progress)
        train_until_end(run)
        return {"step": run.step, "loss": run.last_row.get("loss"), "done_before": False}
    finally:
        distributed.teardown()


def train_until_end(run: Run) -> None:
    """The loop: one step, then what is due after it, until the end step."""
    try:
        while run.step < run.end:
            loss, parts, lr, samples = training_step(run)
            after_step(run, loss, parts, lr, samples)
    except KeyboardInterrupt:
        for name, buffer in run.model.named_buffers():
            buffer.copy_(run.buffers_before[name])
        if run.ranks.is_main:
            save_checkpoint(run.out / "last.pt", **run.checkpoint_state())
        raise TrainingInterrupted(run.step, run.out / "last.pt") from None
    finally:
        run.bar.close()
        if run.log is not None:
            run.log.close()


def training_step(run: Run) -> tuple[torch.Tensor, dict, float, int]:
    """One optimizer step on the next batch: (loss, its parts, the learning rate used,
    samples in the batch)."""
    config = run.config
    lr = get_lr(run.step, config.steps, config.lr, config.warmup, config.min_lr, config.decay)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    # The forward pass moves batch-norm statistics: a step cut short by Ctrl-C puts them back.
    run.buffers_before = copy_buffers(run.model)
    batch = {name: tensor.to(run.device, non_blocking=True) for name, tensor in next(run.batches).items()}
    if config.view_relational:
        batch = data.flatten_scenes(batch)
    rgb = batch["rgb"].contiguous(memory_format=run.memory_format)
    sparse = batch["sparse"].contiguous(memory_format=run.memory_format)
    with torch.autocast(run.device.type, dtype=run.amp_dtype, enabled=run.on_cuda):
        outputs = run.trained(rgb, sparse)
    loss, parts = compute_loss(config, as_float(outputs), batch)
    if not torch.isfinite(loss):
        raise TrainError(f"loss became {loss.item()} at step {run.step}: lower --lr or check the shards")
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    run.scaler.unscale_(run.optimizer)
    if config.clip > 0:
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), config.clip)
    with interrupts_deferred():
        run.scaler.step(run.optimizer)
        run.scaler.update()
        if run.ema is not None:
            run.ema.update(run.model, run.step)
        run.step += 1
    return loss, parts, lr, len(batch["rgb"])


@contextmanager
def interrupts_deferred():
    """Ctrl-C (SIGINT) waits until the block is done: the weights, optimizer, EMA and step
    counter change together, so the checkpoint saved on Ctrl-C is one consistent step."""
    can_block = hasattr(signal, "pthread_sigmask") and threading.current_thread() is threading.main_thread()
    if can_block:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        if can_block:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def after_step(run: Run, loss: torch.Tensor, parts: dict, lr: float, samples: int) -> None:
    """What is due after a step: a log.csv row, a validation, a checkpoint."""
    config = run.config
    run.clock.window_samples += samples * run.ranks.world_size
    run.bar.update(1)
    if run.step % config.log_every == 0 or run.step == run.end:
        log_step(run, loss, parts, lr)
    if run.val_urls and (run.step % config.val_every == 0 or run.step == config.steps):
        validate(run)
    if run.ranks.is_main and (run.step % config.save_every == 0 or run.step == run.end):
        save_checkpoint(run.out / "last.pt", **run.checkpoint_state())


def log_step(run: Run, loss: torch.Tensor, parts: dict, lr: float) -> None:
    """A log.csv row (the loss and its parts averaged over the ranks, the rate, speed)."""
    names = LOSS_PARTS[run.config.objective]
    values = distributed.mean_over_ranks([loss.item(), *(parts[name] for name in names)], run.device)
    clock = run.clock
    now = time.perf_counter()
    if run.ranks.is_main:
        samples_per_s = clock.window_samples / (now - clock.window_start)
        parts_mean = dict(zip(names, values[1:], strict=True))
        run.last_row = run.log.step(run.step, values[0], parts_mean, lr, samples_per_s, now - clock.started)
        run.bar.set_postfix(loss=run.last_row["loss"], samples_s=run.last_row["samples_per_s"])
    clock.window_start, clock.window_samples = now, 0


def validate(run: Run) -> None:
    """Rank 0: KITTI metrics of the EMA (or raw) weights on --val-shards; best.pt by RMSE."""
    if run.ranks.is_main:
        model = run.ema.model if run.ema else run.model
        per_image, pictures = model_metrics(model, run.val_urls, run.device, VAL_PREVIEWS)
        if not per_image:
            raise TrainError(f"no sample in --val-shards {run.config.val_shards} has ground truth")
        mean = mean_metrics(per_image)
        best = mean["rmse_mm"] < run.best_rmse
        run.best_rmse = min(run.best_rmse, mean["rmse_mm"])
        run.log.validation(run.step, mean, len(per_image), best, pictures)
        run.say(
            f"step {run.step}: validation RMSE {mean['rmse_mm']:.1f} mm, MAE {mean['mae_mm']:.1f} mm"
            + (" (best)" if best else "")
        )
        if best:
            save_checkpoint(run.out / "best.pt", **run.checkpoint_state())
    distributed.barrier()

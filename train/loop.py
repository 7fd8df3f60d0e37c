"""The training loop (stage 1 pretrain, stage 2 finetune, bins-kd students; the losses
are in objectives.py, the run's state in run.py).

    train: check the options, join the torchrun group, open the run (every check that can
           come before the first step, the folder's lock), build its state once, then
           until the end step:
        next batch
        check_in:      every rank learns what the others met (bad samples, a loader that
                       failed, a stop signal) and all take the same decision
        training_step: learning rate, forward, loss, backward, optimizer, EMA, step += 1
        after_step:    a log.csv row, a validation, a checkpoint, each when it is due

Every stop that can save does, and says so in one line: SIGINT or SIGTERM (after the
step in progress, validation included; signals.py), a loader that cannot go on, too many
bad samples, a loss that is not finite. Under torchrun each rank trains on its own shard
positions, rank 0 writes everything.
"""

from __future__ import annotations

import os
import time

import torch

from . import data, distributed
from .checkpoint import save_checkpoint
from .config import TrainConfig, check_options
from .errors import RankStopped, TrainError, TrainingInterrupted
from .factory import pick_device
from .metrics import mean_metrics
from .objectives import LOSS_PARTS, as_float32, compute_loss
from .run import BEST, ERRORS, LAST, Run, Start, build_run, copy_buffers, describe_start, open_run, say
from .schedule import get_lr
from .signals import StopSignals
from .validate import model_metrics

VAL_PREVIEWS = 3


def train(config: TrainConfig, stop_at: int | None = None, progress: bool = True, overwrite: bool = False) -> dict:
    """Train until config.steps (or stop_at, to continue later); overwrite: start the run
    in config.out over. Returns {"step", "loss" (the last logged row's, or None),
    "done_before" (the run had already reached it), "main" (this is rank 0)}. Writes
    OUT/config.json, log.csv, val.csv, errors.jsonl, tensorboard/, last.pt and best.pt."""
    check_options(config, stop_at)
    device = pick_device(config.device, int(os.environ.get("LOCAL_RANK", "0")))
    ranks = distributed.setup(device.type == "cuda")
    start = None
    try:
        with StopSignals() as signals:
            start = distributed.together(ranks, lambda: open_run(config, stop_at, ranks, overwrite), Start.close)
            if start.step >= start.end:
                say(
                    ranks,
                    f"{config.out} is already at step {start.step}: nothing to do (raise --steps to train longer)",
                )
                return {"step": start.step, "loss": None, "done_before": True, "main": ranks.is_main}
            if progress:
                say(ranks, describe_start(config, start, device, ranks))
            run = build_run(config, start, device, ranks, progress, signals)
            train_until_end(run)
            return {"step": run.step, "loss": run.last_row.get("loss"), "done_before": False, "main": ranks.is_main}
    finally:
        if start is not None:
            start.close()
        distributed.teardown()


def train_until_end(run: Run) -> None:
    """The loop: the next batch, the ranks' common decision, one step, then what is due."""
    run.signals.hold_worker_checks()
    run.signals.deferring = True
    try:
        while run.step < run.end:
            batch = next_batch(run)
            check_in(run, batch)
            loss, parts, lr, samples = training_step(run, batch)
            after_step(run, loss, parts, lr, samples)
    finally:
        # torch checks its loader workers in a SIGCHLD handler that raises wherever the
        # process is (closing the logs, say): the workers are shut down, and torch forgets
        # them, while their exits are still only noted, so a worker that the stop signal
        # killed ends nothing here.
        data.shut_down(run.batches)
        run.signals.deferring = False
        run.bar.close()
        if run.log is not None:
            run.log.close()


def next_batch(run: Run) -> dict:
    """This rank's next batch; a loader worker that died (a signal, memory) is a failure
    handed to check_in like a worker's own, or nothing when a stop was asked for anyway."""
    try:
        run.signals.check_workers()
        return next(run.batches)
    # A worker killed while it handed over a batch resets the connection instead.
    except (RuntimeError, OSError, EOFError) as error:
        if run.signals.requested is not None:
            return {}
        reason = [line for line in str(error).splitlines() if line.strip()][-1]
        return {"failure": f"a data-loader worker stopped ({reason})"}


def check_in(run: Run, batch: dict) -> None:
    """Before each step, every rank learns what the others met: bad samples (recorded in
    errors.jsonl, counted against --max-bad-samples), a loader that failed, a stop signal.
    Each of the last three ends the run here, at the last complete step, saved."""
    events = [{"skipped": record} for record in batch.pop("skipped", [])]
    if "failure" in batch:
        events.append({"failure": batch.pop("failure")})
    stop, events = distributed.share(run.signals.requested is not None, events)
    for event in events:
        if "skipped" in event:
            record_bad_sample(run, event["skipped"])
    if len(run.start.bad) > run.allowed:
        stop_with(
            run,
            f"{len(run.start.bad)} of {run.start.index.samples} samples cannot be decoded, more than "
            f"--max-bad-samples {run.config.max_bad_samples} allows: see {run.out / ERRORS}; step {run.step} is "
            "saved: re-run with a higher --max-bad-samples to go on, or regenerate those shards and start over",
        )
    # A stop signal sent to every process of the job also kills the loader's workers: the
    # signal, not their failure, is what ended the run.
    if stop:
        save_last(run)
        raise TrainingInterrupted(run.step, run.out / LAST, run.signals.requested, run.ranks.is_main)
    failures = [event["failure"] for event in events if "failure" in event]
    if failures:
        stop_with(run, f"{failures[0]}; step {run.step} is saved in {run.out / LAST}, re-run to resume")


def stop_with(run: Run, message: str) -> None:
    """Save the step the run is at and stop it with one line (rank 0's; the others say nothing)."""
    save_last(run)
    if run.ranks.is_main:
        raise TrainError(message)
    raise RankStopped(0)


def record_bad_sample(run: Run, record: dict) -> None:
    """A training sample that did not decode, met by any rank: once in errors.jsonl."""
    sample = (record["shard"], record["key"])
    if sample in run.start.bad:
        return
    if run.start.bad.keys() <= {(bad["shard"], bad["key"]) for bad in run.start.index.bad}:
        run.say(
            f"skipping sample {record['key']} of {record['shard']} ({record['reason']}); every sample skipped "
            f"goes to {run.out / ERRORS} and log.csv counts them"
        )
    run.start.bad[sample] = run.step + 1
    if run.start.errors is not None:
        run.start.errors.write({"split": "train", **record, "step": run.step + 1})


def save_last(run: Run) -> None:
    if run.ranks.is_main:
        save_checkpoint(run.out / LAST, **run.checkpoint_state())


def training_step(run: Run, batch: dict) -> tuple[torch.Tensor, dict, float, int]:
    """One optimizer step on the batch: (loss, its parts, the learning rate used, samples)."""
    config = run.config
    lr = get_lr(run.step, config.steps, config.lr, config.warmup, config.min_lr, config.decay)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    names = batch.pop("samples")
    batch = {name: tensor.to(run.device, non_blocking=True) for name, tensor in batch.items()}
    if config.view_relational:
        batch = data.flatten_scenes(batch)
    # The forward pass moves batch-norm statistics: a step that fails puts them back.
    run.buffers_before = copy_buffers(run.model)
    rgb = batch["rgb"].contiguous(memory_format=run.memory_format)
    sparse = batch["sparse"].contiguous(memory_format=run.memory_format)
    with torch.autocast(run.device.type, dtype=run.amp_dtype, enabled=run.on_cuda):
        outputs = run.trained(rgb, sparse)
    loss, parts = compute_loss(config, as_float32(outputs), batch)
    finite = bool(torch.isfinite(loss))
    not_finite, culprits = distributed.share(not finite, [] if finite else names)
    if not_finite:
        stop_on_a_loss_that_is_not_finite(run, culprits)
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    run.scaler.unscale_(run.optimizer)
    if config.clip > 0:
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), config.clip)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    if run.ema is not None:
        run.ema.update(run.model, run.step)
    run.step += 1
    return loss, parts, lr, len(batch["rgb"])


def stop_on_a_loss_that_is_not_finite(run: Run, samples: list[str]) -> None:
    """Save the step before (its batch-norm statistics put back) and say which samples the
    batch held and how to go on: resuming would meet the same batch again."""
    for name, buffer in run.model.named_buffers():
        buffer.copy_(run.buffers_before[name])
    shown = ", ".join(samples[:4]) + (f" and {len(samples) - 4} more" if len(samples) > 4 else "")
    last = run.out / LAST
    stop_with(
        run,
        f"the loss is not finite at step {run.step + 1}, on a batch of {shown}: check those samples; step "
        f"{run.step} is saved in {last}, to go on with a lower learning rate start a new run from it "
        f"(--init {last} --lr {run.config.lr / 10:g} --out NEW_FOLDER)",
    )


def after_step(run: Run, loss: torch.Tensor, parts: dict, lr: float, samples: int) -> None:
    """What is due after a step: a log.csv row, a validation, a checkpoint."""
    config = run.config
    run.clock.window_samples += samples * run.ranks.world_size
    run.bar.update(1)
    if run.step % config.log_every == 0 or run.step == run.end:
        log_step(run, loss, parts, lr)
    if run.start.val_urls and (run.step % config.val_every == 0 or run.step == config.steps):
        validate(run)
    if run.step % config.save_every == 0 or run.step == run.end:
        save_last(run)


def log_step(run: Run, loss: torch.Tensor, parts: dict, lr: float) -> None:
    """A log.csv row (the loss and its parts averaged over the ranks, the rate, speed)."""
    names = LOSS_PARTS[run.config.objective]
    values = distributed.mean_over_ranks([loss.item(), *(parts[name] for name in names)], run.device)
    clock = run.clock
    now = time.perf_counter()
    if run.ranks.is_main:
        speed = (clock.window_samples / (now - clock.window_start), clock.elapsed(now))
        parts_mean = dict(zip(names, values[1:], strict=True))
        run.last_row = run.log.step(run.step, values[0], parts_mean, lr, speed, len(run.start.bad))
        shown = {"loss": run.last_row["loss"], "samples_s": run.last_row["samples_per_s"]}
        run.bar.set_postfix(**shown, **({"skipped": len(run.start.bad)} if run.start.bad else {}))
    clock.window_start, clock.window_samples = now, 0


def validate(run: Run) -> None:
    """Rank 0: KITTI metrics of the EMA (or raw) weights on --val-shards; best.pt by RMSE. A
    validation that fails (its shards gone or damaged since the run began) stops every rank
    with the step saved."""
    failure = None
    if run.ranks.is_main:
        try:
            measure_validation(run)
        except Exception as error:  # whatever reading the shards met: one line, the step kept
            # tarfile's errors carry (message, stream): the message is enough.
            text = error.args[0] if error.args and isinstance(error.args[0], str) else str(error)
            failure = f"{type(error).__name__}: {text}".splitlines()[0]
    failed, reasons = distributed.share(failure is not None, [failure] if failure else [])
    if failed:
        stop_with(
            run,
            f"the validation at step {run.step} failed ({reasons[0]}); step {run.step} is saved in {run.out / LAST}: "
            "restore --val-shards and re-run to resume",
        )


def measure_validation(run: Run) -> None:
    """The validation row, its pictures and best.pt (rank 0's part of validate)."""
    model = run.ema.model if run.ema else run.model
    per_image, pictures = model_metrics(model, run.start.val_urls, run.device, VAL_PREVIEWS)
    if not per_image:
        raise TrainError("no sample of --val-shards has ground truth any more")
    mean = mean_metrics(per_image)
    best = mean["rmse_mm"] < run.best_rmse
    run.best_rmse = min(run.best_rmse, mean["rmse_mm"])
    run.log.validation(run.step, mean, len(per_image), best, pictures)
    run.say(
        f"step {run.step}: validation RMSE {mean['rmse_mm']:.1f} mm, MAE {mean['mae_mm']:.1f} mm"
        + (" (best)" if best else "")
    )
    if best:
        save_checkpoint(run.out / BEST, **run.checkpoint_state())

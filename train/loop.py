"""The training loop (stage 1 pretrain, stage 2 finetune).

    pretrain: L1 (or L2) on the dense target, from the sparse input, multi-scale.
    finetune: the same on the real (semi-dense) ground truth
              + ssi_weight * SSI(prediction, teacher depth) where the ground truth is
              missing and the teacher has a value, in metric depth: the teacher's relative
              disparity is mapped to depth by a per-image fit to the ground truth, and
              SSI's residual is in metres (losses.py), so a pixel weighs like a
              supervised one at every depth.
    --objective bins-kd (a light student with a depth-bin head, see student.py):
              L1 (or L2) on the dense target + chamfer_weight * chamfer(centres, target)
              + kd_weight * KL(teacher bin probabilities || student's) (distill.py)
              [+ relational_weight * view relations of adjacent views, --view-relational].

A run lives in one folder: config.json, log.csv, val.csv, tensorboard/, last.pt (and
best.pt, by validation RMSE). Running the same command again resumes from last.pt,
exactly where it stopped (Ctrl-C saves first); --steps may be raised to train longer.
Under torchrun each rank trains on its own shard positions, rank 0 writes everything.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, fields
from pathlib import Path

import torch
from tqdm import tqdm

from . import data, distributed
from .bins import chamfer_loss, check_bins
from .checkpoint import EMA, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .config import DECAYS, FREE_TO_CHANGE, LOSS_NAMES, OBJECTIVES, STAGES, STUDENTS, TrainConfig
from .distill import align_teacher, cross_interaction_kd, teacher_disparity, view_relational_loss
from .errors import TrainError, TrainingInterrupted
from .factory import load_model, new_model, pick_device
from .losses import SSILoss, masked_l1, masked_l2, multiscale, teacher_depth
from .metrics import mean_metrics
from .runlog import RunLog
from .schedule import get_lr
from .validate import model_metrics

LOSSES = {"l1": masked_l1, "l2": masked_l2}
# The loss parts each objective logs (log.csv columns).
LOSS_PARTS = {"completion": ("supervised", "ssi"), "bins-kd": ("supervised", "chamfer", "kd", "relational")}
VAL_PREVIEWS = 3


def _check(config: TrainConfig, stop_at: int | None = None) -> None:
    """Every option in its range, as one line naming the flag."""
    choices = {"stage": STAGES, "loss": LOSS_NAMES, "objective": OBJECTIVES, "student": STUDENTS, "decay": DECAYS}
    for name, allowed in choices.items():
        if getattr(config, name) not in allowed:
            raise TrainError(f"--{name} {getattr(config, name)!r} is unknown: use one of {', '.join(allowed)}")
    at_least = {
        "steps": 1,
        "batch_size": 1,
        "log_every": 1,
        "save_every": 1,
        "val_every": 1,
        "shuffle_buffer": 1,
        "workers": 0,
        "seed": 0,
        "width": 1,
        "weight_decay": 0,
        "clip": 0,
        "min_lr": 0,
        "ssi_weight": 0,
        "gradient_weight": 0,
        "chamfer_weight": 0,
        "kd_weight": 0,
        "relational_weight": 0,
    }
    for name, low in at_least.items():
        value = getattr(config, name)
        if value is not None and value < low:
            raise TrainError(f"--{name.replace('_', '-')} must be at least {low} (got {value})")
    if min(config.crop) < 1:
        raise TrainError(f"--crop H W must be positive (got {config.crop[0]} {config.crop[1]})")
    if stop_at is not None and stop_at < 1:
        raise TrainError(f"--stop-at must be at least 1 (got {stop_at})")
    if not config.lr > 0 or config.min_lr > config.lr:
        raise TrainError(
            f"--lr must be positive and at least --min-lr (got --lr {config.lr}, --min-lr {config.min_lr})"
        )
    if not 0 <= config.warmup <= 1:
        raise TrainError(f"--warmup must lie in [0, 1] (got {config.warmup})")
    for name in ("trim", "ema"):
        value = getattr(config, name)
        if not 0 <= value < 1:
            raise TrainError(f"--{name} must lie in [0, 1) (got {value})")
    if config.stage == "finetune" and config.init is None:
        raise TrainError("--stage finetune needs --init CKPT (a pretrained checkpoint, e.g. runs/pretrain/last.pt)")
    if config.view_relational and config.objective != "bins-kd":
        raise TrainError("--view-relational distils into a bin student: add --objective bins-kd")
    if config.objective == "bins-kd":
        check_bins(config.bins)
        if not 0 < config.bin_range[0] < config.bin_range[1]:
            raise TrainError(f"--bin-range must be 0 < MIN < MAX metres (got {config.bin_range})")
        if config.temperature <= 0:
            raise TrainError(f"--temperature must be positive (got {config.temperature})")


def _check_data(config: TrainConfig, index: data.ShardIndex) -> None:
    """What the shards must hold for the run's options."""
    if config.view_relational and len(index.views) > 1 and config.batch_size > 1:
        raise TrainError(
            f"the scenes have {' and '.join(map(str, index.views))} views: batches of several scenes need one "
            "view count; pass --batch-size 1 or shards of one rig"
        )
    if config.stage == "finetune" and config.ssi_weight > 0 and index.teacher_samples == 0:
        raise TrainError(
            f"{config.shards} has no teacher.png, so the SSI term would be 0: convert with "
            "`simlidar convert kitti ... --teacher NAME`, or pass --ssi-weight 0 to fine-tune on the ground truth alone"
        )


def compute_loss(config: TrainConfig, outputs, batch: dict) -> tuple[torch.Tensor, dict]:
    """The stage's (or objective's) loss and its parts (floats, for the log)."""
    if config.objective == "bins-kd":
        return bins_kd_loss(config, outputs, batch)
    target = batch["dense"]
    mask = (target > 0).to(target.dtype)
    supervised = multiscale(LOSSES[config.loss], outputs, target, mask)
    if config.stage == "pretrain" or config.ssi_weight == 0:
        return supervised, {"supervised": supervised.item(), "ssi": 0.0}
    ssi = finetune_ssi(config, outputs[0], batch)
    return supervised + config.ssi_weight * ssi, {"supervised": supervised.item(), "ssi": ssi.item()}


def finetune_ssi(config: TrainConfig, prediction_m: torch.Tensor, batch: dict) -> torch.Tensor:
    """SSI between the predicted depth and the teacher's, on pixels without ground truth."""
    target = batch["dense"]
    depth, valid = teacher_depth(batch["teacher"], batch["teacher_valid"], target)
    ssi_mask = valid * (target <= 0).to(target.dtype)
    return SSILoss(config.trim, config.gradient_weight, units="prediction")(prediction_m, depth, ssi_mask)


def bins_kd_loss(config: TrainConfig, outputs: dict, batch: dict) -> tuple[torch.Tensor, dict]:
    """A bin student's loss. supervised and chamfer see the ground-truth pixels (the
    dense member: real LiDAR or annotations on real data, the teacher's depth on
    generated data); kd sees every teacher pixel of a scene whose teacher could be
    aligned to the ground truth (align_teacher); relational sees the LiDAR points that
    two adjacent views share (batch["matches"]). Scene batches are S scenes of V views
    (batch["neighbours"] (S, V, V)); the teacher is aligned once per scene."""
    target = batch["dense"]
    mask = (target > 0).to(target.dtype)
    centres, logits = outputs["centres"], outputs["logits"]
    views = batch["neighbours"].shape[1] if config.view_relational else 1
    disparity = teacher_disparity(batch["teacher"], batch["teacher_range"], views)
    teacher_depth, teacher_mask = align_teacher(disparity, batch["teacher_valid"], target, views)
    parts = {
        "supervised": LOSSES[config.loss](outputs["depth"][0], target, mask),
        "chamfer": chamfer_loss(centres, target, mask),
        "kd": cross_interaction_kd(logits, centres, teacher_depth, teacher_mask, config.temperature),
        "relational": target.new_zeros(()),
    }
    if config.view_relational:
        scenes = batch["neighbours"].shape[:2]
        parts["relational"] = view_relational_loss(
            outputs["features"].unflatten(0, scenes),
            teacher_depth.unflatten(0, scenes),
            teacher_mask.unflatten(0, scenes),
            centres.unflatten(0, scenes),
            batch["matches"],
            batch["match_rays"],
            batch["match_valid"],
            config.temperature,
        )
    loss = (
        parts["supervised"]
        + config.chamfer_weight * parts["chamfer"]
        + config.kd_weight * parts["kd"]
        + config.relational_weight * parts["relational"]
    )
    return loss, {name: part.item() for name, part in parts.items()}


def copy_buffers(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: buffer.clone() for name, buffer in model.named_buffers()}


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


def as_float32(outputs):
    """Depth maps in float32 for the loss (autocast may have made them half)."""
    if isinstance(outputs, dict):
        return {**outputs, "depth": [o.float() for o in outputs["depth"]]}
    return [o.float() for o in outputs]


def _same_place(value):
    """Paths compared by where they point (`K16` and `./K16` are one run)."""
    if isinstance(value, str) and "://" not in value and "{" not in value:
        return os.path.abspath(os.path.expanduser(value))
    return list(value) if isinstance(value, tuple) else value


def _resolve_start(config: TrainConfig, out: Path):
    """(model, resume checkpoint or None): a fresh, initialised or resumed model."""
    last = out / "last.pt"
    if last.is_file():
        checkpoint = load_checkpoint(last)
        saved = checkpoint["train_config"]
        changed = [
            f"{field.name} {saved.get(field.name)!r} -> {getattr(config, field.name)!r}"
            for field in fields(config)
            if field.name not in FREE_TO_CHANGE
            and field.name != "width"
            and _same_place(saved.get(field.name, field.default)) != _same_place(getattr(config, field.name))
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


def _schedule_record(config: TrainConfig, resume: dict | None, step: int, say) -> list[dict]:
    """The run's schedule history: the step counts it was planned with, and from when."""
    history = list(resume.get("schedule", [])) if resume else []
    if not history or history[-1]["steps"] != config.steps:
        if history:
            before = get_lr(step, history[-1]["steps"], config.lr, config.warmup, config.min_lr, config.decay)
            now = get_lr(step, config.steps, config.lr, config.warmup, config.min_lr, config.decay)
            say(
                f"--steps {history[-1]['steps']} -> {config.steps} at step {step}: the schedule is recomputed "
                f"for {config.steps} steps (learning rate {before:.3g} -> {now:.3g})"
            )
        history.append({"from_step": step, "steps": config.steps})
    return history


def train(config: TrainConfig, stop_at: int | None = None, progress: bool = True) -> dict:
    """Train until config.steps (or stop_at, to continue later). Returns {"step", "loss"
    (the last logged row's, or None), "done_before" (the run had already reached it)}.
    Writes OUT/config.json, log.csv, val.csv, tensorboard/, last.pt and best.pt."""
    _check(config, stop_at)
    device = pick_device(config.device, int(os.environ.get("LOCAL_RANK", "0")))
    on_cuda = device.type == "cuda"
    ranks = distributed.setup(on_cuda)
    try:
        return _train(config, stop_at, progress, device, ranks)
    finally:
        distributed.teardown()


def _train(config: TrainConfig, stop_at, progress: bool, device: torch.device, ranks: distributed.Ranks) -> dict:
    out = Path(config.out)
    index = data.index_shards(data.list_shards(config.shards), scenes=config.view_relational)
    _check_data(config, index)
    val_urls = data.list_shards(config.val_shards) if config.val_shards else []
    if val_urls:
        data.check_shards(val_urls)

    def say(message: str) -> None:
        if ranks.is_main:
            tqdm.write(message, file=sys.stderr)

    if index.incomplete:
        say(f"{index.incomplete} scene(s) miss a view (not generated) and are left out")
    on_cuda = device.type == "cuda"
    torch.manual_seed(config.seed)
    model, resume = _resolve_start(config, out)
    step = resume["step"] if resume else 0
    end = min(config.steps, stop_at) if stop_at is not None else config.steps
    if step >= end:
        say(f"{out} is already at step {step}: nothing to do (raise --steps to train longer)")
        return {"step": step, "loss": None, "done_before": True}
    memory_format = torch.channels_last if on_cuda else torch.contiguous_format
    model = model.to(device, memory_format=memory_format).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    ema = EMA(model, config.ema) if config.ema > 0 else None
    amp_dtype = torch.bfloat16 if on_cuda and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=on_cuda and amp_dtype == torch.float16)
    best_rmse = float("inf")
    if resume is not None:
        optimizer.load_state_dict(resume["optimizer"])
        scaler.load_state_dict(resume["scaler"])
        if ema is not None:
            ema.model.load_state_dict(resume["ema"])
        set_rng_state(resume["rng"])
        best_rmse = resume.get("best_val_rmse_mm") or float("inf")
    schedule = _schedule_record(config, resume, step, say)
    trained = distributed.wrap(model, ranks, device)
    if ranks.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps({**asdict(config), "schedule": schedule}, indent=2) + "\n")

    def checkpoint_state() -> dict:
        return dict(
            step=step,
            model_config=model.config.to_dict(),
            train_config=asdict(config),
            model=model.state_dict(),
            ema=ema.model.state_dict() if ema else None,
            optimizer=optimizer.state_dict(),
            scaler=scaler.state_dict(),
            rng=rng_state(),
            schedule=schedule,
            best_val_rmse_mm=best_rmse if best_rmse < float("inf") else None,
        )

    def validate() -> None:
        """Rank 0: KITTI metrics of the EMA (or raw) weights on --val-shards; best.pt by RMSE."""
        nonlocal best_rmse
        if ranks.is_main:
            per_image, pictures = model_metrics(ema.model if ema else model, val_urls, device, VAL_PREVIEWS)
            if not per_image:
                raise TrainError(f"no sample in --val-shards {config.val_shards} has ground truth")
            mean = mean_metrics(per_image)
            best = mean["rmse_mm"] < best_rmse
            best_rmse = min(best_rmse, mean["rmse_mm"])
            run_log.validation(step, mean, len(per_image), best, pictures)
            say(
                f"step {step}: validation RMSE {mean['rmse_mm']:.1f} mm, MAE {mean['mae_mm']:.1f} mm"
                + (" (best)" if best else "")
            )
            if best:
                save_checkpoint(out / "best.pt", **checkpoint_state())
        distributed.barrier()

    loader = data.train_loader(
        index,
        config.batch_size,
        config.crop,
        config.seed,
        config.workers,
        step,
        config.shuffle_buffer,
        ranks.rank,
        ranks.world_size,
    )
    run_log = RunLog(out, LOSS_PARTS[config.objective], step if resume else None) if ranks.is_main else None
    row: dict = {}
    bar = tqdm(
        total=config.steps, initial=step, disable=not (progress and ranks.is_main), unit="step", dynamic_ncols=True
    )
    started = window_start = time.perf_counter()
    window_samples = 0
    batches = iter(loader)
    buffers_before = copy_buffers(model)
    try:
        while step < end:
            lr = get_lr(step, config.steps, config.lr, config.warmup, config.min_lr, config.decay)
            for group in optimizer.param_groups:
                group["lr"] = lr
            # The forward pass moves batch-norm statistics: a step cut short by Ctrl-C puts them back.
            buffers_before = copy_buffers(model)
            batch = {name: tensor.to(device, non_blocking=True) for name, tensor in next(batches).items()}
            if config.view_relational:
                batch = data.flatten_scenes(batch)
            rgb = batch["rgb"].contiguous(memory_format=memory_format)
            sparse = batch["sparse"].contiguous(memory_format=memory_format)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=on_cuda):
                outputs = trained(rgb, sparse)
            loss, parts = compute_loss(config, as_float32(outputs), batch)
            if not torch.isfinite(loss):
                raise TrainError(f"loss became {loss.item()} at step {step}: lower --lr or check the shards")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            if config.clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip)
            with interrupts_deferred():
                scaler.step(optimizer)
                scaler.update()
                if ema is not None:
                    ema.update(model, step)
                step += 1
            window_samples += len(batch["rgb"]) * ranks.world_size
            bar.update(1)
            if step % config.log_every == 0 or step == end:
                names = LOSS_PARTS[config.objective]
                values = distributed.mean_over_ranks([loss.item(), *(parts[name] for name in names)], device)
                now = time.perf_counter()
                if ranks.is_main:
                    row = run_log.step(
                        step,
                        values[0],
                        dict(zip(names, values[1:], strict=True)),
                        lr,
                        window_samples / (now - window_start),
                        now - started,
                    )
                    bar.set_postfix(loss=row["loss"], samples_s=row["samples_per_s"])
                window_start, window_samples = now, 0
            if val_urls and (step % config.val_every == 0 or step == config.steps):
                validate()
            if ranks.is_main and (step % config.save_every == 0 or step == end):
                save_checkpoint(out / "last.pt", **checkpoint_state())
    except KeyboardInterrupt:
        for name, buffer in model.named_buffers():
            buffer.copy_(buffers_before[name])
        if ranks.is_main:
            save_checkpoint(out / "last.pt", **checkpoint_state())
        raise TrainingInterrupted(step, out / "last.pt") from None
    finally:
        bar.close()
        if run_log is not None:
            run_log.close()
    return {"step": step, "loss": row.get("loss"), "done_before": False}

"""The training loop (stage 1 pretrain, stage 2 finetune) and evaluation.

    pretrain: L1 (or L2) on the dense target, from the sparse input, multi-scale.
    finetune: the same on the real (semi-dense) ground truth
              + ssi_weight * SSI(1 / prediction, teacher disparity) where the ground
              truth is missing and the teacher has a value.
    --objective bins-kd (a light student with a depth-bin head, see student.py):
              L1 (or L2) on the dense target + chamfer_weight * chamfer(centres, target)
              + kd_weight * KL(teacher bin probabilities || student's) (distill.py)
              [+ relational_weight * view relations of adjacent views, --view-relational].

A run lives in one folder: config.json, log.csv, last.pt. Running the same command
again resumes from last.pt, exactly where it stopped (Ctrl-C saves first).
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from . import data
from .bins import chamfer_loss, check_bins
from .checkpoint import EMA, load_checkpoint, model_from_checkpoint, rng_state, save_checkpoint, set_rng_state
from .config import DEFAULT_WIDTH, FREE_TO_CHANGE, OBJECTIVES, STAGES, STUDENTS, TrainConfig
from .distill import align_teacher, cross_interaction_kd, teacher_disparity, view_relational_loss
from .errors import TrainError
from .losses import SSILoss, depth_to_disparity, masked_l1, masked_l2, multiscale
from .metrics import image_metrics, mean_metrics
from .model import DepthCompletionNet, ModelConfig
from .student import DEFAULT_STUDENT_WIDTH, BinStudent, StudentConfig, is_student_checkpoint, student_from_checkpoint

LOSSES = {"l1": masked_l1, "l2": masked_l2}
# The loss parts each objective logs (log.csv columns).
LOSS_PARTS = {"completion": ("supervised", "ssi"), "bins-kd": ("supervised", "chamfer", "kd", "relational")}


def pick_device(name: str = "auto") -> torch.device:
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _check(config: TrainConfig) -> None:
    if config.stage not in STAGES:
        raise TrainError(f"unknown stage {config.stage!r}: use one of {', '.join(STAGES)}")
    if config.loss not in LOSSES:
        raise TrainError(f"unknown loss {config.loss!r}: use one of {', '.join(LOSSES)}")
    if config.stage == "finetune" and config.init is None:
        raise TrainError("--stage finetune needs --init CKPT (a pretrained checkpoint, e.g. runs/pretrain/last.pt)")
    if config.steps < 1 or config.batch_size < 1 or min(config.crop) < 1:
        raise TrainError("--steps, --batch-size and --crop must be positive")
    if not 0 <= config.trim < 1 or not 0 <= config.ema < 1:
        raise TrainError("--trim and --ema must lie in [0, 1)")
    if config.objective not in OBJECTIVES:
        raise TrainError(f"unknown objective {config.objective!r}: use one of {', '.join(OBJECTIVES)}")
    if config.student not in STUDENTS:
        raise TrainError(f"unknown student {config.student!r}: use one of {', '.join(STUDENTS)}")
    if config.view_relational and config.objective != "bins-kd":
        raise TrainError("--view-relational distils into a bin student: add --objective bins-kd")
    if config.objective == "bins-kd":
        check_bins(config.bins)
        if not 0 < config.bin_range[0] < config.bin_range[1]:
            raise TrainError(f"--bin-range must be 0 < MIN < MAX metres (got {config.bin_range})")
        if config.temperature <= 0:
            raise TrainError(f"--temperature must be positive (got {config.temperature})")


def compute_loss(config: TrainConfig, outputs, batch: dict) -> tuple[torch.Tensor, dict]:
    """The stage's (or objective's) loss and its parts (floats, for the log)."""
    if config.objective == "bins-kd":
        return bins_kd_loss(config, outputs, batch)
    target = batch["dense"]
    mask = (target > 0).to(target.dtype)
    supervised = multiscale(LOSSES[config.loss], outputs, target, mask)
    if config.stage == "pretrain" or config.ssi_weight == 0:
        return supervised, {"supervised": supervised.item(), "ssi": 0.0}
    ssi_mask = batch["teacher_valid"] * (1 - mask)
    ssi = SSILoss(config.trim, config.gradient_weight)(depth_to_disparity(outputs[0]), batch["teacher"], ssi_mask)
    return supervised + config.ssi_weight * ssi, {"supervised": supervised.item(), "ssi": ssi.item()}


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


def new_model(config: TrainConfig) -> torch.nn.Module:
    """A freshly initialised model for the run's objective."""
    if config.objective == "bins-kd":
        width = config.width or DEFAULT_STUDENT_WIDTH
        low, high = config.bin_range
        return BinStudent(StudentConfig(config.student, width, bins=config.bins, min_depth=low, max_depth=high))
    return DepthCompletionNet(ModelConfig(width=config.width or DEFAULT_WIDTH))


def load_model(checkpoint: dict, path, width: int | None = None, ema: bool = True) -> torch.nn.Module:
    """A checkpoint's model, completion network or bin student."""
    if is_student_checkpoint(checkpoint):
        return student_from_checkpoint(checkpoint, path, width, ema)
    return model_from_checkpoint(checkpoint, path, width, ema)


def predicted_depth(outputs) -> torch.Tensor:
    """The full-resolution depth (B, 1, H, W) of either model's outputs."""
    return outputs["depth"][0] if isinstance(outputs, dict) else outputs[0]


def _as_float(outputs):
    """Depth maps in float32 for the loss (autocast may have made them half)."""
    if isinstance(outputs, dict):
        return {**outputs, "depth": [o.float() for o in outputs["depth"]]}
    return [o.float() for o in outputs]


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
            and _jsonable(saved.get(field.name, field.default)) != _jsonable(getattr(config, field.name))
        ]
        if changed:
            raise TrainError(
                f"{out} holds a run with other options ({'; '.join(changed)}): "
                "use the same options to resume, or another --out"
            )
        return load_model(checkpoint, last, config.width, ema=False), checkpoint
    if config.init is not None:
        return load_model(load_checkpoint(config.init), config.init, config.width), None
    return new_model(config), None


def _jsonable(value):
    return list(value) if isinstance(value, tuple) else value


def train(config: TrainConfig, stop_at: int | None = None, progress: bool = True) -> dict:
    """Train until config.steps (or stop_at, to continue later); returns the last
    logged row. Writes OUT/config.json, OUT/log.csv and OUT/last.pt."""
    _check(config)
    out = Path(config.out)
    urls = data.list_shards(config.shards)
    data.check_shards(urls)
    if config.view_relational:
        data.check_scenes(urls)
    device = pick_device(config.device)
    on_cuda = device.type == "cuda"
    torch.manual_seed(config.seed)
    model, resume = _resolve_start(config, out)
    memory_format = torch.channels_last if on_cuda else torch.contiguous_format
    model = model.to(device, memory_format=memory_format).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, total_steps=config.steps, pct_start=config.warmup, cycle_momentum=False
    )
    ema = EMA(model, config.ema) if config.ema > 0 else None
    amp_dtype = torch.bfloat16 if on_cuda and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=on_cuda and amp_dtype == torch.float16)
    step = 0
    if resume is not None:
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        scaler.load_state_dict(resume["scaler"])
        if ema is not None:
            ema.model.load_state_dict(resume["ema"])
        set_rng_state(resume["rng"])
        step = resume["step"]
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(asdict(config), indent=2) + "\n")

    def save() -> None:
        save_checkpoint(
            out / "last.pt",
            step=step,
            model_config=model.config.to_dict(),
            train_config=asdict(config),
            model=model.state_dict(),
            ema=ema.model.state_dict() if ema else None,
            optimizer=optimizer.state_dict(),
            scheduler=scheduler.state_dict(),
            scaler=scaler.state_dict(),
            rng=rng_state(),
        )

    end = min(config.steps, stop_at) if stop_at is not None else config.steps
    loader = data.train_loader(
        urls,
        config.batch_size,
        config.crop,
        config.seed,
        config.workers,
        step,
        config.shuffle_buffer,
        scenes=config.view_relational,
    )
    log_path = out / "log.csv"
    columns = ["step", "loss", *LOSS_PARTS[config.objective], "lr", "samples_per_s", "elapsed_s"]
    new_log = not log_path.is_file() or resume is None
    row: dict = {}
    with (
        open(log_path, "w" if new_log else "a", newline="") as log_file,
        tqdm(total=config.steps, initial=step, disable=not progress, unit="step", dynamic_ncols=True) as bar,
    ):
        log = csv.DictWriter(log_file, columns)
        if new_log:
            log.writeheader()
        started, window_start, window_samples = time.perf_counter(), time.perf_counter(), 0
        batches = iter(loader)
        try:
            while step < end:
                batch = {name: tensor.to(device, non_blocking=True) for name, tensor in next(batches).items()}
                if config.view_relational:
                    batch = data.flatten_scenes(batch)
                rgb = batch["rgb"].contiguous(memory_format=memory_format)
                sparse = batch["sparse"].contiguous(memory_format=memory_format)
                with torch.autocast(device.type, dtype=amp_dtype, enabled=on_cuda):
                    outputs = model(rgb, sparse)
                loss, parts = compute_loss(config, _as_float(outputs), batch)
                if not torch.isfinite(loss):
                    raise TrainError(f"loss became {loss.item()} at step {step}: lower --lr or check the shards")
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip)
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                if ema is not None:
                    ema.update(model)
                step += 1
                window_samples += len(batch["rgb"])
                bar.update(1)
                if step % config.log_every == 0 or step == end:
                    now = time.perf_counter()
                    row = {
                        "step": step,
                        "loss": f"{loss.item():.6g}",
                        **{name: f"{parts[name]:.6g}" for name in LOSS_PARTS[config.objective]},
                        "lr": f"{scheduler.get_last_lr()[0]:.6g}",
                        "samples_per_s": f"{window_samples / (now - window_start):.2f}",
                        "elapsed_s": f"{now - started:.1f}",
                    }
                    log.writerow(row)
                    log_file.flush()
                    bar.set_postfix(loss=row["loss"], samples_s=row["samples_per_s"])
                    window_start, window_samples = now, 0
                if step % config.save_every == 0 or step == end:
                    save()
        except KeyboardInterrupt:
            save()
            raise
    return row


def evaluate(
    checkpoint_path: str,
    shards: str,
    out: str,
    device_name: str = "auto",
    previews: int = 4,
    use_ema: bool = True,
    progress: bool = True,
) -> dict:
    """KITTI metrics of a checkpoint on every sample of the shards (full size, the
    dense member as ground truth), written to OUT/metrics.json with per-image values,
    and OUT/previews/KEY.png (RGB, prediction, error) for the first `previews`."""
    urls = data.list_shards(shards)
    data.check_shards(urls)
    device = pick_device(device_name)
    checkpoint = load_checkpoint(checkpoint_path)
    model = load_model(checkpoint, checkpoint_path, ema=use_ema).to(device).eval()
    out_dir = Path(out)
    (out_dir / "previews").mkdir(parents=True, exist_ok=True)
    per_image = []
    loader = torch.utils.data.DataLoader(data.eval_stream(urls), batch_size=None)
    with torch.inference_mode():
        for sample in tqdm(loader, disable=not progress, unit="image"):
            prediction = predicted_depth(model(sample["rgb"][None].to(device), sample["sparse"][None].to(device)))
            prediction_m = prediction[0, 0].float().cpu().numpy()
            gt_m = sample["dense"][0].numpy()
            metrics = image_metrics(prediction_m, gt_m)
            if metrics is None:
                continue
            per_image.append({"key": sample["key"], **metrics})
            if len(per_image) <= previews:
                rgb = (sample["rgb"].numpy().transpose(1, 2, 0) * 255).round().astype(np.uint8)
                picture = preview(rgb, prediction_m, gt_m)
                Image.fromarray(picture).save(out_dir / "previews" / f"{sample['key']}.png")
    if not per_image:
        raise TrainError(f"no sample in {shards} has ground truth (dense.png is empty everywhere)")
    result = {
        "checkpoint": str(checkpoint_path),
        "shards": str(shards),
        "step": checkpoint["step"],
        "weights": "ema" if use_ema and checkpoint.get("ema") is not None else "model",
        "images": len(per_image),
        "mean": mean_metrics(per_image),
        "per_image": per_image,
    }
    (out_dir / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


# A perceptually ordered palette (dark blue, blue, green, yellow, red) for depth/error pictures.
_PALETTE = np.array([[20, 20, 80], [40, 90, 200], [60, 180, 90], [240, 220, 60], [220, 40, 30]], np.float32)


def colorize(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """(H, W) values -> (H, W, 3) uint8 along _PALETTE from low to high."""
    position = np.clip((values - low) / max(high - low, 1e-6), 0, 1) * (len(_PALETTE) - 1)
    index = np.minimum(position.astype(int), len(_PALETTE) - 2)
    fraction = (position - index)[..., None]
    return ((1 - fraction) * _PALETTE[index] + fraction * _PALETTE[index + 1]).astype(np.uint8)


def preview(rgb: np.ndarray, prediction_m: np.ndarray, gt_m: np.ndarray) -> np.ndarray:
    """RGB over the prediction (near = red... far = blue, 0-80 m in inverse depth) over
    the absolute error at ground-truth pixels (0 to 2 m, black = no ground truth)."""
    inverse = 1.0 / np.maximum(prediction_m, 1.0)
    depth_picture = colorize(inverse, 1.0 / 80.0, 1.0)
    error = np.abs(prediction_m - gt_m)
    error_picture = colorize(error, 0.0, 2.0)
    error_picture[gt_m <= 0] = 0
    return np.concatenate([rgb, depth_picture, error_picture], axis=0)

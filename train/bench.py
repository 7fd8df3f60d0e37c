"""Training throughput: can the data loader keep up with the model?

- loader: samples/s that one worker decodes, crops and flips (run in-process, which
  is exactly one DataLoader worker's job);
- training: samples/s of forward + backward + AdamW step on batches already on the device,
  per rank and over all ranks (under torchrun the model is wrapped in DDP, so the figure
  includes the gradient all-reduce), and the process's peak memory;
- inference: frames/s at KITTI's 352 x 1216, batch 1.

`ssi_gradient_ratios` (simlidar bench ssi) measures how strongly the fine-tuning SSI term
pulls a pixel next to the supervised L1, by depth range.
"""

from __future__ import annotations

import math
import os
import resource
import sys
import time
from itertools import islice

import torch
import torch.nn.functional as F

from . import data, distributed
from .config import TrainConfig
from .factory import new_model, pick_device
from .losses import masked_l1
from .model import DepthCompletionNet, ModelConfig, parameter_count
from .objectives import as_float32, compute_loss, finetune_ssi
from .shards import ShardIndex, index_shards, list_shards

KITTI_HW = (352, 1216)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def loader_rate(index: ShardIndex, crop_hw: tuple[int, int], samples: int) -> float:
    """Samples/s of one loader worker (after a warm-up sample)."""
    stream = iter(data.TrainStream(index, 1, crop_hw, seed=0, shuffle_buffer=1))
    next(stream)
    started = time.perf_counter()
    for _ in islice(stream, samples):
        pass
    return samples / (time.perf_counter() - started)


def training_rate(
    index: ShardIndex,
    config: TrainConfig,
    steps: int,
    device: torch.device,
    ranks: distributed.Ranks | None = None,
) -> tuple[float, torch.nn.Module]:
    """Samples/s of this rank's training steps of the run's model and objective (config:
    width, batch size, crop, objective) on one real batch kept on the device, made as the
    loop makes them (AMP and channels-last on CUDA; DDP under torchrun, so the figure
    includes the gradient all-reduce), after two warm-up steps; and the model as trained."""
    ranks = ranks or distributed.Ranks()
    stream = data.TrainStream(
        index, config.batch_size, config.crop, seed=0, shuffle_buffer=1, rank=ranks.rank, world_size=ranks.world_size
    )
    batch = data.collate(list(islice(iter(stream), config.batch_size)))
    batch = {name: value.to(device) for name, value in batch.items() if isinstance(value, torch.Tensor)}
    on_cuda = device.type == "cuda"
    memory_format = torch.channels_last if on_cuda else torch.contiguous_format
    model = new_model(config).to(device, memory_format=memory_format).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    trained = distributed.wrap(model, ranks, device)
    rgb, sparse = (batch[name].contiguous(memory_format=memory_format) for name in ("rgb", "sparse"))
    amp_dtype = torch.bfloat16 if on_cuda and torch.cuda.is_bf16_supported() else torch.float16

    def step() -> None:
        with torch.autocast(device.type, dtype=amp_dtype, enabled=on_cuda):
            outputs = trained(rgb, sparse)
        loss, _ = compute_loss(config, as_float32(outputs), batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(2):
        step()
    _synchronize(device)
    started = time.perf_counter()
    for _ in range(steps):
        step()
    _synchronize(device)
    return steps * config.batch_size / (time.perf_counter() - started), model


@torch.inference_mode()
def inference_fps(width: int, device: torch.device, frames: int = 10) -> float:
    on_cuda = device.type == "cuda"
    model = DepthCompletionNet(ModelConfig(width)).to(device).eval()
    rgb = torch.rand(1, 3, *KITTI_HW, device=device)
    sparse = torch.rand(1, 1, *KITTI_HW, device=device) * 80
    with torch.autocast(device.type, dtype=torch.float16, enabled=on_cuda):
        for _ in range(2):
            model(rgb, sparse)
        _synchronize(device)
        started = time.perf_counter()
        for _ in range(frames):
            model(rgb, sparse)
        _synchronize(device)
    return frames / (time.perf_counter() - started)


def peak_memory_gb() -> float:
    """This process's peak resident memory (GB; ru_maxrss is in KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1e9 if sys.platform == "darwin" else peak * 1024 / 1e9


def run_bench(shards, width, batch_size, crop_hw, steps, samples, device_name="auto"):
    """The bench's report, one line at a time as each figure is measured (rank 0's lines
    only, under torchrun: `torchrun --nproc_per_node N --no-python simlidar bench train`)."""
    index = index_shards(list_shards(shards))
    device = pick_device(device_name, int(os.environ.get("LOCAL_RANK", "0")))
    ranks = distributed.setup(device.type == "cuda")
    main = ranks.is_main
    try:
        parameters = parameter_count(DepthCompletionNet(ModelConfig(width)))
        threads = torch.get_num_threads()
        if main:
            yield f"device {device} ({threads} CPU threads); model width {width}: {parameters / 1e6:.2f} M parameters"
        per_worker = loader_rate(index, crop_hw, samples)
        if main:
            yield f"loader:    {per_worker:8.1f} samples/s per worker (decode + crop + flip)"
        config = TrainConfig(shards="", width=width, batch_size=batch_size, crop=crop_hw)
        per_rank, model = training_rate(index, config, steps, device, ranks)
        total = distributed.mean_over_ranks([per_rank], device)[0] * ranks.world_size
        spread = distributed.parameter_spread(model)
        if main:
            shape = (
                f"batch {batch_size} per rank, crop {crop_hw[0]}x{crop_hw[1]}, peak memory {peak_memory_gb():.2f} GB"
            )
            yield f"training:  {per_rank:8.1f} samples/s per rank ({shape})"
            yield f"training:  {total:8.1f} samples/s over {ranks.world_size} rank(s)"
            if ranks.world_size > 1:
                agree = "yes" if spread == 0 else "NO"
                yield f"ranks agree: {agree} (largest difference of a weight between ranks: {spread:.3g})"
            yield f"workers needed per rank to keep up: {math.ceil(per_rank / per_worker)}"
            yield f"inference: {inference_fps(width, device):8.1f} frames/s at {KITTI_HW[0]}x{KITTI_HW[1]}, batch 1"
    finally:
        distributed.teardown()


# Depth ranges (m) of the SSI-to-L1 gradient comparison.
DEPTH_RANGES = ((3.0, 10.0), (10.0, 30.0), (30.0, 90.0))


def ssi_gradient_ratios(shards: str, crop_hw: tuple[int, int], samples: int, ssi_weight: float, trim: float):
    """How hard fine-tuning's SSI term pulls a pixel next to the supervised L1, by depth.
    On generated samples, fine-tuning is imitated: the LiDAR points are the ground truth,
    the teacher's relative disparity the SSI target, and the prediction the dense depth
    off by a smooth +-10 % field. Yields lines: per depth range, the mean |dL/d depth| of
    a pixel with ground truth (L1) and of one without (ssi_weight x SSI), and their ratio."""
    index = index_shards(list_shards(shards))
    stream = data.TrainStream(index, samples, crop_hw, seed=0, shuffle_buffer=1)
    batch = data.collate(list(islice(iter(stream), samples)))
    generator = torch.Generator().manual_seed(0)
    field = F.interpolate(torch.rand(samples, 1, 4, 8, generator=generator), size=crop_hw, mode="bilinear")
    prediction = (batch["dense"].clamp(min=1.0) * (0.9 + 0.2 * field)).requires_grad_()
    ground_truth = {**batch, "dense": batch["sparse"]}
    gt_mask = (batch["sparse"] > 0).float()
    (l1_gradient,) = torch.autograd.grad(masked_l1(prediction, batch["sparse"], gt_mask), prediction)
    config = TrainConfig(shards=shards, stage="finetune", ssi_weight=ssi_weight, trim=trim)
    (ssi_gradient,) = torch.autograd.grad(ssi_weight * finetune_ssi(config, prediction, ground_truth), prediction)
    depth = batch["dense"]
    yield f"{samples} samples, crop {crop_hw[0]}x{crop_hw[1]}; SSI weight {ssi_weight}, trim {trim}"
    yield f"{'depth (m)':>10s} {'L1 |grad|':>11s} {'SSI |grad|':>11s} {'SSI / L1':>9s}"
    for low, high in DEPTH_RANGES:
        in_range = (depth >= low) & (depth < high)
        l1 = l1_gradient[in_range & (gt_mask > 0)].abs()
        ssi = ssi_gradient[in_range & (gt_mask == 0) & (ssi_gradient != 0)].abs()
        if len(l1) and len(ssi):
            l1_mean, ssi_mean = l1.mean().item(), ssi.mean().item()
            yield f"{f'{low:g}-{high:g}':>10s} {l1_mean:11.3e} {ssi_mean:11.3e} {ssi_mean / l1_mean:9.3f}"
        else:
            yield f"{f'{low:g}-{high:g}':>10s} {'(no pixels)':>11s}"


# DA-V2 takes sides that are multiples of its 14-pixel patches: a KITTI-like frame.
STUDENT_BENCH_HW = (350, 1218)


def depth_anything_v2_small() -> torch.nn.Module:
    """The Depth Anything V2 small architecture (ViT-S/14 DINOv2 backbone, DPT head; V2
    takes the backbone's layers 3, 6, 9 and 12) with random weights: enough for timing."""
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation

    backbone = {
        "model_type": "dinov2",
        "image_size": 518,
        "hidden_size": 384,
        "num_attention_heads": 6,
        "out_indices": [3, 6, 9, 12],
        "reshape_hidden_states": False,
    }
    return DepthAnythingForDepthEstimation(DepthAnythingConfig(backbone_config=backbone))


@torch.inference_mode()
def frames_per_second(forward, device: torch.device, frames: int) -> float:
    """Frames/s of forward() (batch 1) after two warm-up calls."""
    on_cuda = device.type == "cuda"
    with torch.autocast(device.type, dtype=torch.float16, enabled=on_cuda):
        for _ in range(2):
            forward()
        _synchronize(device)
        started = time.perf_counter()
        for _ in range(frames):
            forward()
        _synchronize(device)
    return frames / (time.perf_counter() - started)


def run_student_bench(width: int, bins: int, frames: int, device_name: str = "auto"):
    """Parameters and frames/s of both bin students and of Depth Anything V2 small, side
    by side at STUDENT_BENCH_HW, batch 1, one line at a time."""
    from .student import BinStudent, StudentConfig

    device = pick_device(device_name)
    height, width_px = STUDENT_BENCH_HW
    rgb = torch.rand(1, 3, height, width_px, device=device)
    sparse = torch.rand(1, 1, height, width_px, device=device) * 80
    yield f"device {device} ({torch.get_num_threads()} CPU threads); {height}x{width_px}, batch 1, {frames} frames"
    yield f"{'model':40s} {'params (M)':>10s} {'frames/s':>9s}"
    for student in ("mono", "completion"):
        model = BinStudent(StudentConfig(student, width, bins=bins)).to(device).eval()
        fps = frames_per_second(lambda model=model: model(rgb, sparse), device, frames)
        name = f"student {student} (width {width}, {bins} bins)"
        yield f"{name:40s} {parameter_count(model) / 1e6:10.2f} {fps:9.2f}"
    teacher = depth_anything_v2_small().to(device).eval()
    fps = frames_per_second(lambda: teacher(pixel_values=rgb), device, frames)
    yield f"{'Depth Anything V2 small (random)':40s} {parameter_count(teacher) / 1e6:10.2f} {fps:9.2f}"

"""Training throughput: can the data loader keep up with the model?

- loader: samples/s that one worker decodes, crops and flips (run in-process, which
  is exactly one DataLoader worker's job);
- training: samples/s of forward + backward + AdamW step on batches already on the device;
- inference: frames/s at KITTI's 352 x 1216, batch 1.
"""

from __future__ import annotations

import math
import time
from itertools import islice

import torch

from . import data
from .config import TrainConfig
from .loop import compute_loss, pick_device
from .model import DepthCompletionNet, ModelConfig, parameter_count

KITTI_HW = (352, 1216)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def loader_rate(urls: list[str], crop_hw: tuple[int, int], samples: int) -> float:
    """Samples/s of one loader worker (after a warm-up sample)."""
    stream = iter(data.train_stream(urls, 1, crop_hw, seed=0, shuffle_buffer=1))
    next(stream)
    started = time.perf_counter()
    for _ in islice(stream, samples):
        pass
    return samples / (time.perf_counter() - started)


def training_rate(urls, width, batch_size, crop_hw, steps, device) -> float:
    """Samples/s of training steps on one real batch kept on the device."""
    stream = data.train_stream(urls, batch_size, crop_hw, seed=0, shuffle_buffer=1)
    batch = torch.utils.data.default_collate(list(islice(iter(stream), batch_size)))
    batch = {name: tensor.to(device) for name, tensor in batch.items()}
    on_cuda = device.type == "cuda"
    memory_format = torch.channels_last if on_cuda else torch.contiguous_format
    model = DepthCompletionNet(ModelConfig(width)).to(device, memory_format=memory_format).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    config = TrainConfig(shards="")
    rgb, sparse = (batch[name].contiguous(memory_format=memory_format) for name in ("rgb", "sparse"))
    amp_dtype = torch.bfloat16 if on_cuda and torch.cuda.is_bf16_supported() else torch.float16

    def step() -> None:
        with torch.autocast(device.type, dtype=amp_dtype, enabled=on_cuda):
            outputs = model(rgb, sparse)
        loss, _ = compute_loss(config, [o.float() for o in outputs], batch)
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
    return steps * batch_size / (time.perf_counter() - started)


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


def run_bench(shards, width, batch_size, crop_hw, steps, samples, device_name="auto"):
    """The bench's report, one line at a time as each figure is measured."""
    urls = data.list_shards(shards)
    data.check_shards(urls)
    device = pick_device(device_name)
    parameters = parameter_count(DepthCompletionNet(ModelConfig(width)))
    threads = torch.get_num_threads()
    yield f"device {device} ({threads} CPU threads); model width {width}: {parameters / 1e6:.2f} M parameters"
    per_worker = loader_rate(urls, crop_hw, samples)
    yield f"loader:    {per_worker:8.1f} samples/s per worker (decode + crop + flip)"
    training = training_rate(urls, width, batch_size, crop_hw, steps, device)
    yield f"training:  {training:8.1f} samples/s (batch {batch_size}, crop {crop_hw[0]}x{crop_hw[1]})"
    yield f"workers needed to keep up: {math.ceil(training / per_worker)}"
    yield f"inference: {inference_fps(width, device):8.1f} frames/s at {KITTI_HW[0]}x{KITTI_HW[1]}, batch 1"


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

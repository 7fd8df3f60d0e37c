"""Which model a run or a checkpoint holds, and the device it runs on."""

from __future__ import annotations

import torch

from .checkpoint import model_from_checkpoint
from .config import DEFAULT_WIDTH, TrainConfig
from .model import DepthCompletionNet, ModelConfig
from .student import DEFAULT_STUDENT_WIDTH, BinStudent, StudentConfig, is_student_checkpoint, student_from_checkpoint


def pick_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """auto: this rank's GPU (cuda:LOCAL_RANK), then mps, then the CPU; else the named
    device, a bare "cuda" being this rank's GPU too."""
    if name != "auto":
        device = torch.device(name)
        return torch.device("cuda", local_rank) if device.type == "cuda" and device.index is None else device
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank)
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


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

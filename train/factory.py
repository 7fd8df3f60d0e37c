"""Which model a run or a checkpoint holds, and the device it runs on."""

from __future__ import annotations

import torch

from .checkpoint import model_from_checkpoint
from .config import DEFAULT_WIDTH, TrainConfig
from .errors import TrainError
from .model import DepthCompletionNet, ModelConfig
from .student import DEFAULT_STUDENT_WIDTH, BinStudent, StudentConfig, is_student_checkpoint, student_from_checkpoint

DEVICE_CHOICES = "use auto, cpu, cuda, cuda:N or mps"


def pick_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """auto: this rank's GPU (cuda:LOCAL_RANK), then mps, then the CPU; else the named
    device, a bare "cuda" being this rank's GPU too. A device this torch or machine does
    not have is a one-line error naming --device."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank)
        return torch.device("mps") if torch.backends.mps.is_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise TrainError(f"--device {name!r} is not a device: {DEVICE_CHOICES}") from None
    if device.type == "cuda":
        return _cuda_device(name, device.index if device.index is not None else local_rank)
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise TrainError(f"--device {name}: this torch or machine has no MPS (Apple GPU); pass --device cpu")
    if device.type not in ("cpu", "mps"):
        raise TrainError(f"--device {name} cannot train or evaluate: {DEVICE_CHOICES}")
    return device


def _cuda_device(name: str, index: int) -> torch.device:
    if torch.version.cuda is None and not torch.cuda.is_available():
        raise TrainError(
            f"--device {name}: this torch ({torch.__version__}) is a CPU build; pass --device cpu, or install a "
            "CUDA build of torch (`make install TORCH=` after installing it)"
        )
    if not torch.cuda.is_available():
        raise TrainError(f"--device {name}: no GPU is visible (check the driver and CUDA_VISIBLE_DEVICES)")
    if index >= torch.cuda.device_count():
        raise TrainError(f"--device {name}: GPU {index} does not exist, this machine shows {torch.cuda.device_count()}")
    return torch.device("cuda", index)


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

"""Checkpoints: everything a run needs to resume bit for bit, loadable with
`torch.load(..., weights_only=True)` (plain dicts, lists, numbers and tensors only)."""

from __future__ import annotations

import copy
import os
import pickle
import warnings
from pathlib import Path

import torch
from torch import nn

from .errors import TrainError
from .model import DepthCompletionNet, ModelConfig
from .schedule import ema_decay

FORMAT = "simlidar-depth-completion/1"


class EMA:
    """An exponential moving average of a model's weights (buffers are copied), its decay
    warmed up (schedule.ema_decay) so that it follows the early, fast-moving weights."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """Fold in the weights after optimizer step `step` (0-based)."""
        decay = ema_decay(step, self.decay)
        for average, current in zip(self.model.parameters(), model.parameters(), strict=True):
            average.lerp_(current, 1.0 - decay)
        for average, current in zip(self.model.buffers(), model.buffers(), strict=True):
            average.copy_(current)


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, **state) -> None:
    """Write {format, **state} to path atomically (temporary name, then rename), so a
    run killed while saving keeps its previous checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    torch.save({"format": FORMAT, **state}, temporary)
    os.replace(temporary, path)


# Why torch.load failed, in our words: its own messages advise loading with
# weights_only=False, which would run whatever code the file holds.
LOAD_FAILURES = {
    pickle.UnpicklingError: "it holds objects other than tensors and plain data, or is no torch file at all",
    RuntimeError: "it is truncated or damaged",
    EOFError: "it is empty or truncated",
    OSError: "it cannot be read",
}
NOT_A_TORCH_FILE = "it is no torch file at all"


def load_checkpoint(path: str | Path, advice: str = "pass a last.pt or best.pt that `simlidar train` wrote") -> dict:
    """A checkpoint's dict, on the CPU, loaded with weights_only=True; advice: what the
    error for a file that is no checkpoint tells the user to do."""
    path = Path(path)
    if not path.is_file():
        raise TrainError(f"no checkpoint at {path}: pass the .pt file that `simlidar train` wrote (OUT/last.pt)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # weights_only's unpickler meets garbage with any error (KeyError, ...)
        reason = next((why for kind, why in LOAD_FAILURES.items() if isinstance(error, kind)), NOT_A_TORCH_FILE)
        raise TrainError(f"{path} is not a loadable simlidar checkpoint ({reason}): {advice}") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise TrainError(f"{path} is not a simlidar checkpoint (expected format {FORMAT}): {advice}")
    return checkpoint


def model_from_checkpoint(checkpoint: dict, path: str | Path, width: int | None = None, ema: bool = True):
    """The checkpoint's model with its EMA weights when it has them and ema is set.
    width: the width the caller expects (None = take the checkpoint's)."""
    config = ModelConfig(**checkpoint["model_config"])
    if width is not None and width != config.width:
        raise TrainError(
            f"{path} holds a model of width {config.width}, not {width}: pass --width {config.width} "
            f"or a checkpoint of width {width}"
        )
    return load_weights(DepthCompletionNet(config), checkpoint, path, ema, f"the model of width {config.width}")


def load_weights(model: nn.Module, checkpoint: dict, path: str | Path, ema: bool, what: str) -> nn.Module:
    """`model` with the checkpoint's EMA weights when it has them and ema is set, else
    its trained weights; a mismatch is a one-line error naming `what` was expected."""
    weights = checkpoint["ema"] if ema and checkpoint.get("ema") is not None else checkpoint["model"]
    try:
        model.load_state_dict(weights)
    except RuntimeError:
        raise TrainError(f"{path}: weights do not match {what}; is it corrupt?") from None
    return model

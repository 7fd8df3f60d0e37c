"""What travels between a model teacher's CPU steps and its forward, which may run in
another process (a GPU actor): the model inputs of a batch, made where the photos are,
and the raw outputs at the model's resolution, finished where the photos are.

A photo's model input is sent as the uint8 levels of the processor's resized image
(3 bytes a pixel, a quarter of its float32 pixel values) with a table of the value the
processor gives each channel's level: where the processor's steps after the resize treat
each value alone (rescale, normalise), looking the levels up gives its numbers bit for bit,
on the model's device. Other processors' pixel values travel as float32, as they give them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

# Processors whose steps after the resize map each channel value alone (rescale, then
# normalise; no padding or cropping when do_pad and do_center_crop are off), as read in
# transformers' source: DPT's, used by Depth Anything and Intel's DPT models.
PER_LEVEL_PROCESSORS = ("DPTImageProcessor", "DPTImageProcessorPil")
LEVELS = 256
# The model outputs a depth processor's post-processing reads.
OUTPUT_KEYS = ("predicted_depth", "field_of_view")


@dataclass
class ModelBatch:
    """Same-size images as the model takes them. pixels: (B, 3, h, w) at the model's input
    size (not the photos'): uint8 levels of the processor's resized images when `levels` is
    given, else float32 pixel values as the processor gives them. levels: (3, 256) float32,
    the processor's value for each channel's level."""

    pixels: np.ndarray
    levels: np.ndarray | None = None

    def __post_init__(self):
        if self.pixels.ndim != 4:
            raise ValueError(f"pixels must be (B, C, h, w), got shape {self.pixels.shape}")
        if self.levels is None and self.pixels.dtype != np.float32:
            raise ValueError(f"pixels without levels must be float32, got {self.pixels.dtype}")
        if self.levels is not None and (
            self.pixels.dtype != np.uint8 or self.levels.shape != (self.pixels.shape[1], LEVELS)
        ):
            raise ValueError(
                f"levels {self.levels.shape} need uint8 pixels with as many channels, got "
                f"{self.pixels.dtype} {self.pixels.shape}"
            )


class ModelRunner(Protocol):
    """Where a model teacher's forward runs: its own model in this process, or a GPU actor."""

    @property
    def precision(self) -> str:
        """What the forward computes in (float32, float16, bfloat16); part of the cache key."""
        ...

    def run_batches(self, batches: list[ModelBatch]) -> list[dict[str, np.ndarray]]:
        """Each batch's raw outputs (OUTPUT_KEYS it has: (B, h, w) depth, (B,) field of view)."""
        ...


def level_table(processor) -> np.ndarray | None:
    """(3, 256) float32: what `processor` makes of each channel's uint8 level after its
    resize, computed by the processor itself on a ramp of every level; None when its steps
    after the resize are not per value (see PER_LEVEL_PROCESSORS)."""
    if (
        type(processor).__name__ not in PER_LEVEL_PROCESSORS
        or getattr(processor, "do_pad", False)
        or getattr(processor, "do_center_crop", False)
    ):
        return None
    ramp = np.repeat(np.arange(LEVELS, dtype=np.uint8)[None, :, None], 3, axis=2)
    ramp = np.ascontiguousarray(np.broadcast_to(ramp, (2, LEVELS, 3)))  # 2 rows: not read as channels-first
    values = processor(images=ramp, do_resize=False, return_tensors="np", input_data_format="channels_last")
    return np.ascontiguousarray(values["pixel_values"][0, :, 0, :], dtype=np.float32)


def model_input(batch: ModelBatch, device: torch.device) -> torch.Tensor:
    """(B, 3, h, w) float32 pixel values of `batch` on `device`: its levels looked up in its
    table (on the CPU with numpy, several times faster there than torch's gather)."""
    if batch.levels is None:
        return torch.tensor(batch.pixels, device=device)
    if device.type == "cpu":
        channels = [np.take(table, batch.pixels[:, channel]) for channel, table in enumerate(batch.levels)]
        return torch.from_numpy(np.stack(channels, axis=1))
    return look_up(torch.tensor(batch.pixels, device=device), torch.tensor(batch.levels, device=device))


def look_up(pixels: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """pixels: (B, C, h, w) uint8; levels: (C, 256) float32, on one device. Each pixel's value
    in its channel's table: (B, C, h, w) float32."""
    if pixels.dtype != torch.uint8 or pixels.ndim != 4 or levels.shape != (pixels.shape[1], LEVELS):
        raise ValueError(f"need (B, C, h, w) uint8 pixels and (C, 256) levels, got {pixels.shape} and {levels.shape}")
    channels = torch.arange(levels.shape[0], device=pixels.device)[None, :, None, None]
    return levels[channels, pixels.long()]


def outputs_to_host(outputs) -> dict[str, np.ndarray]:
    """A depth model's outputs as numpy on the CPU: float16 as an fp16 forward gives them
    (half the bytes back; widening is exact), any other type widened to float32."""
    host = {}
    for key in OUTPUT_KEYS:
        value = getattr(outputs, key, None)
        if value is not None:
            value = value.detach()
            host[key] = (value if value.dtype in (torch.float16, torch.float32) else value.float()).cpu().numpy()
    return host

"""`simlidar bench teacher --teacher NAME`: teacher images per second per batch size, for the
pipeline's teacher stage (preprocess, forward, resize back, relative-to-metric) and
for the bare model forward on ready tensors, and their ratio."""

from __future__ import annotations

import tempfile
import time
from functools import partial
from pathlib import Path

import click
import numpy as np
import torch
from simlidar.teachers import DepthConversion, TeacherInput, load_teacher, to_metric
from simlidar.teachers.hf import HFModel, HFTeacher
from simlidar.teachers.registry import HF_PREFIX, is_hf_name

# Depth Anything V2's published preprocessing (its preprocessor_config.json): the short
# side to 518 px, a multiple of the 14-pixel patches, bicubic.
DA_V2_PROCESSOR = {"keep_aspect_ratio": True, "ensure_multiple_of": 14, "resample": 3, "do_pad": False}
DA_V2_INPUT_PX = 518
# The published configs of depth-anything/Depth-Anything-V2-{Small,Base}-hf: a DINOv2
# backbone (ViT-S/14, ViT-B/14; 12 layers, V2 taking layers 3, 6, 9 and 12) and a DPT head.
DA_V2_ARCHITECTURES = {
    "depth-anything-v2-small": {"hidden": 384, "heads": 6, "fusion": 64, "neck": (48, 96, 192, 384)},
    "depth-anything-v2-base": {"hidden": 768, "heads": 12, "fusion": 128, "neck": (96, 192, 384, 768)},
}


def depth_anything_v2_config(name: str):
    """transformers' DepthAnythingConfig of the published model `name` (a key of DA_V2_ARCHITECTURES)."""
    from transformers import DepthAnythingConfig

    published = DA_V2_ARCHITECTURES[name]
    backbone = {
        "model_type": "dinov2",
        "image_size": DA_V2_INPUT_PX,
        "patch_size": 14,
        "hidden_size": published["hidden"],
        "num_attention_heads": published["heads"],
        "out_indices": [3, 6, 9, 12],
        "reshape_hidden_states": False,
    }
    return DepthAnythingConfig(
        backbone_config=backbone,
        reassemble_hidden_size=published["hidden"],
        neck_hidden_sizes=list(published["neck"]),
        fusion_hidden_size=published["fusion"],
    )


def random_depth_anything_v2(name: str, folder: Path, input_px: int = DA_V2_INPUT_PX) -> Path:
    """Save the published architecture of `name` (see DA_V2_ARCHITECTURES) with random
    weights and its processor (short side to `input_px`, 518 as published) into
    `folder`, for timing without downloading the weights: a forward costs the same
    whatever the weights."""
    from transformers import DepthAnythingForDepthEstimation, DPTImageProcessorPil
    from transformers.utils import logging

    logging.disable_progress_bar()
    torch.manual_seed(0)
    DepthAnythingForDepthEstimation(depth_anything_v2_config(name)).save_pretrained(folder)
    size = {"height": input_px, "width": input_px}
    DPTImageProcessorPil(size=size, **DA_V2_PROCESSOR).save_pretrained(folder)
    return folder


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def bench_teacher(
    teacher, batch_sizes: list[int], image_size: tuple[int, int], repeats: int, seed: int = 0
) -> list[dict]:
    """Per batch size: median images/s of the pipeline's teacher stage and of the bare
    forward on the same images (H, W = image_size), after one warm-up of each."""
    rng = np.random.default_rng(seed)
    height, width = image_size
    conversion = DepthConversion()
    rows = []
    for batch_size in batch_sizes:
        teacher.batch_size = batch_size
        batch = [
            TeacherInput(Path(f"bench{i}.jpg"), rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
            for i in range(batch_size)
        ]
        pixel_values = torch.cat([teacher.preprocess(item.rgb) for item in batch])
        rows.append(
            {
                "batch_size": batch_size,
                "input": "x".join(str(side) for side in pixel_values.shape[-2:][::-1]),
                "stage_ips": batch_size / _median_seconds(partial(_stage, teacher, batch, conversion), repeats),
                "bare_ips": bare_images_per_second(teacher.runner, pixel_values, repeats),
            }
        )
    return rows


def _stage(teacher, batch: list[TeacherInput], conversion: DepthConversion) -> None:
    for prediction in teacher.predict(batch):
        to_metric(prediction, conversion, np.random.default_rng(0))


def bare_images_per_second(model: HFModel, pixel_values: torch.Tensor, repeats: int) -> float:
    """Images/s of a teacher's bare forward on pixel_values (B, 3, h, w), already on its
    device: the median of `repeats` runs after a warm-up, each waiting for the device."""
    return len(pixel_values) / _median_seconds(partial(_bare, model, pixel_values), repeats)


def _bare(model: HFModel, pixel_values: torch.Tensor) -> None:
    model.forward(pixel_values)
    _synchronize(model.device)


def _median_seconds(function, repeats: int) -> float:
    function()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - start)
    return float(np.median(seconds))


def print_teacher_bench(
    name: str, batch_sizes: str, random_weights: bool, device: str, dtype: str, image_size: str, repeats: int
) -> None:
    try:
        sizes = [int(part) for part in batch_sizes.split(",")]
        width, height = (int(part) for part in image_size.lower().split("x"))
    except ValueError:
        raise click.BadParameter("--batch-sizes takes N,N,... and --image-size WxH") from None
    if not sizes or min(sizes) < 1 or min(width, height) < 8:
        raise click.BadParameter("batch sizes must be >= 1 and the image at least 8x8")
    with tempfile.TemporaryDirectory() as scratch:
        if random_weights:
            if name not in DA_V2_ARCHITECTURES:
                raise click.BadParameter(f"--random-weights builds {' and '.join(DA_V2_ARCHITECTURES)} only")
            folder = random_depth_anything_v2(name, Path(scratch))
            teacher = load_teacher(f"{HF_PREFIX}{folder}", output="disparity", device=device, dtype=dtype)
            label = f"{name} architecture, random weights"
        else:
            output = "disparity" if is_hf_name(name) else None  # timing does not depend on it
            teacher = load_teacher(name, output=output, device=device, dtype=dtype)
            label = f"{name} @ {teacher.revision}"
        if not isinstance(teacher, HFTeacher):
            raise click.BadParameter(f"{name} is not a model teacher; nothing to time")
        model = teacher.runner
        precision = str(model.amp_dtype).replace("torch.", "") if model.amp_dtype else "fp32"
        click.echo(f"teacher: {label}; device {model.device}, {precision}; photos {width}x{height}")
        click.echo(f"{'batch':>6}{'model input':>13}{'stage img/s':>13}{'bare img/s':>12}{'stage/bare':>12}")
        for row in bench_teacher(teacher, sizes, (height, width), repeats):
            click.echo(
                f"{row['batch_size']:>6}{row['input']:>13}{row['stage_ips']:>13.2f}{row['bare_ips']:>12.2f}"
                f"{row['stage_ips'] / row['bare_ips']:>12.1%}"
            )
    click.echo(
        "stage: what generate's teacher stage does per batch (model preprocessing, forward, resize to the photo, "
        "relative-to-metric); bare: the model forward alone on ready tensors on the device; medians of "
        f"{repeats} runs after a warm-up"
    )

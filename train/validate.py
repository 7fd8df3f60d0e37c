"""Evaluation: KITTI metrics of a model on every sample of some shards (full size, the
dense member as ground truth), for `simlidar eval` and for validation during training.
Also the preview pictures (RGB, prediction, error)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from . import data
from .checkpoint import load_checkpoint
from .errors import TrainError
from .factory import load_model, pick_device, predicted_depth
from .metrics import image_metrics, mean_metrics
from .shards import index_shards, list_shards


@torch.inference_mode()
def model_metrics(
    model: torch.nn.Module, urls: list[str], device: torch.device, previews: int = 0, progress=False, on_bad=None
):
    """(per-image metrics [{key, metric: value}], preview pictures [(key, (3H, W, 3) uint8)]
    of the first `previews` samples) of `model` on every sample with ground truth; a
    sample that does not decode is left out (on_bad receives its record, see eval_stream)."""
    was_training = model.training
    model.eval()
    per_image, pictures = [], []
    loader = torch.utils.data.DataLoader(data.eval_stream(urls, on_bad), batch_size=None)
    for sample in tqdm(loader, disable=not progress, unit="image"):
        prediction = predicted_depth(model(sample["rgb"][None].to(device), sample["sparse"][None].to(device)))
        prediction_m = prediction[0, 0].float().cpu().numpy()
        gt_m = sample["dense"][0].numpy()
        metrics = image_metrics(prediction_m, gt_m)
        if metrics is None:
            continue
        per_image.append({"key": sample["key"], **metrics})
        if len(pictures) < previews:
            rgb = (sample["rgb"].numpy().transpose(1, 2, 0) * 255).round().astype(np.uint8)
            pictures.append((sample["key"], preview(rgb, prediction_m, gt_m)))
    model.train(was_training)
    return per_image, pictures


def scan_samples(urls: list[str]) -> tuple[list[dict], int, int]:
    """Decode every sample of the shards once: (records of those that do not decode
    ({"shard", "key", "reason"}), samples that do, those of them with ground truth)."""
    bad, samples, with_ground_truth = [], 0, 0
    for sample in data.eval_stream(urls, on_bad=bad.append):
        samples += 1
        with_ground_truth += bool((sample["dense"] > 0).any())
    return bad, samples, with_ground_truth


def evaluate(
    checkpoint_path: str,
    shards: str,
    out: str,
    device_name: str = "auto",
    previews: int = 4,
    use_ema: bool = True,
    progress: bool = True,
) -> dict:
    """KITTI metrics of a checkpoint on every sample of the shards, written to
    OUT/metrics.json with per-image values and the samples skipped (they do not decode),
    and OUT/previews/KEY.png for the first `previews` (the previews of an earlier
    evaluation into OUT are removed: the folder shows one evaluation)."""
    urls = list_shards(shards)
    index_shards(urls)
    device = pick_device(device_name)
    checkpoint = load_checkpoint(checkpoint_path)
    model = load_model(checkpoint, checkpoint_path, ema=use_ema).to(device)
    skipped: list[dict] = []
    per_image, pictures = model_metrics(model, urls, device, previews, progress, skipped.append)
    if not per_image:
        raise TrainError(f"no sample in {shards} has ground truth (dense.png is empty everywhere, or none decodes)")
    out_dir = Path(out)
    (out_dir / "previews").mkdir(parents=True, exist_ok=True)
    for earlier in (out_dir / "previews").glob("*.png"):
        earlier.unlink()
    for key, picture in pictures:
        Image.fromarray(picture).save(out_dir / "previews" / f"{key}.png")
    result = {
        "checkpoint": str(checkpoint_path),
        "shards": str(shards),
        "step": checkpoint["step"],
        "weights": "ema" if use_ema and checkpoint.get("ema") is not None else "model",
        "images": len(per_image),
        "mean": mean_metrics(per_image),
        "skipped": skipped,
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

"""Evaluation: KITTI metrics of a model on every sample of some shards (full size, the
dense member as ground truth), for `simlidar eval` and for validation during training.
Also the preview pictures (RGB, prediction, ground truth, error), drawn as every simlidar
picture is (pipeline/output/pictures.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from simlidar.pipeline.output import pictures
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
        prediction_m = predict_depth(model, sample["rgb"], sample["sparse"], device)
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


@torch.inference_mode()
def predict_depth(model: torch.nn.Module, rgb: torch.Tensor, sparse: torch.Tensor, device: torch.device) -> np.ndarray:
    """The (H, W) float32 depth in metres `model` (in eval mode) predicts from rgb (3, H, W) in
    0..1 and sparse (1, H, W) metres (0 = none): what `eval` scores and `predict` writes."""
    if rgb.shape[0] != 3 or sparse.shape != (1, *rgb.shape[1:]):
        raise ValueError(f"rgb must be (3, H, W) and sparse (1, H, W), got {tuple(rgb.shape)}, {tuple(sparse.shape)}")
    prediction = predicted_depth(model(rgb[None].to(device), sparse[None].to(device)))
    return prediction[0, 0].float().cpu().numpy()


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


ERROR_SCALE_M = 2.0
_TITLE_BAND, _MARGIN, _BAR = 24, 10, 110


def preview(
    rgb: np.ndarray, prediction_m: np.ndarray, gt_m: np.ndarray | None = None, sparse_m: np.ndarray | None = None
) -> np.ndarray:
    """RGB (H, W, 3) uint8 [over the sparse input over the dimmed RGB] over the prediction
    [and the ground truth] (H, W) m on one depth scale [over the absolute error where there
    is ground truth (0 to ERROR_SCALE_M)], each titled with its colour bar: an (H', W', 3)
    uint8 picture. The depth scale is the ground truth's, else the sparse input's (measured),
    else the prediction's."""
    height, width = prediction_m.shape
    measured = next((depth for depth in (gt_m, sparse_m) if depth is not None and (depth > 0).any()), prediction_m)
    near_m, far_m = pictures.depth_range(measured)
    panels = [(rgb, "RGB", None)]
    if sparse_m is not None:
        panels.append((pictures.points_over_photo(rgb, sparse_m, near_m, far_m), "sparse depth (input)", "depth"))
    panels.append((pictures.colour_depth(prediction_m, near_m, far_m), "prediction", "depth"))
    if gt_m is not None:
        error_m = np.where(gt_m > 0, np.abs(prediction_m - gt_m), np.nan)
        panels.append((pictures.colour_depth(gt_m, near_m, far_m), "ground truth (dense.png)", "depth"))
        error_title = "absolute error |prediction - ground truth|"
        panels.append((pictures.colour_error(error_m, ERROR_SCALE_M), error_title, "error"))
    figure = pictures.new_figure(width + _BAR + 2 * _MARGIN, len(panels) * (height + _TITLE_BAND) + _MARGIN)
    for index, (image, title, bar) in enumerate(panels):
        top = index * (height + _TITLE_BAND) + _TITLE_BAND
        pictures.show_image(pictures.add_axes_px(figure, _MARGIN, top, width, height), image, title)
        bar_axes = pictures.add_axes_px(figure, _MARGIN + width + 10, top, 12, height) if bar else None
        if bar == "depth":
            pictures.depth_bar(figure, bar_axes, near_m, far_m)
        elif bar == "error":
            pictures.error_bar(figure, bar_axes, ERROR_SCALE_M, extend="max")
    return pictures.to_rgb(figure)

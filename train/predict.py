"""`simlidar predict`: a trained model's depth for photos with their sparse depth, or for the
samples of shards, written as KITTI writes depth (16-bit PNG, metres x 256, 0 = none) with a
preview picture each. The prediction is `eval`'s (validate.predict_depth, the EMA weights by
default), so the same sample gives the same numbers in both.

One photo, or a folder of photos: every .jpg, .jpeg and .png in it (not below it); each photo's sparse depth is
a 16-bit PNG of metres x 256 of the same size, found in the --sparse folder under the photo's
name (KITTI's layout: image_02/0001.png beside velodyne_raw/0001.png) or as STEM.sparse.png,
or beside the photo as STEM.sparse.png when no --sparse folder is given. Every input is
checked (present, an image, sizes equal) before the model is loaded."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from simlidar.pipeline import schema
from tqdm import tqdm

from . import data
from .checkpoint import load_checkpoint
from .errors import TrainError
from .factory import load_model, pick_device
from .shards import index_shards, list_shards
from .validate import predict_depth, preview

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")
SPARSE_SUFFIX = ".sparse.png"
# Depth sidecars that sit beside photos and are no photo themselves.
SIDECAR_SUFFIXES = (SPARSE_SUFFIX, ".depth.png", ".dense.png")
PREVIEWS = "previews"


@dataclass(frozen=True)
class PhotoInput:
    """One photo and its sparse depth file; `key` names the outputs (OUT/KEY.png)."""

    key: str
    photo: Path
    sparse: Path


def photo_inputs(images: Path, sparse_folder: Path | None) -> list[PhotoInput]:
    """The photos of `images` (a folder, or one photo) with their sparse depth files, checked
    (see the module docstring); a missing file, an undecodable one or sizes that differ is a
    TrainError naming it."""
    photos = sorted(
        path
        for path in (images.iterdir() if images.is_dir() else [images])
        if path.suffix.lower() in PHOTO_SUFFIXES
        and not path.name.lower().endswith(SIDECAR_SUFFIXES)
        and path.is_file()
    )
    if not photos:
        raise TrainError(f"no photos (.jpg, .jpeg, .png) in {images}: pass the folder that holds them as --images")
    inputs, keys = [], {}
    for photo in photos:
        key = schema.sanitize_key(photo.stem)
        if key in keys:
            raise TrainError(f"{keys[key].name} and {photo.name} would both be written as {key}.png: rename one")
        keys[key] = photo
        inputs.append(PhotoInput(key, photo, _sparse_file(photo, sparse_folder)))
    for item in inputs:
        _check_sizes(item)
    return inputs


def _sparse_file(photo: Path, sparse_folder: Path | None) -> Path:
    """Where `photo`'s sparse depth is (see the module docstring)."""
    beside = photo.with_name(photo.stem + SPARSE_SUFFIX)
    if sparse_folder is None:
        if beside.is_file():
            return beside
        raise TrainError(
            f"no sparse depth for {photo.name}: expected {beside.name} beside it, or pass --sparse FOLDER "
            "(16-bit PNGs of metres x 256 named as the photos)"
        )
    candidates = (sparse_folder / f"{photo.stem}.png", sparse_folder / f"{photo.stem}{SPARSE_SUFFIX}")
    found = next((path for path in candidates if path.is_file()), None)
    if found is None:
        raise TrainError(
            f"no sparse depth for {photo.name} in {sparse_folder}: expected {candidates[0].name} or "
            f"{candidates[1].name} (a 16-bit PNG of metres x 256)"
        )
    return found


def _check_sizes(item: PhotoInput) -> None:
    """The photo and its sparse PNG open as images of one size, the sparse one 16-bit."""
    sizes = []
    for path, what in ((item.photo, "photo"), (item.sparse, "sparse depth")):
        try:
            with Image.open(path) as image:
                sizes.append(ImageOps.exif_transpose(image).size if what == "photo" else image.size)
                mode = image.mode
        except (UnidentifiedImageError, Image.DecompressionBombError, OSError) as error:
            raise TrainError(f"{path}: not a readable image ({type(error).__name__}); remove or replace it") from None
        if what == "sparse depth" and mode not in ("I;16", "I;16B", "I;16L", "I"):
            raise TrainError(
                f"{path}: sparse depth must be a 16-bit PNG of metres x 256 (KITTI's format), not mode {mode}"
            )
    if sizes[0] != sizes[1]:
        (photo_w, photo_h), (sparse_w, sparse_h) = sizes
        raise TrainError(
            f"{item.sparse.name} is {sparse_w}x{sparse_h} but {item.photo.name} is {photo_w}x{photo_h}: "
            "the sparse depth must be the photo's size, projected into that camera"
        )


def _read_photo(item: PhotoInput) -> dict:
    """An input as `eval` sees a sample: key, rgb (H, W, 3) uint8, sparse (H, W) metres, no truth."""
    with Image.open(item.photo) as image:
        rgb = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    try:
        sparse = schema.decode_depth_png(item.sparse.read_bytes())
    except ValueError as error:
        raise TrainError(f"{item.sparse}: {error}") from None
    return {"key": item.key, "rgb": rgb, "sparse": sparse, "dense": None}


def _shard_samples(urls: list[str], on_bad):
    """The samples of shards as `eval` reads them, with their ground truth (one that does not
    decode goes to on_bad, as in eval)."""
    for sample in data.eval_stream(urls, on_bad):
        rgb = (sample["rgb"].numpy().transpose(1, 2, 0) * 255).round().astype(np.uint8)
        sparse, dense = sample["sparse"][0].numpy(), sample["dense"][0].numpy()
        yield {"key": sample["key"], "rgb": rgb, "sparse": sparse, "dense": dense}


def is_shard_source(images: str) -> bool:
    """Whether --images names shards (a .tar, a brace pattern, a URL or a folder of .tar files
    and no photos) rather than a folder of photos."""
    if "{" in images or "://" in images or images.endswith(".tar"):
        return True
    folder = Path(images)
    if not folder.is_dir():
        return False
    names = [path.name.lower() for path in folder.iterdir()]
    return any(name.endswith(".tar") for name in names) and not any(name.endswith(PHOTO_SUFFIXES) for name in names)


def predict(
    checkpoint_path: str,
    images: str,
    out: str,
    sparse: str | None = None,
    device_name: str = "auto",
    previews: int = 10,
    use_ema: bool = True,
    progress: bool = True,
) -> dict:
    """Depth for every photo of `images` (with `sparse`) or every sample of the shards it names:
    OUT/KEY.png (16-bit, metres x 256) and OUT/previews/KEY.png for the first `previews`;
    OUT/predictions.json lists them (and the samples of shards that do not decode, skipped as
    eval skips them). Returns that record."""
    out_dir = Path(out)
    if out_dir.exists() and not out_dir.is_dir():
        raise TrainError(f"--out {out} is a file: give a folder for the depth PNGs and previews")
    skipped: list[dict] = []
    if is_shard_source(images):
        if sparse is not None:
            raise TrainError("--sparse is for a folder of photos: shards carry each sample's sparse.png")
        urls = list_shards(images, "--images")
        index_shards(urls)
        inputs, count = _shard_samples(urls, skipped.append), None
    else:
        photos = Path(images)
        if not (photos.is_dir() or photos.is_file() and photos.suffix.lower() in PHOTO_SUFFIXES):
            raise TrainError(
                f"{images} is neither a photo, a folder of photos nor shards (a .tar, a brace pattern, a folder)"
            )
        items = photo_inputs(photos, Path(sparse) if sparse is not None else None)
        inputs, count = map(_read_photo, items), len(items)
    checkpoint = load_checkpoint(checkpoint_path)
    device = pick_device(device_name)
    model = load_model(checkpoint, checkpoint_path, ema=use_ema).to(device).eval()
    (out_dir / PREVIEWS).mkdir(parents=True, exist_ok=True)
    written = []
    for item in tqdm(inputs, total=count, disable=not progress, unit="image"):
        sparse_tensor = torch.from_numpy(item["sparse"])[None]
        prediction_m = predict_depth(model, data.rgb_tensor(item["rgb"]), sparse_tensor, device)
        (out_dir / f"{item['key']}.png").write_bytes(schema.encode_depth_png(prediction_m))
        if len(written) < previews:
            picture = preview(item["rgb"], prediction_m, item["dense"], item["sparse"])
            Image.fromarray(picture).save(out_dir / PREVIEWS / f"{item['key']}.png")
        written.append(item["key"])
    record = {
        "checkpoint": str(checkpoint_path),
        "step": checkpoint["step"],
        "weights": "ema" if use_ema and checkpoint.get("ema") is not None else "model",
        "images": str(images),
        "sparse": sparse,
        "depth_png": "uint16, metres x 256, 0 = no depth (KITTI)",
        "written": written,
        "skipped": skipped,
    }
    (out_dir / "predictions.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


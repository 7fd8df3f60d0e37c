"""The KITTI depth-completion tree as shards of the simlidar schema.

Expected layout under ROOT (the benchmark's zips unpacked side by side):

    data_depth_velodyne/{train,val}/DRIVE/proj_depth/velodyne_raw/image_0{2,3}/FRAME.png
    data_depth_annotated/{train,val}/DRIVE/proj_depth/groundtruth/image_0{2,3}/FRAME.png
    raw/DATE/DRIVE/image_0{2,3}/data/FRAME.png          (KITTI raw; DATE = DRIVE[:10])
    raw/DATE/calib_cam_to_cam.txt                        (optional: K in the json)
    depth_selection/val_selection_cropped/{image,velodyne_raw,groundtruth_depth,intrinsics}/...

A sample has the real projected scan as `sparse.png`, the semi-dense annotated
ground truth as `dense.png`, the camera image with its original bytes (KITTI's PNG as
the `png` member: `eval` sees exactly the benchmark's inputs) and, with a teacher, its
relative disparity as `teacher.png`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from simlidar.teachers import TeacherInput
from tqdm import tqdm

from .. import schema
from ..errors import PipelineError
from ..output.store import LocalStore
from ..writer import ShardWriter

SPLITS = ("train", "val", "val_selection_cropped")
# The image member that keeps a file's own bytes, by the format Pillow reads.
IMAGE_MEMBER_OF_FORMAT = {"PNG": schema.IMAGE_PNG, "JPEG": schema.IMAGE}


@dataclass(frozen=True)
class KittiFrame:
    key: str
    image: Path
    sparse: Path
    groundtruth: Path
    K: np.ndarray | None


def _read_calibration_K(calib: Path, camera: str) -> np.ndarray | None:
    """K (3, 3) of a rectified camera from calib_cam_to_cam.txt (P_rect_0X), if present."""
    if not calib.is_file():
        return None
    for line in calib.read_text().splitlines():
        name, _, values = line.partition(":")
        if name.strip() == f"P_rect_{camera[-2:]}":
            P = np.array(values.split(), dtype=np.float64).reshape(3, 4)
            return P[:, :3]
    return None


def _missing(path: Path, what: str) -> PipelineError:
    return PipelineError(f"KITTI tree incomplete: {path} is missing ({what}); unpack it there or convert another split")


def list_kitti_frames(root: Path, split: str, raw: Path | None = None) -> list[KittiFrame]:
    """Every frame of a split, sorted, each with its image, scan and ground truth
    checked to exist (a missing file is an error naming it)."""
    root = Path(root)
    if split not in SPLITS:
        raise PipelineError(f"unknown KITTI split {split!r}: use one of {', '.join(SPLITS)}")
    if not root.is_dir():
        raise PipelineError(f"{root} is not a folder: pass the KITTI depth-completion root")
    if split == "val_selection_cropped":
        return _list_val_selection(root / "depth_selection" / "val_selection_cropped")
    raw = Path(raw) if raw is not None else root / "raw"
    velodyne = root / "data_depth_velodyne" / split
    if not velodyne.is_dir():
        raise _missing(velodyne, "data_depth_velodyne.zip")
    frames = []
    for sparse in sorted(velodyne.glob("*/proj_depth/velodyne_raw/image_0[23]/*.png")):
        drive, camera, frame = sparse.parents[3].name, sparse.parent.name, sparse.stem
        groundtruth = (
            root / "data_depth_annotated" / split / drive / "proj_depth" / "groundtruth" / camera / sparse.name
        )
        image = raw / drive[:10] / drive / camera / "data" / sparse.name
        if not groundtruth.is_file():
            raise _missing(groundtruth, "data_depth_annotated.zip")
        if not image.is_file():
            raise _missing(image, f"the KITTI raw images of {drive}")
        K = _read_calibration_K(raw / drive[:10] / "calib_cam_to_cam.txt", camera)
        frames.append(
            KittiFrame(schema.sanitize_key(f"{split}/{drive}/{camera}/{frame}"), image, sparse, groundtruth, K)
        )
    if not frames:
        raise PipelineError(f"no scans in {velodyne} (expected DRIVE/proj_depth/velodyne_raw/image_02/*.png)")
    return frames


def _list_val_selection(folder: Path) -> list[KittiFrame]:
    """val_selection_cropped: image/DRIVE_image_FRAME_image_0X.png beside
    velodyne_raw/DRIVE_velodyne_raw_..., groundtruth_depth/DRIVE_groundtruth_depth_...,
    intrinsics/DRIVE_image_....txt (K as 9 numbers)."""
    images = sorted((folder / "image").glob("*.png"))
    if not images:
        raise _missing(folder / "image", "data_depth_selection.zip")
    frames = []
    for image in images:
        sparse = folder / "velodyne_raw" / image.name.replace("_image_", "_velodyne_raw_", 1)
        groundtruth = folder / "groundtruth_depth" / image.name.replace("_image_", "_groundtruth_depth_", 1)
        for path in (sparse, groundtruth):
            if not path.is_file():
                raise _missing(path, "data_depth_selection.zip")
        intrinsics = folder / "intrinsics" / f"{image.stem}.txt"
        K = np.array(intrinsics.read_text().split(), dtype=np.float64).reshape(3, 3) if intrinsics.is_file() else None
        frames.append(
            KittiFrame(schema.sanitize_key(f"val_selection_cropped/{image.stem}"), image, sparse, groundtruth, K)
        )
    return frames


def read_kitti_depth(path: Path) -> np.ndarray:
    """(H, W) float32 metres from a KITTI depth PNG (uint16, m x 256, 0 = none)."""
    try:
        return schema.decode_depth_png(path.read_bytes())
    except (OSError, ValueError) as error:
        raise PipelineError(f"{path}: not a KITTI depth PNG ({error})") from None


def teacher_disparity(depth: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """A teacher's (H, W) output -> (relative disparity, valid). Metric and relative
    depth are inverted (relative depth's unknown shift is taken as 0); disparity is kept."""
    depth = np.asarray(depth, dtype=np.float64)
    valid = np.isfinite(depth) & (depth > 0)
    if kind == "disparity":
        return depth, valid
    disparity = np.zeros_like(depth)
    disparity[valid] = 1.0 / depth[valid]
    return disparity, valid


def teacher_member(prediction, teacher_name: str) -> tuple[bytes, dict]:
    """A teacher's DepthPrediction -> (teacher.png bytes, the json's "teacher_relative" record)."""
    disparity, valid = teacher_disparity(prediction.depth, prediction.kind)
    png, low, high = schema.encode_relative_png(disparity, valid)
    record = {
        "teacher": teacher_name,
        "kind": prediction.kind,
        "stored": "disparity",
        "normalisation": "min-max per image, 1..65535 = 0..1, 0 = none",
        "min": low,
        "max": high,
    }
    return png, record


def frame_members(frame: KittiFrame, rgb: np.ndarray, split: str, teacher_out=None, teacher_name: str = "") -> dict:
    """The shard members of one frame; teacher_out: the teacher's DepthPrediction or None."""
    sparse = read_kitti_depth(frame.sparse)
    groundtruth = read_kitti_depth(frame.groundtruth)
    height, width = rgb.shape[:2]
    for path, depth in ((frame.sparse, sparse), (frame.groundtruth, groundtruth)):
        if depth.shape != (height, width):
            raise PipelineError(f"{path} is {depth.shape[1]}x{depth.shape[0]} but {frame.image} is {width}x{height}")
    image_member = _image_member(frame.image)
    meta = {
        "source": "kitti_depth_completion",
        "split": split,
        "source_path": str(frame.image),
        "image_size": [width, height],
        "K": frame.K.tolist() if frame.K is not None else None,
        "image_encoding": "original bytes",
        "sparse": "velodyne_raw",
        "dense": "groundtruth (semi-dense, annotated)",
        "counts": {"sparse_pixels": int(np.count_nonzero(sparse)), "dense_pixels": int(np.count_nonzero(groundtruth))},
    }
    members = {
        image_member: frame.image.read_bytes(),
        schema.SPARSE: frame.sparse.read_bytes(),
        schema.DENSE: frame.groundtruth.read_bytes(),
    }
    if teacher_out is not None:
        members[schema.TEACHER], meta["teacher_relative"] = teacher_member(teacher_out, teacher_name)
    members[schema.META] = json.dumps(meta, sort_keys=True).encode()
    return members


def _image_member(path: Path) -> str:
    """The schema member that holds `path`'s bytes unchanged (png or jpg)."""
    with Image.open(path) as image:
        image_format = image.format
    if image_format not in IMAGE_MEMBER_OF_FORMAT:
        raise PipelineError(f"{path} is a {image_format} image; KITTI's images are PNG: check the tree")
    return IMAGE_MEMBER_OF_FORMAT[image_format]


def _batches(frames: list[KittiFrame], size: int) -> Iterator[list[KittiFrame]]:
    for start in range(0, len(frames), size):
        yield frames[start : start + size]


def convert_kitti(
    root: Path,
    out: Path,
    split: str = "train",
    teacher=None,
    raw: Path | None = None,
    shard_size: int = 1000,
    limit: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Write OUT/shard-NNNNNN.tar (shard_size frames each) and OUT/manifest.json; a
    teacher (protocol of simlidar.teachers) adds each frame's relative disparity."""
    frames = list_kitti_frames(root, split, raw)[:limit]
    out = Path(out)
    if any(out.glob("shard-*.tar")) and not overwrite:
        raise PipelineError(f"{out} already holds shards: pass --overwrite or another --out")
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("shard-*.tar"):
        old.unlink()
    teacher_name = teacher.name if teacher is not None else ""
    shards = []
    with tqdm(total=len(frames), disable=not progress, unit="frame") as bar:
        for index, shard_frames in enumerate(_batches(frames, shard_size)):
            with ShardWriter(LocalStore(out), f"shard-{index:06d}.tar") as writer:
                for batch in _batches(shard_frames, 8):
                    rgbs = []
                    for frame in batch:
                        with Image.open(frame.image) as image:
                            rgbs.append(np.asarray(image.convert("RGB")))
                    predictions = [None] * len(batch)
                    if teacher is not None:
                        predictions = teacher.predict(
                            [TeacherInput(f.image, rgb) for f, rgb in zip(batch, rgbs, strict=True)]
                        )
                    for frame, rgb, prediction in zip(batch, rgbs, predictions, strict=True):
                        if isinstance(prediction, Exception):
                            raise PipelineError(f"teacher {teacher_name} failed on {frame.image}: {prediction}")
                        writer.write(frame.key, frame_members(frame, rgb, split, prediction, teacher_name))
                        bar.update(1)
            shards.append({"name": writer.name, "samples": writer.samples, "sha256": writer.sha256})
    manifest = {
        "source": "kitti_depth_completion",
        "root": str(Path(root).resolve()),
        "split": split,
        "teacher": teacher_name or None,
        "samples": len(frames),
        "shards": shards,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest

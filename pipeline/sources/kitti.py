"""The KITTI depth-completion tree as input (`simlidar convert kitti`): its frames listed,
each checked to have its image, scan and ground truth, and read.

Expected layout under ROOT (the benchmark's zips unpacked side by side):

    data_depth_velodyne/{train,val}/DRIVE/proj_depth/velodyne_raw/image_0{2,3}/FRAME.png
    data_depth_annotated/{train,val}/DRIVE/proj_depth/groundtruth/image_0{2,3}/FRAME.png
    raw/DATE/DRIVE/image_0{2,3}/data/FRAME.png          (KITTI raw; DATE = DRIVE[:10])
    raw/DATE/calib_cam_to_cam.txt                        (optional: K in the json)
    depth_selection/val_selection_cropped/{image,velodyne_raw,groundtruth_depth,intrinsics}/...

A sample (stages/recorded.py) has the real projected scan as `sparse.png`, the semi-dense
annotated ground truth as `dense.png`, the camera image with its original bytes (KITTI's PNG
as the `png` member: `eval` sees exactly the benchmark's inputs) and, with a teacher, its
relative disparity as `teacher.png`.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .. import schema
from ..errors import PipelineError
from .photos import BadImage, decode_problem, read_input_file

SPLITS = ("train", "val", "val_selection_cropped")
# The image member that keeps a file's own bytes, by the format Pillow reads.
IMAGE_MEMBER_OF_FORMAT = {"PNG": schema.IMAGE_PNG, "JPEG": schema.IMAGE}


@dataclass(frozen=True)
class KittiFrame:
    """relpath: SPLIT/DRIVE/CAMERA/FRAME (what inputs.jsonl records); key: the sample key;
    the frame's image, scan and ground truth files; the file K (3, 3) of its camera is read
    from when the frame is (present or not): a raw drive's calib_cam_to_cam.txt and its
    field (P_rect_02), or val_selection_cropped's intrinsics file (field "": 9 numbers)."""

    relpath: str
    key: str
    image: Path
    sparse: Path
    groundtruth: Path
    calibration_file: Path
    calibration_field: str = ""

    def files(self) -> dict[str, None]:
        """What this frame is read from, their state to be looked up (sources/fingerprint.py)."""
        return dict.fromkeys(str(path) for path in (self.image, self.sparse, self.groundtruth, self.calibration_file))


@dataclass(frozen=True)
class KittiRecording:
    """One KITTI frame as read: the image's bytes, its member (png or jpg), RGB (H, W, 3)
    uint8, the projected scan and the annotated ground truth (PNG bytes and (H, W) metres),
    and K (3, 3) of its camera (None: its calibration file is not there)."""

    image_member: str
    image: bytes
    rgb: np.ndarray
    sparse_png: bytes
    sparse_m: np.ndarray
    groundtruth_png: bytes
    groundtruth_m: np.ndarray
    K: np.ndarray | None


def _frame(relpath: str, image: Path, sparse: Path, groundtruth: Path, calibration: Path, field: str = ""):
    return KittiFrame(relpath, schema.sanitize_key(relpath), image, sparse, groundtruth, calibration, field)


def read_frame_K(frame: KittiFrame) -> np.ndarray | None:
    """K (3, 3) of the frame's camera from its calibration file (None when there is none);
    BadImage (the frame recorded and skipped) when the file does not hold a usable one."""
    if not frame.calibration_file.is_file():
        return None
    text = read_input_file(frame.calibration_file).decode("utf-8", errors="replace")
    if frame.calibration_field:
        lines = [line.partition(":") for line in text.splitlines()]
        found = [values for name, _, values in lines if name.strip() == frame.calibration_field]
        if not found:
            return None
        values, shape = found[0], (3, 4)
    else:
        values, shape = text, (3, 3)
    try:
        numbers = np.array(values.split(), dtype=np.float64)
    except ValueError:
        numbers = np.array([])
    what = frame.calibration_field or "K"
    if numbers.size != shape[0] * shape[1] or not np.isfinite(numbers).all():
        raise BadImage(f"{frame.calibration_file}: {what} is not {shape[0] * shape[1]} finite numbers; fix the file")
    K = numbers.reshape(shape)[:, :3]
    if K[0, 0] <= 0 or K[1, 1] <= 0 or not np.array_equal(K[2], [0, 0, 1]):
        raise BadImage(f"{frame.calibration_file}: {what} is not a camera projection (fx, fy > 0, last row 0 0 1)")
    return K


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
        calibration = raw / drive[:10] / "calib_cam_to_cam.txt"
        relpath = f"{split}/{drive}/{camera}/{frame}"
        frames.append(_frame(relpath, image, sparse, groundtruth, calibration, f"P_rect_{camera[-2:]}"))
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
        frames.append(_frame(f"val_selection_cropped/{image.stem}", image, sparse, groundtruth, intrinsics))
    return frames


def _depth(path: Path) -> tuple[bytes, np.ndarray]:
    """A KITTI depth PNG's bytes and (H, W) float32 metres (uint16, m x 256, 0 = none)."""
    data = read_input_file(path)
    try:
        return data, schema.decode_depth_png(data)
    except (OSError, ValueError) as error:
        raise BadImage(f"{path}: not a KITTI depth PNG ({decode_problem(error)})") from None


def read_kitti_frame(frame: KittiFrame) -> KittiRecording:
    """The frame's files read and checked; BadImage (the frame recorded and skipped) when
    one cannot be read, the image is neither PNG nor JPEG, or the sizes differ."""
    image = read_input_file(frame.image)
    try:
        with Image.open(io.BytesIO(image)) as decoded:
            image_format = decoded.format
            rgb = np.asarray(decoded.convert("RGB"))
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise BadImage(f"{frame.image}: not a readable image ({decode_problem(error)})") from None
    if image_format not in IMAGE_MEMBER_OF_FORMAT:
        raise BadImage(f"{frame.image} is a {image_format} image; KITTI's images are PNG: check the tree")
    (sparse_png, sparse_m), (groundtruth_png, groundtruth_m) = _depth(frame.sparse), _depth(frame.groundtruth)
    height, width = rgb.shape[:2]
    for path, depth in ((frame.sparse, sparse_m), (frame.groundtruth, groundtruth_m)):
        if depth.shape != (height, width):
            raise BadImage(f"{path} is {depth.shape[1]}x{depth.shape[0]} but {frame.image} is {width}x{height}")
    return KittiRecording(
        IMAGE_MEMBER_OF_FORMAT[image_format],
        image,
        rgb,
        sparse_png,
        sparse_m,
        groundtruth_png,
        groundtruth_m,
        read_frame_K(frame),
    )

"""`simlidar bench edges`: what a scan of a teacher's soft depth edges looks like.

No teacher's weights are at hand, so true depth stands in for a perfect teacher and
blurred copies of it (output/flying.py: box, Gaussian, shifted, dilated, warped; the
photo stays sharp) for real ones. Each is scanned by the chain `generate` runs
(simulate_scene, edge rule included unless --edge-rule none) and described by its
flying-return share against the true depth, its share of returns off every true surface
around them (where a rule that picks a wrong side puts them: the flying share does not
count those), its returns against the scan of the true depth without the rule (today's
pipeline on a perfect teacher), the 2-row correlation of
its row profile with the real scan (KITTI frames) and its milliseconds after the teacher.
The frames: the bundled photos with true-depth sidecars (street_kitti: KITTI's size and
intrinsics, on the kitti mount) and every KITTI object frame in a folder, its densified
real scan as the true depth, on its own calibration.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np
from simlidar.sensors import MOUNTS, mount_pose
from simlidar.sensors.depth_grid import load_kernels

from .. import schema
from ..config import GenerateConfig, RunPlan
from ..output.fidelity import profile_correlation, project_scan, read_kitti_object_frame, row_profile
from ..output.flying import beyond_share, blur_depth, flying_share, parse_teacher_blur
from ..sources.photos import list_images
from ..stages.scene import Scene, SceneCamera, sidecar_camera, simulate_scene
from ..stages.timing import StageTimes
from ..stages.views import PhotoViews
from .frame import kitti_camera, post_teacher_seconds

BLURS = "box:2,box:4,box:8,gauss:4,gauss:8,shift:4,shift:8,dilate:4,dilate:8,warp:4,warp:8"
SENSOR = "hdl64-kitti"
# The soft depth the cost of the rule is timed on (with and without it, interleaved).
COST_BLUR = "box:4"
CORRELATION_ROWS = 2


@dataclass(frozen=True)
class EdgeFrame:
    """A frame with true depth: its camera (prediction = true depth), the LiDAR's pose in
    it (4, 4) and the real scan's sparse map (H, W, m; None: no real scan)."""

    name: str
    camera: SceneCamera
    T_cam_lidar: np.ndarray
    real_sparse_m: np.ndarray | None


def edge_frames(images: Path, kitti_folder: Path) -> list[EdgeFrame]:
    """The photos with sidecar depth in `images` (on the kitti mount), then every KITTI
    object frame (NAME.bin, .png, .calib.txt) in kitti_folder."""
    frames = [
        EdgeFrame(item.path.stem, sidecar_camera(item.path, StageTimes()), mount_pose(MOUNTS["kitti"]), None)
        for item in list_images(images)
    ]
    for scan_path in sorted(kitti_folder.glob("*.bin")) if kitti_folder.is_dir() else []:
        stem = scan_path.with_suffix("")
        frame = read_kitti_object_frame(stem)
        height, width = frame.rgb.shape[:2]
        calibration = frame.calibration
        real = project_scan(frame.points_lidar, calibration.T_cam_lidar, calibration.K, width, height)
        frames.append(EdgeFrame(f"kitti {stem.name}", kitti_camera(stem, StageTimes()), calibration.T_cam_lidar, real))
    return frames


def scan_depth(frame: EdgeFrame, depth_m: np.ndarray, plan: RunPlan) -> tuple[np.ndarray, float]:
    """The sparse map (H, W, m) `generate` makes of frame's photo with depth_m (H, W, m) as
    the teacher's, and its seconds after the teacher."""
    prediction = dataclasses.replace(frame.camera.prediction, depth=depth_m)
    camera = dataclasses.replace(frame.camera, prediction=prediction)
    scene = Scene(schema.sanitize_key(frame.name), (camera,), PhotoViews(), T_scene_lidar=frame.T_cam_lidar)
    times = StageTimes()
    (_, members, _), *_ = list(simulate_scene(scene, plan, times))
    return schema.decode_depth_png(members[schema.SPARSE]), post_teacher_seconds(times.seconds)


def edge_rows(frame: EdgeFrame, plans: dict[str, RunPlan], rule: str, blurs: list[str]) -> list[dict]:
    """One row per teacher depth (the true depth, then each blur) of frame, scanned with
    plans[rule]: flying and beyond shares, returns over the true depth's scan without the
    rule, 2-row correlation with the real scan (nan without one), milliseconds after the
    teacher; first, for a frame with a real scan, the real scan's own row (its shares
    against its densified surface, returns over the same scan, correlation 1)."""
    truth = frame.camera.prediction.depth
    reference, _ = scan_depth(frame, truth, plans["none"])

    def row(label: str, sparse: np.ndarray, correlation: float, seconds: float) -> dict:
        return {
            "frame": frame.name,
            "depth": label,
            "flying": flying_share(sparse, truth),
            "beyond": beyond_share(sparse, truth),
            "returns": np.count_nonzero(sparse) / max(np.count_nonzero(reference), 1),
            "correlation": correlation,
            "ms": seconds * 1000,
        }

    real = frame.real_sparse_m
    rows = [] if real is None else [row("real scan", real, 1.0, float("nan"))]
    real_profile = None if real is None else row_profile(real)
    for label in ["sharp", *blurs]:
        depth = truth if label == "sharp" else blur_depth(truth, *parse_teacher_blur(label))
        sparse, seconds = scan_depth(frame, depth, plans[rule])
        correlation = float("nan")
        if real_profile is not None:
            correlation = profile_correlation(row_profile(sparse), real_profile, CORRELATION_ROWS)
        rows.append(row(label, sparse, correlation, seconds))
    return rows


def rule_cost(frame: EdgeFrame, plans: dict[str, RunPlan], repeats: int) -> dict[str, tuple[float, float]]:
    """Per rule of `plans`, median (wall, CPU) milliseconds of making frame's COST_BLUR
    sample after the teacher, the runs interleaved so that load from others falls on both
    alike. CPU time (all threads) is what the work costs whatever else the machine runs."""
    depth = blur_depth(frame.camera.prediction.depth, *parse_teacher_blur(COST_BLUR))
    runs = {rule: [] for rule in plans}
    for _ in range(repeats):
        for rule, plan in plans.items():
            cpu_start = time.process_time()
            wall = scan_depth(frame, depth, plan)[1]
            runs[rule].append((wall * 1000, (time.process_time() - cpu_start) * 1000))
    return {rule: tuple(np.median(np.array(times), axis=0).tolist()) for rule, times in runs.items()}


def print_edge_table(images: Path, kitti_object: Path, rule: str, blurs: str, repeats: int) -> None:
    """The table of edge_rows for every frame, then the rule's cost per frame."""
    blur_list = [blur for blur in blurs.split(",") if blur]
    for blur in blur_list:
        parse_teacher_blur(blur, "blurs")
    plans = {
        name: GenerateConfig(images=".", sensor=SENSOR, mount="kitti", mount_jitter="none", edges=name).resolve()
        for name in {rule, "photo", "none"}
    }
    load_kernels()
    frames = edge_frames(images, kitti_object.parent)
    click.echo(f"{SENSOR}, edge rule: {rule}")
    click.echo(f"{'frame':<16}{'teacher depth':>14}{'flying':>9}{'beyond':>9}{'returns':>9}{'corr 2':>8}{'ms':>8}")
    for frame in frames:
        for row in edge_rows(frame, plans, rule, blur_list):
            correlation = "-" if np.isnan(row["correlation"]) else f"{row['correlation']:.3f}"
            milliseconds = "-" if np.isnan(row["ms"]) else f"{row['ms']:.1f}"
            click.echo(
                f"{row['frame']:<16}{row['depth']:>14}{row['flying']:>9.2%}{row['beyond']:>9.2%}"
                f"{row['returns']:>9.3f}{correlation:>8}{milliseconds:>8}"
            )
    click.echo(
        "flying: share of returns inside a jump of the true depth's 5x5 neighbourhood; beyond: share more than 3% "
        "nearer or farther than every true depth there (a wrong side of a jump, or past it); returns: over the true "
        "depth's scan without the rule; corr 2: row-profile correlation with the real scan (2-row bins); "
        "ms: one frame after the teacher; real scan: the recorded scan against its own densified surface."
    )
    # The rule's cost is that of the table's rule over none (photo's when the table is none's).
    timed = rule if rule != "none" else "photo"
    for frame in frames:
        cost = rule_cost(frame, {timed: plans[timed], "none": plans["none"]}, repeats)
        (rule_wall, rule_cpu), (none_wall, none_cpu) = cost[timed], cost["none"]
        click.echo(
            f"cost of {timed} on {frame.name} ({COST_BLUR}), median of {repeats}, ms after the teacher: wall "
            f"{rule_wall:.1f} with the rule, {none_wall:.1f} without, ratio {rule_wall / none_wall:.2f}; CPU (all "
            f"threads) {rule_cpu:.1f} / {none_cpu:.1f}, ratio {rule_cpu / none_cpu:.2f}"
        )

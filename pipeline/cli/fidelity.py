"""`simlidar fidelity`: a real LiDAR frame against a simulation of it and a naive line
sampler (pipeline/output/fidelity.py has the method)."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np
from simlidar.sensors import mount_pose, sample_mount_jitter
from simlidar.sensors.mount import jittered_pose

from ..config import GenerateConfig
from ..output.fidelity import fidelity_picture, fidelity_report, format_table, read_kitti_object_frame
from ..output.flying import parse_teacher_blur
from ..output.preview import check_picture_path
from ..stages.edges import RULES as EDGE_RULES
from .generate import RAY_DROP_OPTION
from .grammar import check_mount, check_sensor


@click.command("fidelity")
@click.option(
    "--kitti-object",
    "frame_stem",
    required=True,
    type=click.Path(path_type=Path),
    help="A KITTI object frame DIR/NAME: NAME.bin (scan), NAME.png (image) and NAME.calib.txt (or "
    "DIR/../calib/NAME.txt), e.g. the shared data's kitti_object/000134.",
)
@click.option(
    "--sensor",
    default="hdl64-kitti",
    callback=check_sensor,
    help="The sensor to simulate: a catalog name or a .toml file.",
)
@click.option(
    "--mount",
    default="",
    show_default=False,
    callback=check_mount,
    help="Where the simulated LiDAR sits: a named mount or a calibration file, as for generate "
    "[default: the frame's own calibration].",
)
@click.option("--camera", default=2, type=int, help="KITTI camera of the frame's image and of a --mount file.")
@click.option(
    "--calibration-error",
    default="none",
    help="Record the simulation with extrinsics off by up to these ranges (keys of generate's "
    "--mount-jitter); 'none' = exact.",
)
@click.option(
    "--detection-range",
    "detection_range_m",
    default=None,
    type=float,
    help="Return effect override: 10%-target detection range (m); 0 = no weak-return drop.",
)
@click.option(
    "--teacher-blur",
    default="none",
    show_default=True,
    help="Stand a soft copy of the densified scan in for a teacher's depth, KIND:F (box, gauss, shift, dilate, "
    "warp; F pixels of smear), to measure edge handling on a real frame without model weights; 'none' = sharp.",
)
@click.option(
    "--edges",
    default="none",
    show_default=True,
    type=click.Choice(EDGE_RULES),
    help="The edge rule applied to the depth before meshing, as generate's --edges (photo there); none by "
    "default, since a densified scan is no teacher's depth: give photo with --teacher-blur.",
)
@RAY_DROP_OPTION
@click.option("--seed", default=0, type=int, help="Seed of the simulated frame's phase and return effects.")
@click.option("--plot", default=None, type=click.Path(dir_okay=False, path_type=Path), help="Write the picture here.")
def fidelity(
    frame_stem: Path,
    sensor: str,
    mount: str,
    camera: int,
    calibration_error: str,
    detection_range_m: float | None,
    teacher_blur: str,
    edges: str,
    ray_drop: str,
    seed: int,
    plot: Path | None,
) -> None:
    """Simulate --sensor into the geometry of a real scan (densified) from the same calibration, and print
    real / simulated / naive line sampler side by side: valid pixels, density in the 1216x352 crop, rows
    with points, first row, row-profile correlation with the real scan (1, 2, 4 rows), see-through share,
    flying returns (inside a depth jump of the densified scan), and within the camera's view Chamfer
    distance, F-score, ray-drop accuracy and F1 in the range image, range error where both return."""
    if plot is not None:
        check_picture_path(plot)
    blur = None if teacher_blur == "none" else parse_teacher_blur(teacher_blur)
    frame = read_kitti_object_frame(frame_stem, camera)
    plan = GenerateConfig(
        images=str(frame_stem),
        sensor=sensor,
        mount=mount,
        mount_camera=camera,
        mount_jitter="none",
        calibration_error=calibration_error,
        detection_range_m=detection_range_m,
        ray_drop=ray_drop,
        seed=seed,
        edges=edges,
    ).resolve()
    T_cam_lidar = mount_pose(plan.mount) if mount else frame.calibration.T_cam_lidar
    rng = np.random.default_rng(seed)
    T_error = None
    if plan.calibration_error is not None:
        T_error = jittered_pose(np.eye(4), *sample_mount_jitter(plan.calibration_error, rng))
    report = fidelity_report(frame, plan.sensor, T_cam_lidar, rng, plan.mesh, T_error, blur, plan.edges)
    where = plan.mount.name if mount else f"the frame's calibration ({frame.calibration.source})"
    drop = "fitted ray drop" if plan.sensor.ray_drop is not None else "weak-return drop"
    click.echo(
        f"{frame.name}: {plan.sensor.name} ({drop}) on {where}, calibration error {calibration_error}, "
        f"teacher depth {teacher_blur}, edge rule {edges}"
    )
    click.echo(format_table(report.figures))
    if plot is not None:
        fidelity_picture(report, frame.rgb, f"{frame.name} {plan.sensor.name}").save(plot)
        click.echo(f"picture in {plot}")

"""`simlidar generate`: every option of a run, as a GenerateConfig for the runner."""

from __future__ import annotations

import os
from dataclasses import fields

import click
from simlidar.sensors import MOUNTS, RETURN_MODES, available_sensors

from ..config import RAY_DROP_MODELS, REFLECTANCE_SOURCES, TEACHERS, GenerateConfig
from ..sources.urls import absolute_location
from ..stages.edges import RULES as EDGE_RULES
from ..stages.mesh import METHODS
from .engine import run_and_report, run_options
from .errors import with_flags
from .grammar import check_mount, check_sensor, check_teacher, renamed

# Every default is GenerateConfig's: the CLI names no value of its own.
DEFAULTS = {field.name: field.default for field in fields(GenerateConfig) if field.name != "images"}


def _parse_intrinsics_option(context, parameter, value):
    if value is None:
        return None
    from simlidar.teachers import IntrinsicsError, parse_intrinsics

    try:
        return parse_intrinsics(value)
    except IntrinsicsError as error:
        raise click.BadParameter(with_flags(str(error))) from None


def _absolute_rig(rig: str) -> str:
    """A rig file made absolute (presets stay names), for the same reason as --images."""
    return os.path.abspath(rig) if rig.endswith((".toml", ".json")) else rig


# Shared with `fidelity`.
RAY_DROP_OPTION = click.option(
    "--ray-drop",
    default=DEFAULTS["ray_drop"],
    type=click.Choice(RAY_DROP_MODELS),
    help="Which beams that hit come back: fitted (the sensor file's model fitted to real scans, `sensors fit-drop`), "
    "weak-return (from the photo's luma and --detection-range), auto (fitted where the sensor has it).",
)


@click.command()
@click.option(
    "--images",
    required=True,
    help="Photos: a folder (searched recursively), a quoted glob ('photos/**/*.jpg') or a text file of paths, "
    "local or as a URL (s3://, gs://, hf://); or WebDataset shards of images ('s3://bucket/coco-{00000..00099}.tar').",
)
@click.option(
    "--sensor",
    default=DEFAULTS["sensor"],
    callback=check_sensor,
    help=f"LiDAR to simulate: {', '.join(available_sensors())}, or a path to a sensor .toml file.",
)
@click.option(
    "--out",
    default="out",
    help="Output folder for shards and manifest, or a URL (s3://bucket/run/; see 'Run on a cluster' in the README).",
)
@click.option(
    "--mount",
    default=DEFAULTS["mount"],
    show_default=False,
    callback=check_mount,
    help=f"LiDAR placement: {', '.join(MOUNTS)} (kitti: KITTI's 2011_09_26 calibration into camera 2), or a "
    "calibration file: a KITTI object calib.txt, a KITTI raw calib_velo_to_cam.txt (with calib_cam_to_cam.txt "
    "beside it), or .json/.toml with a 4x4 T_cam_lidar [default: the sensor's own].",
)
@click.option(
    "--camera",
    "mount_camera",
    default=DEFAULTS["mount_camera"],
    type=int,
    help="KITTI camera (0-3; 2 = left colour, P2) whose image a KITTI calibration file given as --mount maps into.",
)
@click.option(
    "--teacher",
    default=DEFAULTS["teacher"],
    callback=check_teacher,
    help="Where dense depth comes from: auto (a photo's .depth.png/.npy sidecar, else depth-anything-v2-small), "
    f"sidecar, a model of `simlidar teachers list` ({', '.join(TEACHERS[2:5])}, ...) or hf:ORG/NAME.",
)
@click.option(
    "--teacher-output",
    default=DEFAULTS["teacher_output"],
    show_default=False,
    help="For hf:ORG/NAME: what the model predicts, metric, disparity (relative, larger = nearer) or depth (relative).",
)
@click.option(
    "--teacher-revision",
    default=DEFAULTS["teacher_revision"],
    show_default=False,
    help="Branch, tag or commit of the teacher's weights [default: the registry's pin, else main].",
)
@click.option(
    "--device",
    "teacher_device",
    default=DEFAULTS["teacher_device"],
    help="Teacher device: auto (CUDA, then MPS, then CPU), cpu, cuda:N.",
)
@click.option(
    "--dtype",
    "teacher_dtype",
    default=DEFAULTS["teacher_dtype"],
    type=click.Choice(["auto", "fp32", "fp16", "bf16"]),
    help="Teacher precision (autocast); auto: fp16 on CUDA, fp32 elsewhere.",
)
@click.option(
    "--batch-size",
    "teacher_batch_size",
    default=DEFAULTS["teacher_batch_size"],
    type=int,
    help="Photos per teacher batch.",
)
@click.option(
    "--max-size",
    "teacher_max_size",
    default=DEFAULTS["teacher_max_size"],
    type=int,
    help="Photos whose long side exceeds this (px) are shrunk before the teacher; depth still comes back at "
    "the photo's size (0: never shrink).",
)
@click.option(
    "--cache",
    "teacher_cache",
    default=DEFAULTS["teacher_cache"],
    show_default=False,
    help="Teacher cache (zarr), a folder or a URL, shareable between runs; a local folder keeps one per node "
    "of a cluster [default: OUT/teacher-cache, on the store too when --out is a URL].",
)
@click.option(
    "--depth-range",
    default=DEFAULTS["depth_range"],
    help="Relative teachers: ranges the per-photo near and far distances are drawn from: street (2-5 m, "
    "40-80 m), indoor (0.5-1.5 m, 4-10 m) or NEAR_LO,NEAR_HI,FAR_LO,FAR_HI in metres.",
)
@click.option(
    "--disparity-percentiles",
    default=DEFAULTS["disparity_percentiles"],
    help="Relative teachers: LOW,HIGH percentiles of the output pinned to the far and near distances.",
)
@click.option(
    "--sky-threshold",
    default=DEFAULTS["sky_threshold"],
    type=float,
    help="Disparity teachers: pixels below this fraction of the near disparity (sky, far background) get no return.",
)
@click.option(
    "--metric-scale",
    default=DEFAULTS["metric_scale"],
    help="Metric teachers: LOW,HIGH range of a random global scale per photo.",
)
@click.option(
    "--max-pixels",
    default=DEFAULTS["max_pixels"],
    type=int,
    help="Photos with more pixels are recorded in errors.jsonl, not made (a photo's run holds ~250 bytes per pixel); "
    "shrink them first, or raise this where memory allows.",
)
@click.option("--seed", default=DEFAULTS["seed"], type=int, help="Run seed; the same seed gives byte-identical shards.")
@click.option("--limit", default=DEFAULTS["limit"], type=int, help="Use only the first N photos (sorted by path).")
@click.option(
    "--shard-size", default=DEFAULTS["shard_size"], type=int, help="Photos per shard (the unit of work and resume)."
)
@click.option(
    "--views", default=DEFAULTS["views"], type=int, help="Samples per photo, each with its own LiDAR pose jitter."
)
@click.option(
    "--rig",
    default=DEFAULTS["rig"],
    show_default=False,
    callback=lambda context, parameter, value: _absolute_rig(value),
    help="Split each photo into the overlapping virtual cameras of a rig (one LiDAR scan serves them all): "
    "virtual (3 cameras of half the photo's field of view), virtual2, virtual5, or a rig .toml file; or a real "
    "rig's calibration .json (cameras' K, image_size, T_rig_cam and the LiDAR's T_rig_lidar), --images being its "
    "folder of CAMERA/FRAME.jpg: one scan per frame for all cameras [default: none].",
)
@click.option(
    "--fov",
    "fov_deg",
    default=DEFAULTS["fov_deg"],
    type=float,
    help="Horizontal field of view (deg) for photos with no intrinsics.",
)
@click.option(
    "--intrinsics",
    default=DEFAULTS["intrinsics"],
    callback=_parse_intrinsics_option,
    help="fx,fy,cx,cy in pixels for every photo (overrides photo.json and --fov).",
)
@click.option(
    "--intrinsics-policy",
    default=DEFAULTS["intrinsics_policy"],
    help="Intrinsics of photos with no --intrinsics or photo.json: sources tried in order, from exif "
    "(35 mm-equivalent focal length), teacher (its own estimate: depth-pro), fov (--fov), random (--fov-range); "
    "auto: fov when --fov is given, else random.",
)
@click.option(
    "--fov-range", default=DEFAULTS["fov_range"], help="MIN,MAX horizontal field of view (deg) of the random policy."
)
@click.option(
    "--save-points",
    is_flag=True,
    help="Also store each scan's points.npy: N x 7 float32 in the LiDAR frame (x, y, z m, intensity, ring, firing "
    "time s since the sweep started, azimuth rad); the json's points_layout states it.",
)
@click.option(
    "--edges",
    default=DEFAULTS["edges"],
    type=click.Choice(EDGE_RULES),
    help="Depth jumps the teacher smeared over several pixels, before meshing: photo (each pixel of the smear "
    "goes to the near or far side, the photo's colour edges placing the cut; no LiDAR return in the gap, and "
    "the dense target is that depth), depth (a baseline without the photo: each pixel inside a 17-px window's "
    "jump moves to the nearer of its nearest and farthest depth), none (the teacher's depth as it is, smear "
    "included).",
)
@click.option(
    "--max-depth-jump",
    default=DEFAULTS["max_depth_jump"],
    type=float,
    help="Mesh: cut triangles whose relative depth range exceeds this (no rubber sheets).",
)
@click.option(
    "--max-grazing-deg",
    default=DEFAULTS["max_grazing_deg"],
    type=float,
    help="Mesh: cut triangles seen more obliquely.",
)
@click.option(
    "--occlusion-fill",
    "occlusion_fill_px",
    default=DEFAULTS["occlusion_fill_px"],
    type=int,
    help="Mesh: pixels the background extends behind occluding edges (see-through points; 0 = off).",
)
@click.option(
    "--mesh",
    default=DEFAULTS["mesh"],
    type=click.Choice(METHODS),
    help="Mesh method: march (the grid's returns, cast through the depth map's pixel grid without building "
    "the mesh: the fast default), grid (a triangle pair per pixel quad, cast with Open3D), decimated (grid "
    "simplified, edges kept), poisson (screened Poisson surface, trimmed to the input points).",
)
@click.option(
    "--mesh-stride", default=DEFAULTS["mesh_stride"], type=int, help="Mesh: use every K-th pixel in both directions."
)
@click.option(
    "--mesh-faces",
    default=DEFAULTS["mesh_faces"],
    type=float,
    help="Mesh decimated: visible faces to keep, a count, or a fraction of the grid's when below 1.",
)
@click.option(
    "--poisson-depth", default=DEFAULTS["poisson_depth"], type=int, help="Mesh poisson: octree depth (detail)."
)
@click.option(
    "--poisson-trim",
    "poisson_trim_px",
    default=DEFAULTS["poisson_trim_px"],
    type=float,
    help="Mesh poisson: drop surface further than this many pixel footprints from the input points.",
)
@click.option(
    "--mount-jitter",
    default=DEFAULTS["mount_jitter"],
    help="Per-view uniform mount jitter ranges: horizontal and height in +- metres, roll, pitch, yaw in +- deg; "
    "unnamed keys are 0, 'none' turns it off.",
)
@click.option(
    "--calibration-error",
    default=DEFAULTS["calibration_error"],
    help="Per-view error of the recorded LiDAR-camera extrinsics, same keys as --mount-jitter: the scan is cast "
    "from the true pose but projected (and recorded) with a pose off by up to these ranges, as in real datasets "
    "(KITTI-like: roll=0.1,pitch=0.1,yaw=0.1,horizontal=0.02,height=0.02); 'none' = exact.",
)
@click.option(
    "--ego-motion",
    default=DEFAULTS["ego_motion"],
    help="Per-view motion of the LiDAR during its sweep, drawn uniformly from ranges: speed=LOW:HIGH (m/s, "
    "forward) and yaw_rate=LOW:HIGH (deg/s, left), a single value being fixed; each ray leaves from where the "
    "LiDAR is at its firing time; 'none' = still.",
)
@click.option(
    "--deskew",
    is_flag=True,
    help="With --ego-motion: write each scan motion-compensated, every return in the LiDAR's frame at the camera's "
    "trigger time [default: as measured, uncompensated like KITTI's raw scans].",
)
@RAY_DROP_OPTION
@click.option(
    "--range-noise",
    "range_noise_m",
    default=DEFAULTS["range_noise_m"],
    type=float,
    help="Return effect: Gaussian range noise sigma in metres, 0 = off [default: the sensor file's].",
)
@click.option(
    "--drop-rate",
    default=DEFAULTS["drop_rate"],
    type=float,
    help="Return effect: share of beams lost at random, 0 = off [default: the sensor file's].",
)
@click.option(
    "--detection-range",
    "detection_range_m",
    default=DEFAULTS["detection_range_m"],
    type=float,
    help="Return effect: range (m) at which a facing 10%-reflectance target returns 90% of the time; weaker "
    "(farther, grazing, darker) returns drop more; 0 = off [default: the sensor file's].",
)
@click.option(
    "--divergence",
    "divergence_mrad",
    default=DEFAULTS["divergence_mrad"],
    type=float,
    help="Return effect: beam divergence (full angle, mrad), cast as --sub-rays rays per beam so that a beam "
    "on an edge returns near, far or mixed; 0 = off [default: the sensor file's].",
)
@click.option(
    "--sub-rays",
    default=DEFAULTS["sub_rays"],
    type=int,
    help="Rays cast per beam when it diverges (1 = centre only; cost grows with it) [default: the sensor file's].",
)
@click.option(
    "--returns",
    default=DEFAULTS["returns"],
    type=click.Choice(RETURN_MODES),
    help="Which echo a beam reports: first (nearest), strongest, last (farthest) [default: the sensor file's].",
)
@click.option(
    "--reflectance",
    default=DEFAULTS["reflectance"],
    type=click.Choice(REFLECTANCE_SOURCES),
    help="Reflectance of a hit, for intensity and weak-return drop: the photo's luma there, or uniform 0.5.",
)
@click.option(
    "--integration-time",
    "integration_time_s",
    default=DEFAULTS["integration_time_s"],
    type=float,
    help="Risley (Livox) sensors: seconds of firing per frame; coverage grows with it [default: the sensor file's].",
)
@run_options
@renamed("--mount-camera", "mount_camera", "--camera", type=int)
def generate(
    out: str,
    overwrite: bool,
    quiet: bool,
    images: str,
    workers: int,
    address: str | None,
    teacher_actors: int | None,
    **options,
) -> None:
    """Simulate a LiDAR over every photo in --images and write WebDataset shards to --out.

    Re-running the same command resumes: finished shards are kept, unfinished ones redone.
    The run's config is in OUT/manifest.json, its log in OUT/generate.log.
    """
    config = GenerateConfig(images=absolute_location(images), **options)
    run_and_report(config, out, "images", overwrite, quiet, workers, address, teacher_actors)

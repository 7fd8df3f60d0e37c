"""`simlidar sensors`: the catalog as a table, one sensor's spec, a picture of its ray
pattern and of one simulated frame over a bundled scene, sensor files made from a maker's
per-unit figures (`sensors import`), and a sensor's ray drop fitted to real scans
(`sensors fit-drop`)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import click
import numpy as np
import tomllib
from PIL import Image
from simlidar.sensors import MOUNTS, RisleyLidar, Sensor, available_sensors, load_sensor, mount_pose
from simlidar.sensors.camera import invert_pose, transform_directions
from simlidar.sensors.files import read_text_file
from simlidar.sensors.maker_metadata import ouster_spec, velodyne_table_spec, write_sensor_file, write_sensor_text

from ..errors import OptionError, PipelineError
from ..output import pictures
from ..output.drop_fit import fit_drop, sensor_to_fit, with_ray_drop
from ..output.fidelity import read_frame, read_kitti_object_frame
from ..output.preview import check_picture_path
from ..sources.bundled import STREET
from ..stages.scan import simulate_rig_scan
from ..stages.scene import sidecar_camera
from ..stages.target import ray_target
from ..stages.timing import StageTimes
from .grammar import check_sensor, overwrite_option

PICTURE_WIDTH = 1300
PATTERN_HEIGHT = 360
MARGIN = 40


def horizontal_fov_deg(sensor: Sensor) -> float:
    """The horizontal field of view (deg) of a spinning or risley sensor."""
    return sensor.field_of_view_deg()[0] if isinstance(sensor, RisleyLidar) else sensor.horizontal_fov_deg


def sensor_row(sensor: Sensor) -> dict:
    """The figures `sensors list` shows for one sensor."""
    top, bottom = sensor.vertical_fov_deg
    horizontal = horizontal_fov_deg(sensor)
    return {
        "name": sensor.name,
        "kind": sensor.kind,
        "channels": sensor.channels,
        "vertical_fov": f"{top:+.1f}..{bottom:+.1f}",
        "horizontal_fov": f"{horizontal:.1f}",
        "points_per_frame": sensor.points_per_frame,
        "range": f"{sensor.min_range_m:g}-{sensor.max_range_m:g}",
    }


def describe_sensor(sensor: Sensor) -> list[str]:
    """`sensors show` text: every figure of the spec, one per line."""
    lines = [f"{sensor.name} ({sensor.kind}): {sensor.description}", f"source: {sensor.source}"]
    row = sensor_row(sensor)
    lines.append(
        f"channels {row['channels']}, vertical FOV {row['vertical_fov']} deg, horizontal FOV "
        f"{row['horizontal_fov']} deg, {row['points_per_frame']} points per frame"
    )
    if isinstance(sensor, RisleyLidar):
        lines.append(
            f"prisms: rotors {sensor.rotor_rpm[0]:g} / {sensor.rotor_rpm[1]:g} rpm, wedges {sensor.wedge_deg[0]:g} / "
            f"{sensor.wedge_deg[1]:g} deg, index {sensor.refractive_index:g}; emitters at elevation "
            f"{', '.join(f'{e:g}' for e in sensor.emitter_elevation_deg)} deg"
        )
        lines.append(f"{sensor.point_rate_hz:g} points/s, integration time {sensor.integration_time_s:g} s per frame")
    else:
        lines.append(
            f"azimuth step {sensor.azimuth_step_deg:.4g} deg ({sensor.columns} columns) at {sensor.rotation_hz:g} Hz"
            + (", per-channel azimuth offsets" if sensor.azimuth_offsets_deg else "")
        )
        lines.append("elevations (deg, top to bottom): " + ", ".join(f"{e:g}" for e in sensor.elevations_deg))
        if sensor.laser_origins_m:
            reach = max(float(np.linalg.norm(origin)) for origin in sensor.laser_origins_m)
            lines.append(f"per-laser origins (forward, left, up), up to {reach:.3f} m from the LiDAR's origin")
    lines.append(f"range {sensor.min_range_m:g}-{sensor.max_range_m:g} m; default mount {sensor.default_mount}")
    effects = dataclasses.asdict(sensor.effects)
    lines.append("returns: " + ", ".join(f"{name} {value}" for name, value in effects.items()))
    if sensor.ray_drop is not None:
        lines.append(f"ray drop: fitted ({sensor.ray_drop.source})")
    if sensor.published:
        lines.append("published: " + ", ".join(f"{name} {value:g}" for name, value in sensor.published.items()))
    lines.append(f"spec hash {sensor.spec_hash()}")
    return lines


def sensor_picture(sensor: Sensor, scene_photo: Path, rng: np.random.Generator) -> Image.Image:
    """One frame's rays in azimuth and elevation with the scene camera's field of view marked
    (the photo's K, on the sensor's default mount), over one simulated frame of the scene."""
    camera = sidecar_camera(scene_photo, StageTimes())
    T_cam_lidar = mount_pose(MOUNTS[sensor.default_mount])
    width = PICTURE_WIDTH
    photo_height = round(camera.height * (width - 2 * MARGIN) / camera.width)
    figure = pictures.new_figure(width + 110, PATTERN_HEIGHT + photo_height + 4 * MARGIN)
    pattern_axes = pictures.add_axes_px(figure, MARGIN + 30, MARGIN, width - 2 * MARGIN - 30, PATTERN_HEIGHT)
    draw_pattern(pattern_axes, sensor, rng, camera_outline_deg(camera.K, camera.width, camera.height, T_cam_lidar))
    photo_axes = pictures.add_axes_px(figure, MARGIN, PATTERN_HEIGHT + 3 * MARGIN, width - 2 * MARGIN, photo_height)
    bar_axes = pictures.add_axes_px(figure, width - MARGIN + 12, PATTERN_HEIGHT + 3 * MARGIN, 14, photo_height)
    draw_scene(figure, (photo_axes, bar_axes), sensor, camera, T_cam_lidar, rng)
    return Image.fromarray(pictures.to_rgb(figure))


def camera_outline_deg(K: np.ndarray, width: int, height: int, T_cam_lidar: np.ndarray) -> np.ndarray:
    """(N, 2) azimuth and elevation (deg, LiDAR frame) along the border of a camera's image:
    K (3, 3) pixels, the image `width` x `height`, T_cam_lidar (4, 4)."""
    steps = np.linspace(0.0, 1.0, 50)
    u = np.concatenate([steps * width, np.full(50, width), (1 - steps) * width, np.zeros(50)])
    v = np.concatenate([np.zeros(50), steps * height, np.full(50, height), (1 - steps) * height])
    directions_cam = (np.linalg.inv(K) @ np.stack([u, v, np.ones_like(u)])).T
    directions_lidar = transform_directions(invert_pose(T_cam_lidar), directions_cam)
    directions_lidar /= np.linalg.norm(directions_lidar, axis=1, keepdims=True)
    azimuth = np.rad2deg(np.arctan2(directions_lidar[:, 1], directions_lidar[:, 0]))
    return np.stack([azimuth, np.rad2deg(np.arcsin(np.clip(directions_lidar[:, 2], -1, 1)))], axis=1)


def draw_pattern(axes, sensor: Sensor, rng: np.random.Generator, camera_outline: np.ndarray) -> None:
    """One frame's rays as dots in azimuth (x, left to the left, as seen from behind the
    sensor) and elevation (y), coloured by laser, with the camera's view outlined."""
    firing = sensor.fire(rng)
    directions = firing.directions_lidar
    azimuth = np.rad2deg(np.arctan2(directions[:, 1], directions[:, 0]))
    elevation = np.rad2deg(np.arcsin(np.clip(directions[:, 2], -1, 1)))
    # A risley pattern's edge is ragged: a degree of margin either side.
    half_width = horizontal_fov_deg(sensor) / 2 + (1 if isinstance(sensor, RisleyLidar) else 0)
    axes.scatter(azimuth, elevation, c=firing.ring, cmap="viridis", s=1.5, marker=".", linewidths=0, rasterized=True)
    axes.plot(*camera_outline.T, color="black", linestyle="--", linewidth=1.2, label="the --scene camera's view")
    axes.set_xlim(half_width, -half_width)
    lowest, highest = min(elevation.min(), camera_outline[:, 1].min()), max(elevation.max(), camera_outline[:, 1].max())
    axes.set_ylim(lowest - 1, highest + 1)
    axes.set_xlabel("azimuth (deg; + is left)", fontsize=pictures.FONT_SIZE)
    axes.set_ylabel("elevation (deg)", fontsize=pictures.FONT_SIZE)
    axes.set_title(
        f"{sensor.name}: {len(directions)} rays of one frame, coloured by laser (dark: top)",
        fontsize=pictures.FONT_SIZE,
        loc="left",
    )
    axes.grid(alpha=0.3)
    axes.legend(fontsize=pictures.FONT_SIZE - 1, loc="upper right")


def draw_scene(figure, axes: tuple, sensor: Sensor, camera, T_cam_lidar: np.ndarray, rng: np.random.Generator) -> None:
    """One simulated frame of `sensor` on its default mount over a photo with sidecar depth and
    intrinsics: the returns coloured by depth over the dimmed photo, and the depth colour bar."""
    photo_axes, bar_axes = axes
    times = StageTimes()
    target = ray_target(camera.prediction.depth, camera.K, times=times).target
    scan = simulate_rig_scan(target, [camera.scan_camera("luma")], sensor, T_cam_lidar, rng, times)
    near_m, far_m = pictures.depth_range(camera.prediction.depth)
    title = (
        f"{sensor.name} on the {sensor.default_mount} mount over {camera.source_path}: "
        f"{scan.counts['points']} returns, {scan.counts['sparse_pixels']} pixels"
    )
    overlay = pictures.points_over_photo(camera.image.rgb, scan.sparse_depth_m, near_m, far_m)
    pictures.show_image(photo_axes, overlay, title)
    pictures.depth_bar(figure, bar_axes, near_m, far_m)


@click.group()
def sensors() -> None:
    """The sensor catalog: list the presets, show one (and draw it), import a unit's own figures."""


@sensors.command("list")
def list_command() -> None:
    """A table of every catalog sensor: kind, channels, vertical FOV, points per frame, range."""
    header = f"{'name':<13}{'kind':<10}{'channels':>9}{'vertical FOV':>16}{'horiz. FOV':>12}{'points/frame':>14}"
    click.echo(header + f"{'range m':>12}")
    for name in available_sensors():
        row = sensor_row(load_sensor(name))
        click.echo(
            f"{row['name']:<13}{row['kind']:<10}{row['channels']:>9}{row['vertical_fov']:>16}"
            f"{row['horizontal_fov']:>12}{row['points_per_frame']:>14}{row['range']:>12}"
        )
    click.echo("FOV in degrees; a sensor file of your own works wherever a name does (--sensor ./my_lidar.toml)")


@sensors.command("show")
@click.argument("name", callback=check_sensor)
@click.option(
    "--plot",
    default=None,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also draw the ray pattern and one simulated frame over --scene into this PNG.",
)
@click.option(
    "--scene",
    default=STREET,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Photo with sidecar depth and intrinsics for --plot (a bundled street at KITTI's size).",
)
@click.option("--seed", default=0, type=int, help="Seed of the frame's phase and return effects.")
def show_command(name: str, plot: Path | None, scene: Path, seed: int) -> None:
    """Print the spec of NAME (a catalog name or a .toml path)."""
    if plot is not None:
        check_picture_path(plot)
    sensor = load_sensor(name)
    for line in describe_sensor(sensor):
        click.echo(line)
    if plot is None:
        return
    if not scene.is_file():
        raise PipelineError(f"scene photo {scene} does not exist; pass --scene PHOTO (with PHOTO.depth.png beside it)")
    rng = np.random.default_rng(seed)
    sensor_picture(sensor, scene, rng).save(plot)
    click.echo(f"picture in {plot}")


@sensors.group("import")
def import_group() -> None:
    """Write a sensor file from a maker's per-unit figures (beams from the unit; range,
    scan and return effects from a catalog preset)."""


def _read_document(path: Path, kind: str) -> dict:
    """A JSON or TOML file as a dict, or PipelineError naming the file."""
    text = read_text_file(path, f"{kind.upper()} file", PipelineError)
    try:
        document = json.loads(text) if kind == "json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as error:
        raise PipelineError(f"{path}: cannot read it as {kind.upper()} ({error})") from None
    except RecursionError:
        raise PipelineError(f"{path}: nested deeper than a {kind.upper()} file of figures is") from None
    if not isinstance(document, dict):
        raise PipelineError(f"{path}: expected a {kind.upper()} object")
    return document


def _out_file(command):
    """--out, the sensor file to write, and --overwrite: a file already there is kept without it."""
    out = click.option(
        "--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The sensor .toml file to write."
    )
    return out(overwrite_option("Replace the --out file if it exists.")(command))


def _check_new_file(out: Path, overwrite: bool) -> None:
    if out.exists() and not overwrite:
        raise PipelineError(f"--out {out} exists: pass --overwrite to replace it, or give another file")


@import_group.command("ouster")
@click.argument("metadata", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_out_file
@click.option("--name", default="", show_default=False, help="The sensor's name [default: the --out file's stem].")
@click.option("--like", default=None, help="Catalog preset for range and returns [default: os0/os1/os2 by product].")
def import_ouster(metadata: Path, out: Path, overwrite: bool, name: str, like: str | None) -> None:
    """Write a sensor file from an Ouster sensor's METADATA JSON (beam angles and origins)."""
    _check_new_file(out, overwrite)
    spec = ouster_spec(_read_document(metadata, "json"), name or out.stem, like, label=metadata.name)
    sensor = write_sensor_file(spec, out)
    click.echo(f"{out}: {sensor.name}, {sensor.channels} beams, {sensor.columns} columns (simlidar sensors show {out})")


@import_group.command("velodyne")
@click.argument("table", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_out_file
def import_velodyne(table: Path, out: Path, overwrite: bool) -> None:
    """Write a sensor file from a Velodyne-style per-laser TABLE (TOML, one [[laser]] per laser
    with vert_correction_deg, rot_correction_deg, vert_offset_m, horiz_offset_m; see
    sensors/maker_metadata.py)."""
    _check_new_file(out, overwrite)
    sensor = write_sensor_file(velodyne_table_spec(_read_document(table, "toml"), label=table.name), out)
    click.echo(f"{out}: {sensor.name}, {sensor.channels} lasers (simlidar sensors show {out})")


@sensors.command("fit-drop")
@click.option(
    "--sensor",
    "sensor_name",
    default="hdl64-kitti",
    callback=check_sensor,
    help="The spinning sensor: a catalog name or a .toml file.",
)
@click.option(
    "--kitti-object",
    "kitti_objects",
    multiple=True,
    type=click.Path(path_type=Path),
    help="A KITTI object frame DIR/NAME (NAME.bin, NAME.png, NAME.calib.txt, or KITTI's tree); repeat for more.",
)
@click.option(
    "--frame",
    "frames",
    multiple=True,
    nargs=3,
    type=click.Path(path_type=Path),
    help="Any real frame: SCAN (.bin N x 4/5 float32 or .pcd) IMAGE CALIBRATION (a KITTI calib file, or .json/.toml "
    "with T_cam_lidar and K); repeat for more.",
)
@click.option("--camera", default=2, type=int, help="KITTI camera of the frames' images and calibrations.")
@click.option(
    "--match-count/--no-match-count",
    default=True,
    help="Shift the fitted logits so that the expected returns equal the real scans' points in view (the geometry "
    "cannot hold returns on thin structures and edges).",
)
@click.option("--seed", default=0, type=int, help="Seed of the ideal scans' azimuth phase.")
@_out_file
def fit_drop_command(
    sensor_name: str,
    kitti_objects: tuple,
    frames: tuple,
    camera: int,
    match_count: bool,
    seed: int,
    out: Path,
    overwrite: bool,
) -> None:
    """Fit --sensor's ray drop (per laser, range, incidence, luma, greenness) to real scans and write the sensor
    file with it as [ray_drop] to --out (the rest of the file as it is)."""
    if not kitti_objects and not frames:
        raise OptionError(
            "fit-drop needs real frames: give --kitti-object DIR/NAME or --frame SCAN IMAGE CALIBRATION"
        )
    if not out.parent.is_dir():
        raise PipelineError(f"--out {out}: folder {out.parent} does not exist")
    _check_new_file(out, overwrite)
    sensor, sensor_text = sensor_to_fit(sensor_name)
    real = [read_kitti_object_frame(stem, camera) for stem in kitti_objects]
    real += [read_frame(scan, image, calibration, camera) for scan, image, calibration in frames]
    model, figures = fit_drop(real, sensor, seed, match_count)
    for row in figures:
        click.echo(
            f"{row['frame']}: {row['beams']} beams hit the densified scan, {row['returned']} returned in the real "
            f"scan ({row['real_points']} real points in view); the model expects {row['expected']:.0f}"
        )
    click.echo(
        f"fitted on {model.rays} beams ({model.returns} returned): range {model.range_coefficient:+.3f}, incidence "
        f"{model.incidence_coefficient:+.3f}, luma {model.luma_coefficient:+.3f}, greenness "
        f"{model.greenness_coefficient:+.3f}; laser logits {min(model.laser_logit):.2f}..{max(model.laser_logit):.2f}"
    )
    text = with_ray_drop(sensor_text, model)
    try:
        write_sensor_text(text, out)
    except OSError as error:
        raise PipelineError(f"cannot write {out}: {error.strerror or error}") from None
    click.echo(f"{out}: {sensor.name} with its fitted ray drop (simlidar sensors show {out})")

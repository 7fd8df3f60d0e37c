"""A simulated scan against a real one of the same scene (`simlidar fidelity`).

The real scan is projected into its camera; the real sparse map, densified, stands in for
the scene's geometry (what the teacher's depth is in `generate`); the chosen sensor on the
chosen mount is simulated into that geometry with generate's stages (mesh, scan); a naive
pitch-binned line sampler (what simulators without ray casting do) samples the same dense
map. Each of the three sparse maps is described by figures a depth-completion network
feels: valid pixels, density in KITTI's 1216 x 352 crop, rows with points, the first such
row, how well its per-row point count follows the real scan's (Pearson correlation over
the crop's rows binned by 1, 2 and 4), the share of points behind the dense surface
(see-through: > 0.3 m and > 1 m), since every map is compared with the one dense surface,
the share of flying returns (output/flying.py: inside a jump of that surface) and the share
off every surface around them (on a wrong side of a jump, or past it).

Densifying a sparse map into the surface the camera sees: points far behind a near
neighbour (the LiDAR saw past an edge the camera cannot) are set aside, then gaps along
each row (within a ring) and along each column (between rings) are filled by linear
interpolation of inverse depth, exact on planes such as the road; across a depth edge the
nearer side fills the gap; the surface is smoothed within each side of its edges. Nothing
is made above a column's top point, so the geometry ends where the real scan does; below
its bottom point the road is continued for about two rings.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from simlidar.sensors import Calibration, CalibrationError, Sensor, read_calibration
from simlidar.sensors.camera import backproject, invert_pose, sparse_depth_image, transform_points
from simlidar.sensors.targets import RayTarget

from ..errors import PipelineError
from ..sources.calibrated_rig_lidar import read_sweep
from ..stages.edges import EdgeOptions, handle_edges
from ..stages.mesh import MeshOptions
from ..stages.scan import photo_scan_camera, simulate_rig_scan, with_calibration_error
from ..stages.target import ray_target
from . import pictures
from .flying import beyond_share, blur_depth, flying_share, shifted
from .scan_metrics import F_SCORE_THRESHOLD_M, scan_figures

CROP_HEIGHT, CROP_WIDTH = 352, 1216
PROFILE_BINS = (1, 2, 4)
SEE_THROUGH_M = (0.3, 1.0)
# Densifying: a point is set aside when a neighbour within HIDDEN_WINDOW_PX is nearer by
# more than HIDDEN_RATIO of its depth and SEE_THROUGH_M[0]; gaps up to ROW_GAP_PX along a
# row and COLUMN_GAP_PX along a column are filled, interpolated unless the two sides differ
# in depth by more than EDGE_RATIO_PER_PX per pixel of the gap (the road between two far
# rings changes by a few percent per pixel) or by more than MAX_INTERPOLATED_RATIO.
HIDDEN_WINDOW_PX = 3
HIDDEN_RATIO = 0.1
ROW_GAP_PX = 4
COLUMN_GAP_PX = 24
EDGE_RATIO = 0.1
EDGE_RATIO_PER_PX = 0.03
MAX_INTERPOLATED_RATIO = 1.3


@dataclass(frozen=True)
class RealFrame:
    """A real LiDAR frame and its camera: rgb (H, W, 3) uint8, points_lidar (N, 3) float64
    (m, LiDAR frame), calibration (T_cam_lidar and K of the image's camera), name."""

    rgb: np.ndarray
    points_lidar: np.ndarray
    calibration: Calibration
    name: str


def _kitti_file(stem: Path, flat_suffix: str, folder: str, suffix: str) -> Path:
    """A frame's file in the flat layout (DIR/NAME.bin) or KITTI's tree (ROOT/velodyne/NAME.bin
    beside ROOT/image_2/, ROOT/calib/); the flat one where neither exists (for the error)."""
    tree = stem.parent.parent / folder / f"{stem.name}{suffix}"
    return tree if not stem.with_suffix(flat_suffix).is_file() and tree.is_file() else stem.with_suffix(flat_suffix)


def read_kitti_object_frame(stem: str | Path, camera: int = 2) -> RealFrame:
    """KITTI object frame DIR/NAME: NAME.bin (N x 4 float32 scan), NAME.png (the image of
    `camera`) and NAME.calib.txt, or KITTI's tree ROOT/velodyne/NAME.bin, ROOT/image_2/NAME.png
    and ROOT/calib/NAME.txt. Raises PipelineError naming what is missing or wrong."""
    stem = Path(stem)
    scan_path = _kitti_file(stem, ".bin", "velodyne", ".bin")
    image_path = _kitti_file(stem, ".png", f"image_{camera}", ".png")
    calib_path = _kitti_file(stem, ".calib.txt", "calib", ".txt")
    return read_frame(scan_path, image_path, calib_path, camera, stem.name)


def read_frame(scan: Path, image: Path, calibration: Path, camera: int = 2, name: str = "") -> RealFrame:
    """Any real frame: a scan (.bin N x 4 or N x 5 float32, or .pcd; LiDAR frame), its camera's
    image and a calibration with that camera's K (a KITTI calib file, or .json/.toml with
    T_cam_lidar and K; `camera` picks KITTI's). Raises PipelineError naming what is missing or wrong."""
    name = name or Path(scan).stem
    for path in (scan, image, calibration):
        if not Path(path).is_file():
            raise PipelineError(f"frame {name}: {path} does not exist")
    try:
        rgb = np.asarray(Image.open(image).convert("RGB"))
        found = read_calibration(calibration, camera)
    except (OSError, CalibrationError) as error:
        raise PipelineError(f"frame {name}: {error}") from None
    if found.K is None:
        raise PipelineError(f"{calibration}: gives no intrinsics (K) for camera {camera}")
    height, width = rgb.shape[:2]
    cx, cy = found.K[0, 2], found.K[1, 2]
    if not (0 < cx < width - 1 and 0 < cy < height - 1) or abs(cx - width / 2) > width / 4:
        raise PipelineError(
            f"{image} is {width}x{height}, but {Path(calibration).name}'s principal point ({cx:.1f}, {cy:.1f}) does "
            "not sit near its middle: not the image the calibration is for (resized or cropped?); give the frame's own"
        )
    return RealFrame(rgb, read_sweep(Path(scan)).points_lidar, found, name)


def project_scan(points_lidar: np.ndarray, T_cam_lidar: np.ndarray, K: np.ndarray, width: int, height: int):
    """(H, W) float32 sparse camera-z depth (m) of points (N, 3, LiDAR frame) seen with
    T_cam_lidar (4, 4) by K (3, 3); nearest point per pixel."""
    return sparse_depth_image(transform_points(T_cam_lidar, points_lidar), K, width, height)[0]


def hidden_points(sparse_m: np.ndarray) -> np.ndarray:
    """(H, W) bool: points of a sparse map (m, 0 = none) far behind a near neighbour."""
    depth = np.where(sparse_m > 0, sparse_m, np.inf)
    nearest = depth.copy()
    reach = range(-HIDDEN_WINDOW_PX, HIDDEN_WINDOW_PX + 1)
    for dv in reach:
        for du in reach:
            nearest = np.minimum(nearest, shifted(depth, dv, du, np.inf))
    margin = np.maximum(SEE_THROUGH_M[0], HIDDEN_RATIO * sparse_m)
    return (sparse_m > 0) & (nearest < sparse_m - margin)


def fill_gaps(depth_m: np.ndarray, max_gap: int) -> np.ndarray:
    """Fill gaps of up to max_gap pixels along each row between two valid pixels: inverse
    depth interpolated linearly, or the nearer side across a depth edge (see
    EDGE_RATIO_PER_PX). depth_m: (H, W) metres, 0 = none."""
    height, width = depth_m.shape
    valid = depth_m > 0
    column = np.broadcast_to(np.arange(width), (height, width))
    before = np.maximum.accumulate(np.where(valid, column, -1), axis=1)
    after = np.minimum.accumulate(np.where(valid, column, width)[:, ::-1], axis=1)[:, ::-1]
    inside = ~valid & (before >= 0) & (after < width) & (after - before <= max_gap)
    rows = np.nonzero(inside)[0]
    left, right = depth_m[rows, before[inside]], depth_m[rows, after[inside]]
    share = (column[inside] - before[inside]) / (after[inside] - before[inside])
    interpolated = 1.0 / ((1.0 - share) / left + share / right)
    gap = after[inside] - before[inside]
    allowed = np.minimum((1.0 + EDGE_RATIO_PER_PX) ** gap, MAX_INTERPOLATED_RATIO)
    edge = np.maximum(left, right) > allowed * np.minimum(left, right)
    filled = depth_m.copy()
    filled[inside] = np.where(edge, np.minimum(left, right), interpolated)
    return filled


def smooth_surface(depth_m: np.ndarray) -> np.ndarray:
    """Mean inverse depth over each pixel's 3 x 3 neighbours on the same surface (within
    EDGE_RATIO of its depth): takes out the scan's range noise and ring-to-ring steps, which
    would otherwise break the mesh into speckled holes. (H, W) m, 0 = none."""
    valid = depth_m > 0
    inverse = np.where(valid, 1.0 / np.where(valid, depth_m, 1.0), 0.0)
    total, count = np.zeros_like(inverse), np.zeros_like(inverse)
    for dv in (-1, 0, 1):
        for du in (-1, 0, 1):
            neighbour = shifted(inverse, dv, du, 0.0)
            same = (neighbour > 0) & (np.abs(neighbour - inverse) <= EDGE_RATIO * inverse)
            total += np.where(same, neighbour, 0.0)
            count += same
    return np.where(valid, 1.0 / np.maximum(total / np.maximum(count, 1), 1e-9), 0.0)


def extend_ground_down(depth_m: np.ndarray, rows: int = COLUMN_GAP_PX, baseline: int = 6) -> np.ndarray:
    """Continue each column below its bottom pixel for up to `rows` rows where the surface
    there comes nearer downward (the road): inverse depth extrapolated linearly from the
    `baseline` rows above, exact for a plane. The LiDAR's lowest ring in view then still
    finds ground just below the real scan's lowest one. (H, W) m, 0 = none."""
    height, width = depth_m.shape
    valid = depth_m > 0
    bottom = height - 1 - np.argmax(valid[::-1], axis=0)
    columns = np.arange(width)
    above = np.clip(bottom - baseline, 0, height - 1)
    inverse_bottom = 1.0 / np.where(valid[bottom, columns], depth_m[bottom, columns], np.inf)
    inverse_above = 1.0 / np.where(valid[above, columns], depth_m[above, columns], np.inf)
    slope = (inverse_bottom - inverse_above) / baseline
    ground = valid.any(axis=0) & (inverse_above > 0) & (slope > 0)
    extended = depth_m.copy()
    for step in range(1, rows + 1):
        row = bottom + step
        take = ground & (row < height)
        extended[row[take], columns[take]] = 1.0 / (inverse_bottom[take] + step * slope[take])
    return extended


def densify(sparse_m: np.ndarray) -> np.ndarray:
    """(H, W) float32 dense surface the camera sees, from a sparse map (m, 0 = none); see
    the module docstring."""
    visible = np.where(hidden_points(sparse_m), 0.0, sparse_m).astype(np.float64)
    along_rows = fill_gaps(visible, ROW_GAP_PX)
    between_rings = fill_gaps(along_rows.T, COLUMN_GAP_PX).T
    # Columns no ring point fell in are filled from their neighbours.
    surface = smooth_surface(fill_gaps(between_rings, 2 * ROW_GAP_PX))
    # The scan's own (visible) points stay exact: the surface passes through them.
    surface = np.where(visible > 0, visible, surface)
    return grow_one_pixel(extend_ground_down(surface)).astype(np.float32)


def grow_one_pixel(depth_m: np.ndarray) -> np.ndarray:
    """Each empty pixel next to the surface (4-neighbours) takes its nearest such neighbour's
    depth. A grid mesh spans pixel centres, so a surface would end half a pixel short of its
    last pixels, and a ray of the laser that made such a pixel would miss it half the time.
    (H, W) m, 0 = none."""
    valid = np.where(depth_m > 0, depth_m, np.inf)
    nearest = np.min([shifted(valid, dv, du, np.inf) for dv, du in ((1, 0), (-1, 0), (0, 1), (0, -1))], axis=0)
    return np.where((depth_m > 0) | ~np.isfinite(nearest), depth_m, np.where(np.isfinite(nearest), nearest, 0.0))


def naive_line_sampler(dense_m: np.ndarray, K: np.ndarray, T_cam_lidar: np.ndarray, sensor: Sensor) -> np.ndarray:
    """(H, W) float32 sparse map a naive simulator makes from a dense map (m): the pixels
    whose direction from the LiDAR (T_cam_lidar, 4x4) lies within half a pixel of one of
    `sensor.channels` evenly spaced pitch lines between its top and bottom beam, and of a
    multiple of its azimuth step; no ray is cast, so nothing is hidden or seen through."""
    points_lidar = transform_points(invert_pose(T_cam_lidar), backproject(dense_m, K).reshape(-1, 3))
    pitch = np.arctan2(points_lidar[:, 2], np.hypot(points_lidar[:, 0], points_lidar[:, 1]))
    azimuth = np.arctan2(points_lidar[:, 1], points_lidar[:, 0])
    top, bottom = np.deg2rad(sensor.vertical_fov_deg)
    line_step = (top - bottom) / max(sensor.channels - 1, 1)
    azimuth_step = np.deg2rad(360.0 / max(sensor.points_per_frame // sensor.channels, 1))
    half_pixel = 0.5 / K[1, 1]
    line_offset = np.abs(pitch - top - np.round((pitch - top) / line_step) * line_step)
    column_offset = np.abs(azimuth - np.round(azimuth / azimuth_step) * azimuth_step)
    on_line = (pitch <= top + half_pixel) & (pitch >= bottom - half_pixel) & (line_offset <= half_pixel)
    keep = (dense_m.reshape(-1) > 0) & on_line & (column_offset <= max(half_pixel, 0.5 / K[0, 0]))
    return np.where(keep, dense_m.reshape(-1), 0.0).reshape(dense_m.shape).astype(np.float32)


def crop(image: np.ndarray) -> np.ndarray:
    """The bottom-centred CROP_HEIGHT x CROP_WIDTH window of an (H, W) image (KITTI's crop)."""
    height, width = image.shape[:2]
    left = max((width - CROP_WIDTH) // 2, 0)
    return image[max(height - CROP_HEIGHT, 0) :, left : left + CROP_WIDTH]


def row_profile(sparse_m: np.ndarray) -> np.ndarray:
    """(crop rows,) number of points in each row of the crop."""
    return np.count_nonzero(crop(sparse_m), axis=1)


def profile_correlation(profile: np.ndarray, reference: np.ndarray, rows: int) -> float:
    """Pearson correlation of two row profiles summed over bins of `rows` rows (0 when
    either is flat)."""
    bins = len(profile) // rows
    binned = profile[: bins * rows].reshape(bins, rows).sum(axis=1).astype(np.float64)
    binned_reference = reference[: bins * rows].reshape(bins, rows).sum(axis=1).astype(np.float64)
    if binned.std() == 0 or binned_reference.std() == 0:
        return 0.0
    return float(np.corrcoef(binned, binned_reference)[0, 1])


def map_figures(sparse_m: np.ndarray, dense_m: np.ndarray, reference_profile: np.ndarray) -> dict:
    """The figures of one sparse map (H, W, m) against the dense surface and the real
    scan's row profile (see the module docstring)."""
    valid = sparse_m > 0
    in_crop = crop(sparse_m) > 0
    rows = np.nonzero(in_crop.any(axis=1))[0]
    behind = (sparse_m - dense_m)[valid & (dense_m > 0)]
    profile = row_profile(sparse_m)
    figures = {
        "valid_px": int(valid.sum()),
        "crop_density": float(in_crop.mean()),
        "crop_rows": len(rows),
        "first_crop_row": int(rows.min()) if len(rows) else -1,
    }
    figures |= {f"correlation_{rows}": profile_correlation(profile, reference_profile, rows) for rows in PROFILE_BINS}
    count = max(int(valid.sum()), 1)
    figures |= {f"see_through_{limit:g}m": float((behind > limit).sum() / count) for limit in SEE_THROUGH_M}
    figures["flying"] = flying_share(sparse_m, dense_m)
    figures["beyond"] = beyond_share(sparse_m, dense_m)
    return figures


@dataclass
class FidelityReport:
    """The three sparse maps (H, W, m), the dense surface (H, W, m) and their figures."""

    maps: dict[str, np.ndarray]
    dense_m: np.ndarray
    figures: dict[str, dict]


def fidelity_report(
    frame: RealFrame,
    sensor: Sensor,
    T_cam_lidar: np.ndarray,
    rng: np.random.Generator,
    mesh_options: MeshOptions | None = None,
    T_error: np.ndarray | None = None,
    teacher_blur: tuple[str, int] | None = None,
    edges: EdgeOptions | None = None,
) -> FidelityReport:
    """Real scan, simulation of `sensor` at T_cam_lidar (4, 4) into the densified real scan
    (recorded with a calibration error T_error (4, 4, LiDAR frame) when given), and the
    naive sampler, with their figures (map_figures). teacher_blur: (kind, factor) of
    output/flying.py's blur_depth: the simulation and the naive sampler get that soft copy
    of the densified scan as a teacher's depth, the simulation after the edge rule
    `edges` as generate applies it (None: no rule); figures stay against the sharp
    densified scan."""
    height, width = frame.rgb.shape[:2]
    K = frame.calibration.K
    real, dense_m = real_depth(frame)
    if not real.any():
        raise PipelineError(f"{frame.name}: its real scan lands on no pixel of its image: check its calibration")
    teacher_m = dense_m if teacher_blur is None else blur_depth(dense_m, *teacher_blur)
    handled_m = teacher_m if edges is None else handle_edges(teacher_m, frame.rgb, edges).depth_m
    target = ray_target(handled_m, K, mesh_options).target
    scan = simulate_rig_scan(target, [photo_scan_camera(K, frame.rgb)], sensor, T_cam_lidar, rng)
    T_recorded = T_cam_lidar
    if T_error is not None:
        scan, T_recorded = with_calibration_error(scan, T_cam_lidar, K, width, height, T_error)
    maps = {
        "real": real,
        "simulated": scan.sparse_depth_m,
        "naive": naive_line_sampler(teacher_m, K, T_cam_lidar, sensor),
    }
    reference = row_profile(real)
    figures = {name: map_figures(sparse, dense_m, reference) for name, sparse in maps.items()}
    naive_cam = backproject(maps["naive"], K)[maps["naive"] > 0]
    clouds = {
        "real": (frame.points_lidar, None, frame.calibration.T_cam_lidar),
        "simulated": (scan.points_lidar[:, :3].astype(np.float64), scan.points_lidar[:, 4], T_recorded),
        "naive": (transform_points(invert_pose(T_cam_lidar), naive_cam), None, T_cam_lidar),
    }
    for name, (points_lidar, ring, T_cam) in clouds.items():
        figures[name] |= scan_figures(
            points_lidar, ring, frame.points_lidar, sensor, T_cam, frame.calibration.T_cam_lidar, K, width, height
        )
    return FidelityReport(maps, dense_m, figures)


def real_geometry(
    frame: RealFrame, mesh_options: MeshOptions | None = None
) -> tuple[np.ndarray, np.ndarray, RayTarget]:
    """A real frame's sparse map (H, W, m), its densified surface (H, W, m) and that surface
    as a ray target (camera frame) by the mesh method of `mesh_options` (None: the default)."""
    real, dense_m = real_depth(frame)
    return real, dense_m, ray_target(dense_m, frame.calibration.K, mesh_options).target


def real_depth(frame: RealFrame) -> tuple[np.ndarray, np.ndarray]:
    """A real frame's sparse map (H, W, m) and its densified surface (H, W, m)."""
    height, width = frame.rgb.shape[:2]
    real = project_scan(frame.points_lidar, frame.calibration.T_cam_lidar, frame.calibration.K, width, height)
    return real, densify(real)


_ROWS = (
    ("valid pixels", "valid_px", "{:.0f}"),
    ("density in the 1216x352 crop", "crop_density", "{:.2%}"),
    ("crop rows with points", "crop_rows", "{:.0f}"),
    ("first crop row with points", "first_crop_row", "{:.0f}"),
    *((f"row-profile correlation, {rows} row(s)", f"correlation_{rows}", "{:.3f}") for rows in PROFILE_BINS),
    *((f"see-through > {limit:g} m", f"see_through_{limit:g}m", "{:.2%}") for limit in SEE_THROUGH_M),
    ("flying returns", "flying", "{:.2%}"),
    ("returns off every surface around", "beyond", "{:.2%}"),
    ("Chamfer distance (m)", "chamfer_m", "{:.3f}"),
    ("Chamfer, squared (m^2)", "chamfer_squared_m2", "{:.3f}"),
    (f"F-score at {F_SCORE_THRESHOLD_M:.3f} m", "f_score", "{:.3f}"),
    ("ray-drop accuracy (range image)", "drop_accuracy", "{:.3f}"),
    ("ray-drop F1 (range image)", "drop_f1", "{:.3f}"),
    ("range RMSE where both return (m)", "range_rmse_m", "{:.3f}"),
    ("range median error, both (m)", "range_median_error_m", "{:.3f}"),
)


def format_table(figures: dict[str, dict]) -> str:
    """The figures of each map side by side, one figure per line."""
    names = list(figures)
    lines = [f"{'':36s}" + "".join(f"{name:>12s}" for name in names)]
    for label, key, pattern in _ROWS:
        if all(key in figures[name] for name in names):
            lines.append(f"{label:36s}" + "".join(f"{pattern.format(figures[name][key]):>12s}" for name in names))
    return "\n".join(lines)


def fidelity_picture(report: FidelityReport, rgb: np.ndarray, title: str) -> Image.Image:
    """The three sparse maps over the dimmed image, each titled with its figures, on one depth
    scale with its colour bar; then their row profiles on axes with the correlations in the legend."""
    height, width = rgb.shape[:2]
    near_m, far_m = pictures.depth_range(report.dense_m)
    panel_height, chart_height, title_band, margin = height, 300, 44, 90
    total = len(report.maps) * (panel_height + title_band) + chart_height + 2 * title_band
    figure = pictures.new_figure(width + 2 * margin, total)
    top = 0
    for name, sparse in report.maps.items():
        top += title_band
        axes = pictures.add_axes_px(figure, margin, top, width, panel_height)
        overlay = pictures.points_over_photo(rgb, sparse, near_m, far_m)
        pictures.show_image(axes, overlay, _map_title(title, name, report))
        top += panel_height
    bar_axes = pictures.add_axes_px(figure, margin + width + 12, title_band, 14, top - title_band)
    pictures.depth_bar(figure, bar_axes, near_m, far_m)
    _profile_chart(pictures.add_axes_px(figure, margin, top + title_band, width, chart_height - 50), report, height)
    return Image.fromarray(pictures.to_rgb(figure))


def _map_title(title: str, name: str, report: FidelityReport) -> str:
    figures = report.figures[name]
    text = f"{title}: {name}, {figures['valid_px']} px, {figures['crop_density']:.2%} of the crop"
    if name != "real":
        correlations = "/".join(f"{figures[f'correlation_{rows}']:.2f}" for rows in PROFILE_BINS)
        text += f"; row-profile correlation with real ({'/'.join(map(str, PROFILE_BINS))} rows) {correlations}"
    return text + f"; flying {figures['flying']:.1%}"


_COLOURS = {"real": "black", "simulated": "tab:red", "naive": "tab:blue"}


def _profile_chart(axes, report: FidelityReport, image_height: int) -> None:
    """Points per row of KITTI's crop (x: the image row, top to bottom) of each map."""
    first_row = max(image_height - CROP_HEIGHT, 0)
    for name, sparse in report.maps.items():
        profile = row_profile(sparse)
        label = name if name == "real" else f"{name} (correlation {report.figures[name]['correlation_1']:.3f})"
        axes.plot(first_row + np.arange(len(profile)), profile, color=_COLOURS[name], linewidth=1.2, label=label)
    axes.set_xlabel(f"image row (the {CROP_WIDTH}x{CROP_HEIGHT} crop, top to bottom)", fontsize=pictures.FONT_SIZE)
    axes.set_ylabel("points per row", fontsize=pictures.FONT_SIZE)
    axes.set_title("row profile: LiDAR points in each image row", fontsize=pictures.FONT_SIZE, loc="left")
    axes.legend(fontsize=pictures.FONT_SIZE - 1, loc="upper left")
    axes.grid(alpha=0.3)

"""The one look of every picture simlidar draws: one depth colormap (near bright, far dark, on
log depth so that near structure gets as many colours as far), "no data" a neutral grey that no
depth has, a separate colormap for errors, colour bars in metres, titles and labels at a
readable size. Drawn with matplotlib's Agg canvas (headless; pyplot and its global backend are
never touched), returned as RGB arrays. `inspect`, `eval` and TensorBoard, `fidelity` and
`sensors show` all draw through here, and `train` imports it (only it and the schema) so that
its previews share the palette."""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Colormap, LogNorm, Normalize
from matplotlib.figure import Figure

# Near bright yellow, far dark blue (never black): depth_norm maps near to 0, far to 1.
DEPTH_COLORMAP = "plasma_r"
# Errors in another hue family (white -> dark red) so that no colour means both near and wrong.
ERROR_COLORMAP = "Reds"
NO_DATA_RGB = (0.6, 0.6, 0.6)
DPI = 100
FONT_SIZE = 10
# Photos under sparse points are dimmed so that the points' colours stand out.
DIMMED = 0.35


def depth_colormap() -> Colormap:
    """The depth colormap, with "no data" (masked or NaN) in NO_DATA_RGB."""
    return colormaps[DEPTH_COLORMAP].with_extremes(bad=NO_DATA_RGB)


def error_colormap() -> Colormap:
    return colormaps[ERROR_COLORMAP].with_extremes(bad=NO_DATA_RGB)


def depth_range(depth_m: np.ndarray) -> tuple[float, float]:
    """(near, far) metres a picture of the (H, W) depth spans: its 1st and 99th percentiles of
    valid depth (far at least 1.5 x near), or 1-80 m where it has none."""
    valid = depth_m[np.isfinite(depth_m) & (depth_m > 0)]
    near_m = float(np.percentile(valid, 1)) if valid.size else 1.0
    far_m = float(np.percentile(valid, 99)) if valid.size else 80.0
    return near_m, max(far_m, 1.5 * near_m)


def depth_norm(near_m: float, far_m: float) -> LogNorm:
    """Depth in metres -> 0 (near) .. 1 (far), linear in log depth."""
    if not 0 < near_m < far_m:
        raise ValueError(f"depth range must be 0 < near < far, got {near_m}, {far_m}")
    return LogNorm(vmin=near_m, vmax=far_m, clip=True)


def colour_depth(depth_m: np.ndarray, near_m: float, far_m: float) -> np.ndarray:
    """(H, W) metres -> (H, W, 3) uint8 in the depth colormap; 0 or NaN (no data) in NO_DATA_RGB."""
    masked = np.ma.masked_where(~(np.isfinite(depth_m) & (depth_m > 0)), depth_m)
    return (depth_colormap()(depth_norm(near_m, far_m)(masked))[..., :3] * 255).round().astype(np.uint8)


def points_over_photo(rgb: np.ndarray, sparse_m: np.ndarray, near_m: float, far_m: float) -> np.ndarray:
    """(H, W, 3) uint8: the photo dimmed, each sparse point (grown to 3x3 so it shows) in its depth's colour."""
    grown = spread_points(sparse_m, radius=1)
    overlay = (rgb * DIMMED).astype(np.uint8)
    overlay[grown > 0] = colour_depth(grown, near_m, far_m)[grown > 0]
    return overlay


def spread_points(depth_m: np.ndarray, radius: int) -> np.ndarray:
    """Grow each valid pixel of a sparse (H, W) map into its empty neighbours within
    `radius` (the nearest depth wins), so single LiDAR points are visible when drawn."""
    grown = depth_m.copy()
    for dv in range(-radius, radius + 1):
        for du in range(-radius, radius + 1):
            shifted = np.roll(np.roll(depth_m, dv, axis=0), du, axis=1)
            take = (shifted > 0) & ((grown == 0) | (shifted < grown))
            grown[take] = shifted[take]
    return grown


def new_figure(width_px: int, height_px: int) -> Figure:
    """A blank white figure of `width_px` x `height_px` pixels (Agg canvas attached)."""
    figure = Figure(figsize=(width_px / DPI, height_px / DPI), dpi=DPI, facecolor="white")
    FigureCanvasAgg(figure)
    return figure


def add_axes_px(figure: Figure, left: float, top: float, width: float, height: float):
    """Axes at a box given in pixels from the figure's top left corner."""
    figure_width, figure_height = figure.bbox.width, figure.bbox.height
    return figure.add_axes(
        (left / figure_width, 1 - (top + height) / figure_height, width / figure_width, height / figure_height)
    )


def to_rgb(figure: Figure) -> np.ndarray:
    """The figure drawn: (height_px, width_px, 3) uint8."""
    figure.canvas.draw()
    return np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()


def show_image(axes, image: np.ndarray, title: str) -> None:
    """An RGB (H, W, 3) uint8 image on `axes`, pixel-exact, titled, without ticks."""
    axes.imshow(image, interpolation="nearest", aspect="auto")
    axes.set_title(title, fontsize=FONT_SIZE, loc="left", pad=3)
    axes.set_axis_off()


def depth_bar(figure: Figure, bar_axes, near_m: float, far_m: float, label: str = "depth (m)", **options) -> None:
    """The depth colour bar on `bar_axes`, ticked in metres, with the no-data colour named."""
    bar = figure.colorbar(_mappable(depth_colormap(), depth_norm(near_m, far_m)), cax=bar_axes, **options)
    ticks = _depth_ticks(near_m, far_m)
    bar.ax.minorticks_off()
    bar.set_ticks(ticks, labels=[f"{tick:g}" for tick in ticks])
    bar.ax.tick_params(labelsize=FONT_SIZE - 1)
    bar.set_label(f"{label}; grey: no data", fontsize=FONT_SIZE - 1)


def error_bar(figure: Figure, bar_axes, high_m: float, label: str = "absolute error (m)", **options) -> None:
    """The error colour bar (0 .. `high_m` metres, more shown as the top colour) on `bar_axes`."""
    bar = figure.colorbar(_mappable(error_colormap(), Normalize(0.0, high_m, clip=True)), cax=bar_axes, **options)
    bar.ax.tick_params(labelsize=FONT_SIZE - 1)
    bar.set_label(f"{label}; grey: no ground truth", fontsize=FONT_SIZE - 1)


def colour_error(error_m: np.ndarray, high_m: float) -> np.ndarray:
    """(H, W) absolute error in metres (NaN: no ground truth) -> (H, W, 3) uint8 in the error colormap."""
    masked = np.ma.masked_invalid(error_m)
    return (error_colormap()(Normalize(0.0, high_m, clip=True)(masked))[..., :3] * 255).round().astype(np.uint8)


def _mappable(colormap: Colormap, norm):
    from matplotlib.cm import ScalarMappable

    return ScalarMappable(norm=norm, cmap=colormap)


def _depth_ticks(near_m: float, far_m: float, fewest_apart: float = 0.12) -> list[float]:
    """Near, far and round metre values between them at least `fewest_apart` of the (log) bar apart."""
    ticks = [round(near_m, 1)]
    span = np.log(far_m / near_m)
    for value in (0.5, 1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 70, 100, 150, 200):
        if np.log(value / ticks[-1]) / span >= fewest_apart and np.log(far_m / value) / span >= fewest_apart:
            ticks.append(value)
    return [*ticks, round(far_m, 1)]

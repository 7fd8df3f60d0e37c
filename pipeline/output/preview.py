"""Pictures of samples a person can look at: per sample its RGB, its sparse LiDAR over the
dimmed RGB and its dense depth side by side, samples of any sizes packed into full-width rows
(justified: each row's images scaled to one height that fills the sheet's width), one depth
scale and colour bar for the sheet; and a picture path checked before work."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import OptionError
from . import pictures

SHEET_WIDTH = 1800
ROW_HEIGHT = 220
GAP = 6
TITLE_BAND = 20
BAR_BAND = 70
MAX_ASPECT = 8.0
# Wide enough for the colour bar's ticks however narrow the samples.
MIN_SHEET_WIDTH = 640


def check_picture_path(path: Path, option: str = "`plot`") -> None:
    """Refuse, before any work, a picture path that cannot be written: a folder that does not
    exist, or a name without an image extension Pillow writes."""
    Image.init()
    image_format = Image.registered_extensions().get(path.suffix.lower())
    if image_format not in Image.SAVE:
        raise OptionError(f"{option} {path}: give a picture file name ending in .png or .jpg")
    if not path.parent.is_dir():
        raise OptionError(f"{option} {path}: the folder {path.parent} does not exist; make it first")


@dataclass(frozen=True)
class PreviewSample:
    """One sample as the contact sheet shows it: rgb (H, W, 3) uint8, sparse and dense (H, W) metres."""

    key: str
    rgb: np.ndarray
    sparse_m: np.ndarray
    dense_m: np.ndarray

    @classmethod
    def decode(cls, key: str, image: bytes, sparse_m: np.ndarray, dense_m: np.ndarray) -> PreviewSample:
        rgb = np.asarray(Image.open(io.BytesIO(image)).convert("RGB"))
        return cls(key, rgb, sparse_m, dense_m)

    @property
    def strip_aspect(self) -> float:
        """Width over height of the sample's three images side by side; an image beyond 8:1
        either way is drawn squeezed to 8:1 (a panorama 50 times wider than high would be a line)."""
        height, width = self.dense_m.shape
        return 3 * min(max(width / height, 1 / MAX_ASPECT), MAX_ASPECT)


def justified_rows(aspects: list[float], width: int, target_height: int, gap: int) -> list[tuple[list[int], float]]:
    """Items of the given width/height `aspects` in rows filling `width` (gaps between items):
    [(item indices, row height)]. A row is closed where it fills the width at the height nearest
    `target_height` (with the item that overfills it, or without), each row scaled to fill the
    width exactly; the last row keeps `target_height` unless that is too wide."""

    def fill_height(items: list[int]) -> float:
        return (width - gap * (len(items) - 1)) / sum(aspects[i] for i in items)

    rows, current = [], []
    for index in range(len(aspects)):
        if fill_height([*current, index]) > target_height:
            current.append(index)
            continue
        with_it, without_it = fill_height([*current, index]), fill_height(current) if current else np.inf
        if abs(np.log(with_it / target_height)) <= abs(np.log(without_it / target_height)):
            rows.append(([*current, index], with_it))
            current = []
        else:
            rows.append((current, without_it))
            current = [index]
    if current:
        rows.append((current, min(float(target_height), fill_height(current))))
    return rows


def contact_sheet(samples: list[PreviewSample], width: int = SHEET_WIDTH, row_height: int = ROW_HEIGHT) -> Image.Image:
    """The samples in justified rows about `row_height` high, each as RGB | LiDAR over RGB |
    dense depth, titled, on one depth scale (the sheet's dense depth) with its colour bar in
    metres at the bottom. A sheet of one short row is as wide as the row."""
    rows = justified_rows([sample.strip_aspect for sample in samples], width, row_height, 3 * GAP)
    if len(rows) == 1:
        indices, height = rows[0]
        content = round(sum(samples[i].strip_aspect for i in indices) * height + 3 * GAP * (len(indices) - 1))
        width = max(min(width, content), MIN_SHEET_WIDTH)
    height = sum(round(row_height) + TITLE_BAND + GAP for _, row_height in rows) + BAR_BAND
    figure = pictures.new_figure(width, height)
    near_m, far_m = pictures.depth_range(np.concatenate([sample.dense_m.ravel() for sample in samples]))
    top = 0
    for indices, row_height in rows:
        top += TITLE_BAND
        left = 0.0
        for index in indices:
            left = _draw_sample(figure, samples[index], (left, top, row_height), (near_m, far_m))
            left += 3 * GAP
        top += round(row_height) + GAP
    bar_axes = pictures.add_axes_px(figure, width / 4, height - BAR_BAND + 10, width / 2, 14)
    pictures.depth_bar(figure, bar_axes, near_m, far_m, orientation="horizontal")
    return Image.fromarray(pictures.to_rgb(figure))


def _draw_sample(figure, sample: PreviewSample, place: tuple, depth_range: tuple) -> float:
    """The sample's three images from pixel (left, top) at `row_height`; the x after them."""
    left, top, row_height = place
    # The strip, its two gaps included, is as wide as justified_rows counted it.
    image_width = (row_height * sample.strip_aspect - 2 * GAP) / 3
    panels = (
        sample.rgb,
        pictures.points_over_photo(sample.rgb, sample.sparse_m, *depth_range),
        pictures.colour_depth(sample.dense_m, *depth_range),
    )
    title = f"{sample.key}: RGB | simulated LiDAR over RGB | dense depth (teacher)"
    for index, image in enumerate(panels):
        axes = pictures.add_axes_px(figure, left, top, image_width, row_height)
        pictures.show_image(axes, image, "" if index else title)
        left += image_width + GAP
    return left - GAP

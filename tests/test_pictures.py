"""Every picture's one look: no data is grey, never the far colour; a depth's colour in a picture
is the colour its colour bar shows at that depth; contact sheets of mixed sizes fill their rows;
eval's preview has its panels and its own error colours; the sensor plot's camera outline."""

import io

import numpy as np
import pytest
from matplotlib.colors import to_rgb
from PIL import Image
from simlidar.pipeline.cli.sensors import camera_outline_deg
from simlidar.pipeline.output import pictures
from simlidar.pipeline.output.preview import BAR_BAND, GAP, TITLE_BAND, PreviewSample, contact_sheet, justified_rows
from simlidar.train.validate import ERROR_SCALE_M, preview

from .helpers import KITTI_K

NO_DATA = np.round(np.array(pictures.NO_DATA_RGB) * 255)


def test_no_data_is_grey_and_unlike_any_depth_and_near_and_far_are_the_colormap_ends():
    depth = np.array([[0.0, np.nan, 2.0, 80.0, 500.0]])
    colours = pictures.colour_depth(depth, 2.0, 80.0).astype(int)
    assert (colours[0, 0] == NO_DATA).all() and (colours[0, 1] == NO_DATA).all()
    ramp = pictures.depth_colormap()(np.linspace(0, 1, 256))[:, :3] * 255
    assert np.abs(ramp - NO_DATA).sum(axis=1).min() > 60  # no depth is drawn anywhere near grey
    assert (colours[0, 2] == np.round(ramp[0])).all() and (colours[0, 3] == np.round(ramp[-1])).all()
    assert (colours[0, 4] == colours[0, 3]).all()  # beyond far: the far colour, still not "no data"
    assert colours[0, 3].sum() > 100  # far is dark blue, not black
    # Log depth: 2 to 8 m spans as much of the colormap as 8 to 32 m.
    norm = pictures.depth_norm(2.0, 32.0)
    assert np.isclose(norm(8.0), 0.5)


def _sample(key: str, height: int, width: int) -> PreviewSample:
    """A ramp of 3 to 30 m over the left half of the picture, no depth on the right half."""
    dense = np.zeros((height, width), np.float32)
    dense[:, : width // 2] = np.geomspace(3.0, 30.0, width // 2)[None]
    sparse = np.where(np.arange(height)[:, None] % 8 == 0, dense, 0.0).astype(np.float32)
    rgb = np.full((height, width, 3), 120, np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG")
    return PreviewSample.decode(key, buffer.getvalue(), sparse, dense)


def test_a_depth_is_the_colour_the_bar_shows_at_that_depth_and_no_data_is_grey():
    sample = _sample("ramp", 120, 400)
    sheet = np.asarray(contact_sheet([sample], width=2400, row_height=200)).astype(int)
    # One row 200 px high, the sheet as wide as the row: three 400x120 images scaled by 5/3
    # (less the two gaps between them).
    image_width = (3 * 400 * 200 / 120 - 2 * GAP) / 3
    assert sheet.shape == (TITLE_BAND + 200 + GAP + BAR_BAND, round(3 * image_width + 2 * GAP), 3)
    dense_left = 2 * (image_width + GAP)
    near_m, far_m = pictures.depth_range(sample.dense_m)
    # The dense panel's column whose depth is 10 m, against the bar's colour at 10 m.
    column = int(np.argmin(np.abs(sample.dense_m[0, : 200] - 10.0)))
    x = round(dense_left + (column + 0.5) * image_width / 400)
    panel_colour = sheet[TITLE_BAND + 100, x]
    bar_left, bar_width = sheet.shape[1] / 4, sheet.shape[1] / 2
    bar_x = round(bar_left + bar_width * float(pictures.depth_norm(near_m, far_m)(sample.dense_m[0, column])))
    bar_colour = sheet[sheet.shape[0] - BAR_BAND + 17, bar_x]
    assert np.abs(panel_colour - bar_colour).max() <= 12, (panel_colour, bar_colour)
    assert np.abs(panel_colour - pictures.colour_depth(np.array([[10.0]]), near_m, far_m)[0, 0]).max() <= 12
    # The right half of the dense panel has no depth: grey, not the far end of the bar.
    assert (sheet[TITLE_BAND + 100, round(dense_left + 0.8 * image_width)] == NO_DATA).all()
    far_colour = sheet[sheet.shape[0] - BAR_BAND + 17, round(bar_left + bar_width) - 2]
    assert np.abs(far_colour - NO_DATA).sum() > 60


def test_mixed_sizes_fill_every_row_without_tall_strips():
    aspects = [3 * 4 / 3, 3 * 4 / 3, 3 * 1242 / 375, 3 * 1242 / 375, 3 * 3 / 4, 3 * 16 / 9, 3 * 16 / 9]
    rows = justified_rows(aspects, 1800, 220, 18)
    assert sorted(index for indices, _ in rows for index in indices) == list(range(len(aspects)))
    for indices, height in rows[:-1]:
        assert np.isclose(sum(aspects[i] for i in indices) * height + 18 * (len(indices) - 1), 1800)
        assert 220 / 1.6 < height < 220 * 1.6
    assert rows[-1][1] <= 220


def test_a_contact_sheet_of_mixed_sizes_has_no_band_of_empty_background():
    samples = [_sample("wide", 375, 1242), _sample("square", 240, 320), _sample("tall", 320, 240)] * 2
    sheet = np.asarray(contact_sheet(samples)).astype(int)
    images = sheet[: sheet.shape[0] - BAR_BAND]
    white_rows = (images == 255).all(axis=(1, 2))
    assert white_rows.sum() <= len(justified_rows([s.strip_aspect for s in samples], 1800, 220, 18)) * (
        TITLE_BAND + GAP
    )
    assert sheet.shape[1] == 1800


def test_the_eval_preview_has_four_panels_and_its_own_error_colours():
    height, width = 60, 200
    gt = np.full((height, width), 10.0, np.float32)
    gt[:, width // 2 :] = 0.0  # no ground truth on the right
    prediction = np.full((height, width), 11.0, np.float32)  # 1 m off where there is truth
    rgb = np.zeros((height, width, 3), np.uint8)
    picture = preview(rgb, prediction, gt).astype(int)
    assert picture.shape == (4 * (height + 24) + 10, width + 110 + 20, 3)
    error_top = 3 * (height + 24) + 24
    error_colour = picture[error_top + height // 2, 10 + width // 4]
    expected = np.round(np.array(to_rgb(pictures.error_colormap()(1.0 / ERROR_SCALE_M))) * 255)
    assert np.abs(error_colour - expected).max() <= 2
    assert (picture[error_top + height // 2, 10 + 3 * width // 4] == NO_DATA).all()
    # The depth panels use the depth colormap: the truth at 10 m is the near end's colour there.
    truth_colour = picture[2 * (height + 24) + 24 + height // 2, 10 + width // 4]
    assert np.abs(truth_colour - pictures.colour_depth(np.array([[10.0]]), 10.0, 15.0)[0, 0]).max() <= 2


@pytest.mark.parametrize("pitch_deg", [0.0, 5.0])
def test_the_camera_outline_spans_the_cameras_field_of_view(pitch_deg):
    """A camera looking along the LiDAR's x axis (pitched down by `pitch_deg`): its outline's
    azimuth reaches atan(cx / fx) to the left (unpitched), its top edge atan(cy / fy) above the
    axis, less the pitch."""
    pitch = np.deg2rad(pitch_deg)
    # Camera axes in the LiDAR frame: x right = -y, y down = -z, z forward = x, then pitched down.
    R_lidar_cam = np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0]], float)
    R_pitch = np.array([[np.cos(pitch), 0, np.sin(pitch)], [0, 1, 0], [-np.sin(pitch), 0, np.cos(pitch)]])
    T_cam_lidar = np.eye(4)
    T_cam_lidar[:3, :3] = (R_pitch @ R_lidar_cam).T
    outline = camera_outline_deg(KITTI_K, 1242, 375, T_cam_lidar)
    fx, cx, cy = KITTI_K[0, 0], KITTI_K[0, 2], KITTI_K[1, 2]
    if pitch_deg == 0:
        assert np.isclose(outline[:, 0].max(), np.rad2deg(np.arctan(cx / fx)), atol=1e-6)
    middle_top = outline[np.argmin(np.abs(outline[:50, 0])), 1]
    assert np.isclose(middle_top, np.rad2deg(np.arctan(cy / fx)) - pitch_deg, atol=0.1)


def test_extreme_and_tiny_images_still_make_a_sheet_with_its_bar():
    """A 1x5000 panorama, a 5000x1 sliver and a 1x1 photo: squeezed to 8:1 at most, and the
    sheet wide enough for its colour bar."""
    for samples in ([_sample("wide", 2, 5000)], [_sample("tall", 5000, 2)] * 3, [_sample("dot", 2, 2)]):
        sheet = contact_sheet(samples)
        assert 640 <= sheet.size[0] <= 1800 and sheet.size[1] <= 3 * (220 + TITLE_BAND + GAP) + BAR_BAND


def test_a_prediction_without_ground_truth_is_drawn_on_the_scale_of_its_sparse_input():
    height, width = 40, 100
    sparse = np.zeros((height, width), np.float32)
    sparse[::4] = np.geomspace(3.0, 30.0, width)[None]
    prediction = np.full((height, width), 7.0, np.float32)
    picture = preview(np.zeros((height, width, 3), np.uint8), prediction, sparse_m=sparse).astype(int)
    assert picture.shape == (3 * (height + 24) + 10, width + 110 + 20, 3)  # RGB, sparse input, prediction
    near_m, far_m = pictures.depth_range(sparse)
    expected = pictures.colour_depth(np.array([[7.0]]), near_m, far_m)[0, 0]
    assert np.abs(picture[2 * (height + 24) + 24 + height // 2, 10 + width // 2] - expected).max() <= 2

"""Smeared depth jumps: the flying-return metric, the soft stand-ins for a teacher
(pipeline/output/flying.py) and the edge rule that cuts a smear where the photo has its
edge (pipeline/stages/edges.py), alone and in `generate`, `fidelity` and `bench`."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from numpy.random import default_rng
from PIL import Image
from simlidar.pipeline import schema
from simlidar.pipeline.errors import PipelineError
from simlidar.pipeline.output.flying import (
    beyond_mask,
    beyond_share,
    blur_depth,
    flying_mask,
    flying_share,
    parse_teacher_blur,
)
from simlidar.pipeline.stages.edges import EdgeOptions, handle_edges
from simlidar.pipeline.stages.march import depth_grid_scene
from simlidar.pipeline.stages.scan import simulate_scan
from simlidar.sensors import MOUNTS, ReturnEffects, load_sensor, mount_pose

from .helpers import KITTI_K, REPO, generate, tar_members, write_photo

WIDTH, HEIGHT = 1242, 375
WALL_M, BOX_M = 16.0, 12.0
BOX_ROWS, BOX_COLS = (100, 300), (400, 800)
BOX_RGB, WALL_RGB = (200, 40, 40), (50, 70, 190)
KITTI_OBJECT = Path(__file__).resolve().parents[2] / "shared" / "data" / "kitti_object"


def ideal_scan(depth_m: np.ndarray) -> np.ndarray:
    """The sparse map of an HDL-64 with every return effect off, on the kitti mount."""
    sensor = replace(load_sensor("hdl64"), effects=ReturnEffects())
    scene = depth_grid_scene(depth_m, KITTI_K)
    return simulate_scan(
        scene, KITTI_K, WIDTH, HEIGHT, sensor, mount_pose(MOUNTS["kitti"]), default_rng(0)
    ).sparse_depth_m


def ramp(index: np.ndarray, start: int, stop: int, width: int) -> np.ndarray:
    """1 inside [start, stop), 0 outside, linear over `width` pixels centred on each end."""
    rising = np.clip((index - start + width / 2) / width, 0, 1)
    falling = np.clip((stop - index + width / 2) / width, 0, 1)
    return np.minimum(rising, falling)


def smeared_box(ramp_px: int = 6) -> np.ndarray:
    """(H, W) a box at BOX_M before a wall at WALL_M, the jump smeared linearly over ramp_px."""
    rows, cols = np.arange(HEIGHT)[:, None], np.arange(WIDTH)[None, :]
    cover = ramp(rows, *BOX_ROWS, ramp_px) * ramp(cols, *BOX_COLS, ramp_px)
    return (WALL_M + (BOX_M - WALL_M) * cover).astype(np.float32)


def box_photo(cols=BOX_COLS, rows=BOX_ROWS, seed: int = 0) -> np.ndarray:
    """(H, W, 3) the box's colour inside rows x cols, a textured wall elsewhere."""
    texture = default_rng(seed).integers(-20, 21, size=(HEIGHT, WIDTH, 1))
    rgb = np.clip(np.array(WALL_RGB) + texture, 0, 255).astype(np.uint8)
    rgb[rows[0] : rows[1], cols[0] : cols[1]] = BOX_RGB
    return rgb


def test_flying_share_counts_the_returns_inside_a_jump():
    truth = np.full((9, 16), 10.0, np.float32)
    truth[:, 8:] = 20.0
    sparse = np.zeros_like(truth)
    sparse[1, 7] = 15.0  # inside the 10 -> 20 jump: flying
    sparse[2, 7] = 10.2  # within 3% of the near side
    sparse[3, 9] = 19.5  # within 3% of the far side
    sparse[4, 9] = 18.0  # inside: flying
    sparse[5, 3] = 15.0  # no jump within 2 pixels: a surface the truth does not have, but not flying
    assert flying_mask(sparse, truth).sum() == 2
    assert flying_share(sparse, truth) == pytest.approx(2 / 5)
    # A steep smooth surface (every neighbour within 1.25x of the next) has no jump.
    ground = np.tile(10.0 * 1.1 ** np.arange(16, dtype=np.float32), (9, 1))
    assert flying_share(np.where(sparse > 0, ground * 1.05, 0), ground) == 0.0
    assert flying_share(np.zeros_like(truth), truth) == 0.0


def test_beyond_share_counts_the_returns_off_every_surface_around_them():
    """A return put on the wrong side of a jump is not flying, but it is off the truth there."""
    truth = np.full((9, 16), 10.0, np.float32)
    truth[:, 8:] = 20.0
    truth[8, 0] = 0.0  # no depth: a pixel without truth is left out of the range
    sparse = np.zeros_like(truth)
    sparse[1, 3] = 20.0  # the far side's depth 3 pixels into the near side: off
    sparse[2, 12] = 10.0  # the near side's depth 3 pixels into the far side: off
    sparse[3, 7] = 20.0  # 1 pixel from the jump: the far side is within reach, on a surface
    sparse[4, 9] = 15.0  # inside the jump: flying, not off
    sparse[5, 3] = 10.25  # within 3% of its surface
    sparse[6, 12] = 21.0  # past the far side by 5%: off
    sparse[7, 4] = 9.5  # nearer than the near side by 5%: off
    assert beyond_mask(sparse, truth).sum() == 4 and flying_mask(sparse, truth).sum() == 1
    assert beyond_share(sparse, truth) == pytest.approx(4 / 7)
    assert beyond_share(sparse, np.zeros_like(truth)) == 0.0
    assert beyond_share(np.zeros_like(truth), truth) == 0.0


def test_box_before_a_wall_with_a_ramp_leaves_no_return_in_the_gap():
    depth = smeared_box()
    assert flying_share(ideal_scan(depth), np.where(box_photo()[..., 0] == BOX_RGB[0], BOX_M, WALL_M)) > 0.005
    handled = handle_edges(depth, box_photo()).depth_m
    values = ideal_scan(handled)
    values = values[values > 0]
    assert ((values > 1.01 * BOX_M) & (values < 0.99 * WALL_M)).sum() == 0
    assert (np.abs(values - BOX_M) < 0.01 * BOX_M).sum() > 500
    assert (np.abs(values - WALL_M) < 0.01 * WALL_M).sum() > 500


def cut_column(row: np.ndarray) -> int:
    """The first column of a row of handled depth where the box (not the wall) begins."""
    return int(np.argmax(row < (BOX_M + WALL_M) / 2))


@pytest.mark.parametrize(("ramp_px", "photo_offset"), [(6, -3), (6, 3), (16, -6), (16, 6)])
def test_the_cut_falls_on_the_photos_edge(ramp_px, photo_offset):
    """The depth's ramp (6 pixels, or 16 as a blur of 8 makes) is centred on column 400; the
    photo's edge is off it: the rule cuts where the photo says (within a pixel), the
    depth-only rule in the ramp's middle (2 pixels); no value is left inside the jump."""
    left = BOX_COLS[0] + photo_offset
    depth = smeared_box(ramp_px)
    photo = box_photo(cols=(left, BOX_COLS[1]))
    by_photo = handle_edges(depth, photo).depth_m
    by_depth = handle_edges(depth, photo, EdgeOptions(rule="depth")).depth_m
    assert abs(cut_column(by_photo[200]) - left) <= 1
    assert abs(cut_column(by_depth[200]) - BOX_COLS[0]) <= 2
    row = by_photo[200, 300:500]
    assert not ((row > 1.01 * BOX_M) & (row < 0.99 * WALL_M)).any()


def test_a_3_pixel_pole_survives():
    """A pole 3 pixels wide at 8 m before the wall: sharp, it is left alone; fattened to 7
    pixels and smeared over 6 more on each side by the teacher, its photo gives it back its
    3 columns (to a pixel), and both return at 8 m."""
    pole = (slice(50, 350), slice(600, 603))
    sharp = np.full((HEIGHT, WIDTH), WALL_M, np.float32)
    sharp[pole] = 8.0
    photo = box_photo(cols=(600, 603), rows=(50, 350))
    result = handle_edges(sharp, photo)
    assert result.moved_px == 0 and np.array_equal(result.depth_m, sharp)
    fattened = sharp.copy()
    columns = np.arange(590, 613)
    fattened[50:350, 590:613] = np.interp(columns, [592, 598, 604, 610], [WALL_M, 8.0, 8.0, WALL_M])
    handled = handle_edges(fattened, photo).depth_m
    assert np.allclose(handled[200, 600:603], 8.0)
    assert np.allclose(handled[200, [*range(590, 599), *range(604, 613)]], WALL_M, rtol=0.02)
    for depth in (sharp, handled):
        pole_returns = ideal_scan(depth)[50:350, 590:613]
        assert (np.abs(pole_returns - 8.0) < 0.08).sum() >= 5


def test_sharp_depth_is_left_as_it_is():
    """No pixel of the box's sharp edges moves; on the bundled street (true depth, its photo)
    almost none does."""
    sharp = np.where(box_photo()[..., 0] == BOX_RGB[0], BOX_M, WALL_M).astype(np.float32)
    assert handle_edges(sharp, box_photo()).moved_px == 0
    street = REPO / "examples" / "scenes" / "street_kitti"
    depth = schema.decode_depth_png(street.with_suffix(".depth.png").read_bytes())
    rgb = np.asarray(Image.open(street.with_suffix(".jpg")).convert("RGB"))
    assert handle_edges(depth, rgb).moved_px < 0.003 * depth.size


@pytest.mark.parametrize("ramp_px", [1, 2, 3])
def test_a_jump_with_at_most_two_pixels_between_its_levels_is_left_as_it_is(ramp_px):
    """A one-pixel jump (ramp 1), or one with one or two pixels inside it, is no smear: no
    pixel moves. A ramp of 4 (three pixels inside) is one, so the bound is the rule's."""
    assert handle_edges(smeared_box(ramp_px), box_photo()).moved_px == 0
    assert handle_edges(smeared_box(4), box_photo()).moved_px > 1000


@pytest.mark.parametrize("kind", ["box", "gauss", "shift", "dilate", "warp"])
def test_a_frame_the_rule_cut_is_left_as_it_is(kind):
    """The box before the wall blurred by 8 and cut by the rule: a second pass moves no
    pixel (a cut jump has nothing inside it)."""
    cut = handle_edges(blur_depth(smeared_box(1), kind, 8), box_photo())
    assert cut.moved_px > 5000
    assert handle_edges(cut.depth_m, box_photo()).moved_px == 0


@pytest.mark.parametrize("kind", ["box", "gauss", "shift", "dilate", "warp"])
def test_a_pole_thinner_than_the_blur_leaves_no_flying_return_and_no_shadow(kind):
    """A 3-pixel pole at 4 m and the box at 12 m before the 16 m wall, blurred by 8: the
    pole's depth is nowhere in the soft map (its peak there is 10-14 m, still a jump over
    min_jump). After the rule hardly a return lies inside a jump of the true depth (the
    pole's ends, smeared along it, keep a few), nothing is deleted (every pixel keeps a
    depth), and the scan has as many returns as the sharp depth's, within 1%."""
    sharp = np.where(box_photo()[..., 0] == BOX_RGB[0], BOX_M, WALL_M).astype(np.float32)
    sharp[50:350, 1000:1003] = 4.0
    photo = box_photo()
    photo[50:350, 1000:1003] = (230, 230, 60)
    soft = blur_depth(sharp, kind, 8)
    handled = handle_edges(soft, photo).depth_m
    assert np.array_equal(handled > 0, soft > 0)
    returns, sharp_returns = ideal_scan(handled), ideal_scan(sharp)
    assert flying_share(ideal_scan(soft), sharp) > 0.005
    assert flying_share(returns, sharp) < 0.0005
    assert abs(np.count_nonzero(returns) / np.count_nonzero(sharp_returns) - 1) < 0.01


def test_rule_none_and_tiny_or_empty_depth_are_returned_as_they_are():
    depth = smeared_box()
    assert np.array_equal(handle_edges(depth, box_photo(), EdgeOptions(rule="none")).depth_m, depth)
    for options in (EdgeOptions(), EdgeOptions(rule="depth")):
        for shape in ((1, 1), (5, 300), (40, 40)):
            tiny = np.full(shape, 4.0, np.float32)
            assert np.array_equal(handle_edges(tiny, np.zeros((*shape, 3), np.uint8), options).depth_m, tiny)
        empty = np.zeros((HEIGHT, WIDTH), np.float32)
        empty[0, 0] = np.nan
        empty[5, 5] = 10.0
        result = handle_edges(empty, box_photo(), options)
        assert result.moved_px == 0 and np.count_nonzero(result.depth_m) == 1


def test_bad_arguments_name_the_parameter():
    with pytest.raises(ValueError, match="rgb must be"):
        handle_edges(smeared_box(), box_photo()[:10])
    with pytest.raises(ValueError, match="reach_px must be"):
        EdgeOptions(reach_px=99)
    with pytest.raises(PipelineError, match="`teacher_blur` must be KIND:F"):
        parse_teacher_blur("blur:4")
    assert parse_teacher_blur("warp:8") == ("warp", 8)


@pytest.mark.parametrize("kind", ["box", "gauss", "shift", "dilate", "warp"])
def test_every_blur_keeps_a_plane_and_its_holes(kind):
    """A constant 10 m with a hole: stays 10 m wherever it keeps a value, the hole's middle
    stays empty; the box's jump becomes a smear (values between the sides)."""
    plane = np.full((120, 200), 10.0, np.float32)
    plane[40:80, 80:120] = 0.0
    soft = blur_depth(plane, kind, 4)
    assert np.allclose(soft[soft > 0], 10.0, rtol=1e-4) and soft[60, 100] == 0
    smeared = blur_depth(smeared_box(ramp_px=1), kind, 8)
    assert ((smeared > 1.05 * BOX_M) & (smeared < 0.95 * WALL_M)).sum() > 1000


def test_generate_records_the_rule_and_none_keeps_the_teachers_depth(cli, tmp_path):
    """A photo whose sidecar depth has a smeared box: the dense target is the handled depth,
    the json says how many pixels moved; --edges none writes the sidecar's depth; march and
    grid scan the handled depth alike."""
    photos = tmp_path / "photos"
    depth = smeared_box()
    write_photo(photos, "box.jpg", depth, KITTI_K)
    Image.fromarray(box_photo()).save(photos / "box.jpg", quality=95)
    runs = {name: tmp_path / name for name in ("photo", "none", "grid")}
    assert generate(cli, photos, runs["photo"])[0] == 0
    assert generate(cli, photos, runs["none"], "--edges", "none")[0] == 0
    assert generate(cli, photos, runs["grid"], "--mesh", "grid")[0] == 0
    members = {name: tar_members(folder / "shard-000000.tar") for name, folder in runs.items()}
    record = json.loads(members["photo"]["box-v0.json"])["edges"]
    assert record["rule"] == "photo" and record["moved_px"] > 1000 and record["radius_px"] == 12
    assert json.loads(members["none"]["box-v0.json"])["edges"]["moved_px"] == 0
    raw = schema.decode_depth_png(members["none"]["box-v0.dense.png"])
    handled = schema.decode_depth_png(members["photo"]["box-v0.dense.png"])
    assert np.abs(raw - depth).max() <= 1 / 256 and np.count_nonzero(np.abs(handled - raw) > 0.1) > 1000
    march, grid = (schema.decode_depth_png(members[name]["box-v0.sparse.png"]) for name in ("photo", "grid"))
    assert np.array_equal(march > 0, grid > 0) and np.abs(march - grid).max() <= 1 / 256
    manifest = json.loads((runs["none"] / "manifest.json").read_text())
    assert manifest["config"]["edges"] == "none"
    assert "edges: 'none' -> 'photo'" in generate(cli, photos, runs["none"])[2]


@pytest.mark.skipif(not KITTI_OBJECT.is_dir(), reason="needs ../shared/data/kitti_object/")
def test_fidelity_measures_flying_returns_on_a_blurred_real_frame(cli):
    """The densified real scan blurred by 8 stands in for a teacher: scanned as it is, over 1%
    of the simulated returns fly; with the edge rule, under half as many; the real scan
    itself has none against its own densified surface."""
    shares = {}
    for rule in ("none", "photo"):
        code, out, _ = cli(
            "fidelity", "--kitti-object", KITTI_OBJECT / "000134", "--teacher-blur", "box:8", "--edges", rule
        )
        assert code == 0 and f"teacher depth box:8, edge rule {rule}" in out
        row = next(line for line in out.splitlines() if line.startswith("flying returns")).split()
        shares[rule] = [float(value.rstrip("%")) / 100 for value in row[2:]]
    assert shares["none"][0] == shares["photo"][0] == 0.0
    assert shares["none"][1] > 0.01 and shares["photo"][1] < shares["none"][1] / 2
    code, _, err = cli("fidelity", "--kitti-object", KITTI_OBJECT / "000134", "--teacher-blur", "box")
    assert code != 0 and "--teacher-blur must be KIND:F" in err


@pytest.mark.skipif(not KITTI_OBJECT.is_dir(), reason="needs ../shared/data/kitti_object/")
def test_bench_edges_sets_each_kitti_frame_beside_its_real_scan(cli, tmp_path):
    """The real scan's own shares against its densified surface head each KITTI frame: what a
    rule's flying and beyond shares are read against."""
    (tmp_path / "no photos").mkdir()
    args = ("--images", tmp_path / "no photos", "--kitti-object", KITTI_OBJECT / "000134", "--repeats", "1")
    code, out, _ = cli("bench", "edges", *args, "--blurs", "box:8", "--edge-rule", "none")
    assert code == 0
    # Columns: frame (16 characters), teacher depth (14), then the figures.
    rows = {line[16:30].strip(): line[30:].split() for line in out.splitlines() if line.startswith("kitti 000134")}
    assert list(rows) == ["real scan", "sharp", "box:8"]
    assert rows["real scan"] == ["0.00%", "4.87%", "1.026", "1.000", "-"]
    # The true depth scanned without a rule is the reference: no flying return, as many returns.
    assert rows["sharp"][:3] == ["0.00%", "3.66%", "1.000"]
    assert float(rows["box:8"][0].rstrip("%")) > 4 and float(rows["box:8"][1].rstrip("%")) > 7


def test_bench_edges_prints_each_soft_depth_and_the_rules_cost(cli, tmp_path):
    street = REPO / "examples" / "scenes" / "street_kitti"
    photos = tmp_path / "photos"
    photos.mkdir()
    for suffix in (".jpg", ".depth.png", ".json"):
        (photos / f"street_kitti{suffix}").write_bytes(street.with_suffix(suffix).read_bytes())
    args = ("--images", photos, "--kitti-object", tmp_path / "none" / "000000", "--repeats", "1")
    code, out, _ = cli("bench", "edges", *args, "--blurs", "box:8")
    assert code == 0
    rows = {line.split()[1]: line.split() for line in out.splitlines() if line.startswith("street_kitti")}
    # True depth with the rule: today's scan (the rule moves nearly nothing there).
    assert float(rows["sharp"][2].rstrip("%")) < 0.05 and abs(float(rows["sharp"][4]) - 1) < 0.005
    assert 0 < float(rows["box:8"][2].rstrip("%")) < 0.6
    assert "cost of photo on street_kitti (box:4)" in out and "CPU (all threads)" in out
    code, out, _ = cli("bench", "edges", *args, "--blurs", "box:8", "--edge-rule", "depth")
    rows = {line.split()[1]: line.split() for line in out.splitlines() if line.startswith("street_kitti")}
    assert code == 0 and "edge rule: depth" in out and "cost of depth on street_kitti" in out
    assert float(rows["sharp"][2].rstrip("%")) == 0.0 and float(rows["box:8"][2].rstrip("%")) > 0.2
    code, _, err = cli("bench", "edges", *args, "--blurs", "box:0")
    assert code != 0 and "--blurs must be KIND:F" in err

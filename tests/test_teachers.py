"""Depth teachers: tiny transformers models loaded offline from a Hub-shaped cache
through the real loading path, the registry, the relative-to-metric conversion."""

from pathlib import Path

import huggingface_hub.constants
import numpy as np
import pytest
from PIL import Image
from simlidar.pipeline import schema
from simlidar.pipeline.sources.photos import load_image
from simlidar.teachers import (
    DepthConversion,
    DepthPrediction,
    TeacherError,
    TeacherInput,
    TeacherUnavailable,
    load_teacher,
    to_metric,
)
from simlidar.teachers.metric import disparity_to_depth, relative_depth_to_depth
from transformers.utils import is_torchvision_available

from .tiny_models import COMMIT, save_to_hub_cache, tiny_depth_anything, tiny_dpt, tiny_vit, tiny_zoedepth

DA_SMALL = "depth-anything/Depth-Anything-V2-Small-hf"


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    return cache


@pytest.fixture
def depth_anything(hub_cache):
    save_to_hub_cache(hub_cache, DA_SMALL, *tiny_depth_anything())
    return load_teacher("depth-anything-v2-small", device="cpu", batch_size=4)


def rgb_image(height, width, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def inputs(*shapes):
    return [
        TeacherInput(Path(f"photo{index}.jpg"), rgb_image(*shape, seed=index)) for index, shape in enumerate(shapes)
    ]


def test_registry_model_loads_from_the_cache_and_batches_mixed_sizes_like_single_images(depth_anything):
    batch = inputs((64, 96), (96, 64), (64, 96), (50, 50))
    together = depth_anything.predict(batch)
    assert [p.depth.shape for p in together] == [(64, 96), (96, 64), (64, 96), (50, 50)]
    assert all(p.kind == "disparity" and p.focal_px is None for p in together)
    assert {p.revision for p in together} == {COMMIT} and together[0].teacher == "depth-anything-v2-small"
    for item, batched in zip(batch, together, strict=True):
        alone = depth_anything.predict([item])[0]
        np.testing.assert_allclose(batched.depth, alone.depth, rtol=1e-4, atol=1e-6 * np.abs(alone.depth).max())
    # The processor keeps the aspect ratio at a multiple of the 14 px patch: 64 x 96 -> 56 x 84.
    assert tuple(depth_anything.preprocess(batch[0].rgb).shape) == (1, 3, 56, 84)


def test_hf_model_id_and_local_folder_with_declared_output(hub_cache, tmp_path):
    model, processor = tiny_dpt()
    save_to_hub_cache(hub_cache, "someone/dpt-tiny", model, processor)
    teacher = load_teacher("hf:someone/dpt-tiny", output="disparity", device="cpu")
    prediction = teacher.predict(inputs((48, 80)))[0]
    assert prediction.depth.shape == (48, 80) and prediction.kind == "disparity"
    # The DPT processor squashes to its fixed 64 x 64 input, whatever the photo's shape.
    assert tuple(teacher.preprocess(rgb_image(48, 80)).shape) == (1, 3, 64, 64)
    local = tmp_path / "my-dpt"
    model.save_pretrained(local)
    processor.save_pretrained(local)
    from_folder = load_teacher(f"hf:{local}", output="metric", device="cpu")
    assert from_folder.revision.startswith("local-") and from_folder.cache_id(None).startswith(f"hf:{local}@local-")
    # fp16 and fp32 outputs differ, so the precision is part of what the cache is keyed by.
    assert from_folder.cache_id(None).endswith(":max1536:float32")
    np.testing.assert_allclose(from_folder.predict(inputs((48, 80)))[0].depth, prediction.depth, rtol=1e-5)


def test_zoedepth_runs_or_says_what_is_missing(hub_cache):
    save_to_hub_cache(hub_cache, "Intel/zoedepth-nyu", *tiny_zoedepth())
    teacher = load_teacher("zoedepth-nyu", device="cpu")
    if is_torchvision_available():
        prediction = teacher.predict(inputs((48, 80)))[0]
        assert prediction.kind == "metric" and prediction.depth.shape == (48, 80)
        assert 0.1 <= prediction.depth.min() and prediction.depth.max() <= 10.0
    else:
        with pytest.raises(TeacherUnavailable, match="needs torchvision: pip install torchvision"):
            teacher.predict(inputs((48, 80)))


def test_huge_photo_is_shrunk_for_the_teacher_and_depth_comes_back_at_its_size(depth_anything):
    photo = np.zeros((6000, 8000, 3), np.uint8)
    photo[:, 4000:] = 200
    pixel_values = depth_anything.preprocess(photo)
    # 8000 x 6000 -> 1536 x 1152 (--max-size) -> the processor's 56 px short side: 70 x 56.
    assert tuple(pixel_values.shape) == (1, 3, 56, 70)
    prediction = depth_anything.predict([TeacherInput(Path("huge.jpg"), photo)])[0]
    assert prediction.depth.shape == (6000, 8000) and np.isfinite(prediction.depth).all()


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "CMYK", "P", "I;16", "F"])
def test_every_photo_mode_reaches_the_teacher_as_rgb(depth_anything, tmp_path, mode):
    ramp = np.tile(np.linspace(0.0, 1.0, 96), (64, 1))
    if mode == "I;16":
        image, suffix = Image.fromarray((ramp * 65535).astype(np.uint16)), ".png"
    elif mode == "F":
        image, suffix = Image.fromarray(ramp.astype(np.float32)), ".tif"
    else:
        image = Image.fromarray((ramp * 255).astype(np.uint8)).convert(mode)
        suffix = ".jpg" if mode in ("L", "CMYK") else ".png"
    path = tmp_path / f"photo{suffix}"
    image.save(path)
    rgb = load_image(path, 95).rgb
    assert rgb.shape == (64, 96, 3) and rgb.dtype == np.uint8
    # A left-to-right grey ramp, not clipped to white (16-bit, float) nor lost.
    assert rgb[:, :3].mean() < 20 and rgb[:, -3:].mean() > 235 and abs(rgb.mean() - 127.5) < 8
    assert depth_anything.predict([TeacherInput(path, rgb)])[0].depth.shape == (64, 96)


def test_unknown_names_and_missing_output_are_clear(hub_cache):
    with pytest.raises(TeacherError, match="unknown teacher 'depth-anything'.*depth-anything-v2-small.*hf:ORG/NAME"):
        load_teacher("depth-anything")
    with pytest.raises(TeacherError, match="needs --teacher-output metric|disparity|depth"):
        load_teacher("hf:someone/model")
    with pytest.raises(TeacherError, match="hf:ORG/NAME"):
        load_teacher("hf:justaname", output="metric")


def test_a_model_that_is_not_a_depth_model_is_refused(hub_cache):
    save_to_hub_cache(hub_cache, "google/vit-tiny", tiny_vit())
    with pytest.raises(TeacherUnavailable, match="'vit' model, not a depth-estimation model.*depth_anything"):
        load_teacher("hf:google/vit-tiny", output="metric")


def test_offline_with_nothing_cached_says_to_pull(hub_cache):
    with pytest.raises(TeacherUnavailable) as error:
        load_teacher("depth-anything-v2-small")
    message = str(error.value)
    assert "\n" not in message
    assert "run `simlidar teachers pull depth-anything-v2-small` where the network is" in message
    assert "set HF_HOME" in message and str(hub_cache) in message


def test_auto_reads_sidecars_and_runs_the_default_model_only_for_the_others(hub_cache, tmp_path):
    depth = np.full((64, 96), 7.0, np.float32)
    (tmp_path / "with.depth.png").write_bytes(schema.encode_depth_png(depth))
    with_sidecar = TeacherInput(tmp_path / "with.jpg", rgb_image(64, 96))
    without = TeacherInput(tmp_path / "without.jpg", rgb_image(64, 96, seed=1))
    teacher = load_teacher("auto", device="cpu")
    # Nothing cached: fine while every photo has its sidecar.
    assert teacher.predict([with_sidecar])[0].depth.max() == 7.0
    # The model missing costs only the photos that need it, each with how to fetch it.
    found, missing = teacher.predict([with_sidecar, without])
    assert found.depth.max() == 7.0 and isinstance(missing, TeacherError)
    assert str(missing).startswith("no depth sidecar (photo.depth.png or photo.depth.npy) and teacher")
    assert "teachers pull depth-anything-v2-small" in str(missing)
    save_to_hub_cache(hub_cache, DA_SMALL, *tiny_depth_anything())
    first, second = load_teacher("auto", device="cpu").predict([with_sidecar, without])
    assert (first.teacher, first.kind) == ("sidecar", "metric") and np.all(first.depth == 7.0)
    assert (second.teacher, second.kind) == ("depth-anything-v2-small", "disparity")


def test_disparity_ramp_maps_to_the_expected_depths():
    disparity = np.tile(np.linspace(1.0, 100.0, 100), (4, 1))
    depth, record = disparity_to_depth(disparity, near_m=2.0, far_m=50.0, percentiles=(0, 100), sky_threshold=0)
    # Inverse depth is linear in disparity: 1/z = 1/50 + (d - 1) / 99 * (1/2 - 1/50).
    np.testing.assert_allclose(depth[0, [0, 99]], [50.0, 2.0], rtol=1e-6)
    middle = np.interp(50.5, disparity[0], depth[0])
    assert abs(np.interp(50.5, disparity[0], 1 / depth[0]) - (1 / 50 + 1 / 2) / 2) < 1e-4
    assert 3.5 < middle < 4.2  # the harmonic mean 2 / (1/2 + 1/50) = 3.85 m, not the arithmetic 26 m
    assert np.all(np.diff(depth[0]) < 0)  # nearer as disparity grows
    assert record["disparity_at_percentiles"] == [1.0, 100.0] and record["no_return_fraction"] == 0.0


def test_sky_outliers_and_nan_become_no_return():
    disparity = np.tile(np.linspace(10.0, 100.0, 100), (10, 1))
    disparity[:3] = 0.5  # sky: below 2% of the near disparity
    disparity[5, 10] = np.nan
    disparity[6, 20] = np.inf
    disparity[7, 30] = 1e6  # one wild pixel must not move the near percentile
    depth, record = disparity_to_depth(disparity, 2.0, 50.0, (2, 98), 0.02)
    assert np.all(depth[:3] == 0) and depth[5, 10] == 0 and depth[6, 20] == 0
    assert depth[7, 30] == pytest.approx(2.0) and 2.0 <= depth[8].min() and depth[8].max() <= 50.0
    assert record["no_return_fraction"] == pytest.approx(302 / 1000)  # 3 sky rows, NaN, inf
    assert record["disparity_at_percentiles"][1] < 100.0 + 1e-9


def test_relative_depth_ramp_is_linear_between_near_and_far():
    relative = np.tile(np.linspace(0.0, 1.0, 11), (2, 1))
    depth, _ = relative_depth_to_depth(relative, 1.0, 11.0, (0, 100))
    np.testing.assert_allclose(depth[0], np.arange(1.0, 12.0), rtol=1e-6)


def test_to_metric_draws_per_image_ranges_records_them_and_zeroes_bad_metric_pixels():
    conversion = DepthConversion(near_m=(2.0, 5.0), far_m=(40.0, 80.0), metric_scale=(0.5, 2.0))
    ramp = DepthPrediction(np.tile(np.linspace(1.0, 9.0, 50), (5, 1)).astype(np.float32), "disparity")
    converted = to_metric(ramp, conversion, np.random.default_rng(3))
    record = converted.conversion
    assert converted.kind == "metric" and record["from"] == "disparity"
    assert 2.0 <= record["near_m"] <= 5.0 and 40.0 <= record["far_m"] <= 80.0
    assert converted.depth.min() == pytest.approx(record["near_m"], rel=1e-5)
    assert converted.describe()["output"] == "disparity"
    again = to_metric(ramp, conversion, np.random.default_rng(3))
    assert np.array_equal(again.depth, converted.depth)
    metric = np.full((4, 4), 10.0, np.float32)
    metric[0, 0], metric[1, 1], metric[2, 2] = np.nan, np.inf, -1.0
    scaled = to_metric(DepthPrediction(metric, "metric"), conversion, np.random.default_rng(0))
    scale = scaled.conversion["scale"]
    assert 0.5 <= scale <= 2.0 and scaled.depth[3, 3] == pytest.approx(10.0 * scale)
    assert scaled.depth[0, 0] == scaled.depth[1, 1] == scaled.depth[2, 2] == 0.0
    with pytest.raises(TeacherError, match="flat"):
        to_metric(DepthPrediction(np.ones((8, 8), np.float32), "disparity"), conversion, np.random.default_rng(0))


def test_teacher_bench_prints_images_per_second_per_batch_size(cli, depth_anything):
    code, out, err = cli(
        "bench",
        "teacher",
        "--teacher",
        "depth-anything-v2-small",
        "--batch-sizes",
        "1,2",
        "--repeats",
        "1",
        "--device",
        "cpu",
        "--image-size",
        "96x64",
    )
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith(f"teacher: depth-anything-v2-small @ {COMMIT}; device cpu, fp32; photos 96x64")
    rows = [line.split() for line in lines[2:4]]
    assert [row[:2] for row in rows] == [["1", "84x56"], ["2", "84x56"]]
    assert all(float(row[2]) > 0 and float(row[3]) > 0 for row in rows)


def test_teachers_list_pull_and_unknown_names_on_the_command_line(cli, hub_cache, tmp_path):
    save_to_hub_cache(hub_cache, DA_SMALL, *tiny_depth_anything())
    code, out, _ = cli("teachers", "list")
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:-1]}
    assert code == 0 and len(rows) == 15
    assert rows["depth-anything-v2-small"][1:6] == ["disparity", "24.8M", "99", "Apache-2.0", "yes"]
    assert rows["depth-pro"][1] == "metric" and rows["depth-pro"][5] == "no"
    code, out, _ = cli("teachers", "pull", "depth-anything-v2-small")
    assert code == 0 and f"at {COMMIT} in {hub_cache}" in out
    code, _, err = cli("teachers", "pull", "zoedepth-kitti")
    assert code == 1 and "simlidar teachers pull zoedepth-kitti" in err and err.count("\n") == 1
    code, _, err = cli("generate", "--images", tmp_path, "--out", tmp_path / "out", "--teacher", "midas")
    assert code == 2 and "unknown teacher 'midas'" in err and "known: auto, sidecar, depth-anything-v2-small" in err

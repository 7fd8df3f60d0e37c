"""Ray drop fitted to real scans: the labels a real scan gives, the fit recovering known
figures, the sensor file's [ray_drop] table, `sensors fit-drop` and `--ray-drop`."""

import dataclasses
import json

import numpy as np
import pytest
from PIL import Image
from simlidar.pipeline import schema
from simlidar.pipeline.config import GenerateConfig
from simlidar.pipeline.errors import PipelineError
from simlidar.pipeline.output.drop_fit import fit_drop, observe_drop, real_returns, with_ray_drop
from simlidar.pipeline.output.fidelity import RealFrame
from simlidar.pipeline.stages.march import depth_grid_scene
from simlidar.pipeline.stages.scan import photo_scan_camera, simulate_rig_scan
from simlidar.sensors import MOUNTS, Calibration, ReturnEffects, SensorSpecError, load_sensor, mount_pose
from simlidar.sensors.catalog import CATALOG_DIR
from simlidar.sensors.ray_drop import FittedRayDrop, HitFeatures, fit_ray_drop

from .helpers import KITTI_K, KITTI_OBJECT, REPO, generate, tar_members

SCENE = REPO / "examples" / "scenes" / "street_kitti"
# Known figures to recover: per-laser logits from 2 (top) to 1, a return less likely far
# away, grazing and bright, and more likely on green (a p of about 0.75 on the street: every
# figure is well determined by a few scans).
KNOWN = FittedRayDrop(tuple(np.linspace(2.0, 1.0, 64)), -0.8, 1.2, -1.5, 2.5)


def patchwork(height: int, width: int, patch: int = 32, seed: int = 7) -> np.ndarray:
    """(H, W, 3) uint8 patches of random colours: luma and greenness vary independently."""
    colours = np.random.default_rng(seed).integers(0, 256, size=(height // patch + 1, width // patch + 1, 3))
    return np.repeat(np.repeat(colours.astype(np.uint8), patch, axis=0), patch, axis=1)[:height, :width]


def test_a_drop_model_fitted_on_scans_simulated_with_known_figures_recovers_them():
    """Real scans of the bundled street made with KNOWN; each labels the beams of an ideal
    scan with another azimuth phase (its nearest real firing); the fit on four such scans
    finds every figure within 10%."""
    depth = schema.decode_depth_png(SCENE.with_suffix(".depth.png").read_bytes())
    scene = depth_grid_scene(depth, KITTI_K)
    camera = photo_scan_camera(KITTI_K, patchwork(*depth.shape))
    sensor = dataclasses.replace(load_sensor("hdl64-kitti"), effects=ReturnEffects(), ray_drop=None)
    T_cam_lidar = mount_pose(MOUNTS["kitti"])
    observations = []
    for index in range(4):
        real = simulate_rig_scan(
            scene, [camera], dataclasses.replace(sensor, ray_drop=KNOWN), T_cam_lidar, np.random.default_rng(index)
        )
        real_points = real.points_lidar[:, :3].astype(np.float64)
        observations.append(
            observe_drop(scene, camera, sensor, T_cam_lidar, real_points, np.random.default_rng(100 + index))
        )
    hits = HitFeatures.concatenate([seen.hits for seen in observations])
    returned = np.concatenate([seen.returned for seen in observations])
    assert 0.4 < returned.mean() < 0.8
    fitted = fit_ray_drop(hits, returned, sensor.channels, "test")
    np.testing.assert_allclose(fitted.weights, KNOWN.weights, rtol=0.1)
    seen = np.bincount(hits.ring, minlength=64) >= 300
    assert seen.sum() >= 40
    np.testing.assert_allclose(np.asarray(fitted.laser_logit)[seen], np.asarray(KNOWN.laser_logit)[seen], rtol=0.1)
    assert (fitted.rays, fitted.returns, fitted.source) == (len(hits), int(returned.sum()), "test")


def drawn_hits(rng: np.random.Generator, count: int = 100_000) -> HitFeatures:
    """Hits of 4 lasers with every feature drawn independently over its usual span."""
    return HitFeatures(
        rng.integers(0, 4, count),
        rng.uniform(3.0, 80.0, count),
        rng.uniform(0.0, 1.0, count),
        rng.uniform(0.0, 1.0, count),
        rng.uniform(0.0, 0.5, count),
    )


def test_the_fit_alone_recovers_figures_from_drawn_features():
    rng = np.random.default_rng(0)
    hits = drawn_hits(rng)
    known = FittedRayDrop((1.0, 0.8, 2.0, 1.5), -0.7, 1.1, -0.9, 1.6)
    returned = rng.random(len(hits)) < known.return_probability(hits)
    fitted = fit_ray_drop(hits, returned, 4)
    np.testing.assert_allclose(fitted.weights, known.weights, rtol=0.1)
    np.testing.assert_allclose(fitted.laser_logit, known.laser_logit, rtol=0.1)
    # Shifting the logits to a point count: the expected returns are that count.
    shifted = fitted.matching_count(hits, 70_000)
    assert shifted.return_probability(hits).sum() == pytest.approx(70_000, rel=1e-6)
    assert np.ptp(np.subtract(shifted.laser_logit, fitted.laser_logit)) < 1e-9


def _incidence_only(cos_incidence: np.ndarray) -> HitFeatures:
    """Hits of one laser at 10 m (ln(range / 10 m) = 0), no colour: only incidence varies."""
    count = len(cos_incidence)
    return HitFeatures(np.zeros(count, np.int64), np.full(count, 10.0), cos_incidence, np.zeros(count), np.zeros(count))


def _loss(intercept: float, incidence: float, cos_incidence: np.ndarray, returned: np.ndarray) -> float:
    """Negative log-likelihood of `returned` under sigmoid(intercept + incidence * cos)."""
    logit = intercept + incidence * cos_incidence
    return float(np.sum(np.logaddexp(0.0, logit) - returned * logit))


def _best_intercept(incidence: float, cos_incidence: np.ndarray, returned: np.ndarray) -> float:
    """The intercept of least loss at a fixed incidence weight: where the expected returns
    equal the returns (the loss is convex in it), by bisection."""
    low, high = -20.0, 20.0
    for _ in range(100):
        middle = 0.5 * (low + high)
        expected = np.sum(1.0 / (1.0 + np.exp(-(middle + incidence * cos_incidence))))
        low, high = (middle, high) if expected < returned.sum() else (low, middle)
    return 0.5 * (low + high)


def test_a_fit_whose_data_favour_grazing_holds_the_incidence_weight_at_its_bound():
    """Returns drawn with a logit 2 - 1.5 cos(incidence) (grazing returns better, as material
    makes it on KITTI): the fit holds the weight at 0, and no weight >= 0 with its best
    intercept (a scan over fixed weights, each by bisection) has a larger likelihood."""
    rng = np.random.default_rng(3)
    cos_incidence = rng.uniform(0.0, 1.0, 20_000)
    returned = rng.random(len(cos_incidence)) < 1.0 / (1.0 + np.exp(-(2.0 - 1.5 * cos_incidence)))
    fitted = fit_ray_drop(_incidence_only(cos_incidence), returned, 1)
    assert fitted.incidence_coefficient == 0.0 and fitted.range_coefficient == 0.0
    intercept = fitted.laser_logit[0]
    assert intercept == pytest.approx(_best_intercept(0.0, cos_incidence, returned), abs=1e-6)
    # The unbounded optimum lies below 0: at the bound the loss still falls toward negative weights.
    probability = 1.0 / (1.0 + np.exp(-intercept))
    assert np.sum((probability - returned) * cos_incidence) > 50
    best = _loss(intercept, 0.0, cos_incidence, returned)
    for incidence in np.linspace(0.01, 2.0, 40):
        assert _loss(_best_intercept(incidence, cos_incidence, returned), incidence, cos_incidence, returned) > best


def test_the_bounds_hold_only_the_weights_that_cross_them():
    """Drawn features, a known model whose incidence weight is negative and whose range weight
    is physical: incidence held at 0, range, luma, greenness and the lasers still recovered."""
    rng = np.random.default_rng(1)
    hits = drawn_hits(rng)
    known = FittedRayDrop((1.0, 0.8, 2.0, 1.5), -0.7, -1.1, -0.9, 1.6)
    returned = rng.random(len(hits)) < known.return_probability(hits)
    fitted = fit_ray_drop(hits, returned, 4)
    assert fitted.incidence_coefficient == 0.0
    assert fitted.range_coefficient == pytest.approx(-0.7, rel=0.1)
    assert (fitted.luma_coefficient, fitted.greenness_coefficient) == pytest.approx((-0.9, 1.6), rel=0.1)
    # The lasers absorb the incidence term's mean (-1.1 x 0.5) in full.
    np.testing.assert_allclose(fitted.laser_logit, np.subtract(known.laser_logit, 0.55), atol=0.1)


def test_the_shipped_fit_never_returns_more_toward_grazing_incidence_or_farther():
    """hdl64-kitti's fitted drop: for every laser and colour, the return probability does not
    grow as cos(incidence) falls from 1 to 0 nor as the range grows from 1 to 120 m."""
    model = load_sensor("hdl64-kitti").ray_drop
    lasers, cos_incidence, colour = np.meshgrid(
        np.arange(64), np.linspace(1.0, 0.0, 101), [0.0, 0.5, 1.0], indexing="ij"
    )
    for range_m in (2.0, 10.0, 60.0):
        hits = HitFeatures(
            lasers.ravel(), np.full(lasers.size, range_m), cos_incidence.ravel(), colour.ravel(), colour.ravel() / 2
        )
        probability = model.return_probability(hits).reshape(lasers.shape)
        assert np.all(np.diff(probability, axis=1) <= 0)
    lasers, range_m = np.meshgrid(np.arange(64), np.linspace(1.0, 120.0, 120), indexing="ij")
    hits = HitFeatures(lasers.ravel(), range_m.ravel(), *np.full((3, lasers.size), 0.3))
    assert np.all(np.diff(model.return_probability(hits).reshape(lasers.shape), axis=1) <= 0)


@pytest.mark.slow
@pytest.mark.skipif(not (KITTI_OBJECT / "000134.bin").is_file(), reason="needs ../shared/data/kitti_object/")
def test_refitting_hdl64_kitti_on_the_shared_frames_reproduces_the_shipped_file(cli, tmp_path):
    """The shipped table is what `fit-drop` writes on the two shared KITTI frames, byte for
    byte: a change to the fit or its bounds that would alter the table fails here until the
    catalog file is refitted (and its README figures re-measured)."""
    out = tmp_path / "refit.toml"
    frames = [arg for name in ("000134", "000002") for arg in ("--kitti-object", KITTI_OBJECT / name)]
    code, text, err = cli("sensors", "fit-drop", *frames, "--out", out)
    assert code == 0, err
    assert "range +0.000, incidence +0.000, luma +0.851, greenness -1.766" in text
    assert out.read_text() == (CATALOG_DIR / "hdl64-kitti.toml").read_text()


def test_a_beam_returned_when_the_real_scan_fired_and_returned_there():
    """Laser 0 of a real scan fired every step at 10 m straight ahead and dropped firing 4;
    beams a third of a step past each firing stand for that firing."""
    sensor = load_sensor("hdl64")
    step = np.deg2rad(sensor.azimuth_step_deg)
    elevation = np.deg2rad(sensor.elevations_deg[0])

    def points(azimuth):
        return 10.0 * np.column_stack(
            [
                np.cos(elevation) * np.cos(azimuth),
                np.cos(elevation) * np.sin(azimuth),
                np.full_like(azimuth, np.sin(elevation)),
            ]
        )

    fired = np.delete(np.arange(10), 4) * step
    beams = np.arange(10) * step + step / 3
    labels = real_returns(points(beams), np.zeros(10, np.int32), points(fired), sensor)
    assert labels.tolist() == [True] * 4 + [False] + [True] * 5
    # The same beams on another laser: that laser returned nothing.
    assert not real_returns(points(beams), np.ones(10, np.int32), points(fired), sensor).any()


def test_the_sensor_file_carries_the_fitted_table_and_refuses_a_bad_one(tmp_path):
    model = dataclasses.replace(KNOWN, source='fitted on "two" frames', rays=10, returns=7)
    text = with_ray_drop((CATALOG_DIR / "hdl64.toml").read_text(), model)
    path = tmp_path / "hdl64.toml"
    path.write_text(text)
    loaded = load_sensor(str(path))
    assert loaded.ray_drop.laser_logit == pytest.approx(model.laser_logit, abs=1e-4)
    assert loaded.ray_drop.source == model.source and (loaded.ray_drop.rays, loaded.ray_drop.returns) == (10, 7)
    assert loaded.spec_hash() != load_sensor("hdl64").spec_hash()
    # Writing it again replaces the table instead of adding a second one.
    assert with_ray_drop(text, model).count("[ray_drop]") == 1
    path.write_text(text.replace("laser_logit = [\n", "laser_logit = [\n    0.5,\n"))
    with pytest.raises(SensorSpecError, match=r"ray_drop.laser_logit' must have 64 entries"):
        load_sensor(str(path))


def test_ray_drop_fitted_needs_a_fitted_sensor_and_weak_return_sets_it_aside():
    with pytest.raises(PipelineError, match="has no fitted ray drop; fit one with `simlidar sensors fit-drop`"):
        GenerateConfig(images=".", sensor="hdl64", ray_drop="fitted").resolve()
    assert GenerateConfig(images=".", sensor="hdl64-kitti").resolve().sensor.ray_drop is not None
    assert GenerateConfig(images=".", sensor="hdl64-kitti", ray_drop="weak-return").resolve().sensor.ray_drop is None


def test_generate_records_the_fitted_ray_drop(cli, photos, tmp_path):
    code, _, err = generate(cli, photos, tmp_path / "out", "--sensor", "hdl64-kitti")
    assert code == 0, err
    meta = json.loads(tar_members(tmp_path / "out" / "shard-000000.tar")["img0-v0.json"])
    assert meta["sensor"]["ray_drop"]["model"] == "fitted" and "000134, 000002" in meta["sensor"]["ray_drop"]["source"]


def test_fit_drop_command_writes_a_sensor_file_that_loads(cli, tmp_path):
    """A synthetic frame in KITTI's object layout (the street, scanned by hdl64-kitti with
    KNOWN): the command fits, prints its figures and writes a file with the table, in place
    of a table the loader refuses (fitted before the weights were bounded)."""
    depth = schema.decode_depth_png(SCENE.with_suffix(".depth.png").read_bytes())
    rgb = patchwork(*depth.shape)
    sensor = dataclasses.replace(load_sensor("hdl64-kitti"), effects=ReturnEffects(), ray_drop=KNOWN)
    T_cam_lidar = mount_pose(MOUNTS["kitti"])
    real = simulate_rig_scan(
        depth_grid_scene(depth, KITTI_K),
        [photo_scan_camera(KITTI_K, rgb)],
        sensor,
        T_cam_lidar,
        np.random.default_rng(0),
    )
    stem = tmp_path / "000000"
    np.column_stack([real.points_lidar[:, :3], real.points_lidar[:, 3]]).astype(np.float32).tofile(f"{stem}.bin")
    Image.fromarray(rgb).save(f"{stem}.png")
    rows = {"P2": np.column_stack([KITTI_K, np.zeros(3)]), "R0_rect": np.eye(3), "Tr_velo_to_cam": T_cam_lidar[:3]}
    stem.with_suffix(".calib.txt").write_text(
        "".join(f"{key}: {' '.join(f'{value:.12e}' for value in matrix.ravel())}\n" for key, matrix in rows.items())
    )
    out = tmp_path / "fitted.toml"
    out.write_text(
        with_ray_drop(
            (CATALOG_DIR / "hdl64-kitti.toml").read_text(), dataclasses.replace(KNOWN, incidence_coefficient=-1.6)
        )
    )
    with pytest.raises(
        SensorSpecError, match=r"incidence_coefficient must be >= 0, got -1.6: .* \(refit with fit-drop\)"
    ):
        load_sensor(str(out))
    code, text, err = cli(
        "sensors", "fit-drop", "--sensor", out, "--kitti-object", stem, "--no-match-count", "--out", out, "--overwrite"
    )
    assert code == 0, err
    assert "000000: " in text and "beams hit the densified scan" in text and "fitted on " in text
    fitted = load_sensor(str(out)).ray_drop
    assert "000000" in fitted.source and fitted.rays > 10_000
    # Densified geometry and one scan: the figures are near the known ones, not exact.
    assert fitted.luma_coefficient < 0 < fitted.greenness_coefficient and fitted.incidence_coefficient > 0
    assert fitted.range_coefficient < 0
    code, _, err = cli(
        "sensors", "fit-drop", "--sensor", tmp_path / "none.toml", "--kitti-object", stem, "--out", out, "--overwrite"
    )
    assert code == 1 and "none.toml: it does not exist" in err and err.count("\n") == 1
    code, _, err = cli("sensors", "fit-drop", "--sensor", "hdl65", "--kitti-object", stem, "--out", out)
    assert code == 2 and "unknown sensor 'hdl65' (did you mean hdl64" in err
    code, _, err = cli("sensors", "fit-drop", "--kitti-object", stem, "--out", tmp_path / "missing" / "x.toml")
    assert code == 1 and "does not exist" in err and err.count("\n") == 1
    code, _, err = cli("sensors", "fit-drop", "--out", out)
    assert code == 2 and "needs real frames" in err and err.count("\n") == 1
    code, _, err = cli("sensors", "fit-drop", "--sensor", "avia", "--kitti-object", stem, "--out", out, "--overwrite")
    assert code == 1 and "needs a spinning sensor" in err and err.count("\n") == 1


def test_frames_that_tell_no_drop_apart_are_a_clear_error():
    """A real scan whose points all lie behind its camera leaves no geometry to fit on."""
    behind = np.column_stack([np.full(50, -10.0), np.linspace(-2, 2, 50), np.zeros(50)])
    calibration = Calibration(mount_pose(MOUNTS["kitti"]), KITTI_K, "test")
    frame = RealFrame(np.zeros((375, 1242, 3), np.uint8), behind, calibration, "behind")
    with pytest.raises(PipelineError, match="nothing tells a drop apart"):
        fit_drop([frame], load_sensor("hdl64-kitti"))


def test_a_ray_drop_table_with_more_returns_than_rays_is_refused(tmp_path):
    text = with_ray_drop((CATALOG_DIR / "hdl64.toml").read_text(), dataclasses.replace(KNOWN, rays=5, returns=9))
    path = tmp_path / "odd.toml"
    path.write_text(text)
    with pytest.raises(SensorSpecError, match=r"returns \(9\) must be between 0 and rays \(5\)"):
        load_sensor(str(path))

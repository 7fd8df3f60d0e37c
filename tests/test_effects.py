"""Return effects: each one's statistics against its setting, over many rays."""

from dataclasses import replace

import numpy as np
import pytest
from simlidar.pipeline.stages.scan import simulate_scan
from simlidar.sensors import MOUNTS, ReturnEffects, configure_sensor, load_sensor, mount_pose
from simlidar.sensors.effects import (
    detection_probability,
    intensity_from_signal,
    luma,
    resolve_returns,
    signal_strength,
    sub_ray_directions,
)
from simlidar.sensors.raycast import MeshScene

from .helpers import KITTI_K

BEAMS = 200_000


def flat_returns(effects, range_m=10.0, signal=1.0, seed=0):
    """Every beam one sub-ray hit at range_m with `signal`."""
    ranges = np.full((BEAMS, 1), range_m)
    return resolve_returns(ranges, np.full((BEAMS, 1), signal), effects, np.random.default_rng(seed))


def test_no_effects_returns_every_hit_unchanged():
    returns = flat_returns(ReturnEffects())
    assert np.all(returns.range_m == 10.0) and np.all(returns.signal == 1.0)


def test_drop_rate_is_the_share_of_beams_lost():
    returns = flat_returns(ReturnEffects(drop_rate=0.2))
    assert np.isinf(returns.range_m).mean() == pytest.approx(0.2, abs=0.005)


def test_range_noise_has_the_set_sigma_and_no_bias():
    kept = flat_returns(ReturnEffects(range_noise_m=0.05)).range_m
    assert kept.std() == pytest.approx(0.05, rel=0.02)
    assert kept.mean() == pytest.approx(10.0, abs=0.001)


def test_detection_is_90_percent_for_a_10_percent_target_at_the_detection_range():
    effects = ReturnEffects(detection_range_m=50.0)
    at_range = signal_strength(np.array(0.1), np.array(1.0), np.array(50.0))
    assert detection_probability(at_range, 50.0) == pytest.approx(0.9)
    measured = np.isfinite(flat_returns(effects, range_m=50.0, signal=at_range).range_m).mean()
    assert measured == pytest.approx(0.9, abs=0.005)
    # Twice as far: a quarter of the signal, 1 - 10^(-1/4) detected.
    twice = np.isfinite(flat_returns(effects, range_m=100.0, signal=at_range / 4).range_m).mean()
    assert twice == pytest.approx(1 - 10**-0.25, abs=0.005)


def test_intensity_is_reflectance_times_cos_over_range_squared_normalised_at_10m():
    signal = signal_strength(np.array([1.0, 0.5, 0.5]), np.array([1.0, 1.0, 0.5]), np.array([10.0, 10.0, 20.0]))
    assert np.allclose(intensity_from_signal(signal), [1.0, 0.5, 0.0625])


def test_sub_rays_sit_on_the_divergence_cone():
    beams = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.6, 0.0, 0.8]])
    rays = sub_ray_directions(beams, 0.004, 7)
    assert rays.shape == (3, 7, 3) and np.allclose(np.linalg.norm(rays, axis=2), 1.0)
    angles = np.arccos(np.clip(np.einsum("nkc,nc->nk", rays, beams), -1, 1))
    assert np.allclose(angles[:, 0], 0.0, atol=1e-7) and np.allclose(angles[:, 1:], 0.002, rtol=1e-3)


def straddling_beam(near_m, far_m, near_sub_rays, mode):
    """One 7-sub-ray beam: near_sub_rays of them on a surface at near_m, the rest at far_m,
    equal reflectance and incidence."""
    ranges = np.array([[near_m] * near_sub_rays + [far_m] * (7 - near_sub_rays)])
    signal = signal_strength(np.full(7, 0.5), np.ones(7), ranges[0])[None, :]
    effects = ReturnEffects(divergence_mrad=2.0, sub_rays=7, returns=mode)
    return resolve_returns(ranges, signal, effects, np.random.default_rng(0)).range_m[0]


def test_a_beam_on_an_edge_returns_near_far_or_mixed():
    assert straddling_beam(5.0, 20.0, 2, "first") == 5.0
    assert straddling_beam(5.0, 20.0, 2, "last") == 20.0
    # Two near sub-rays carry 2/25 of the signal units against five far ones' 5/400.
    assert straddling_beam(5.0, 20.0, 2, "strongest") == 5.0
    # One sub-ray at 5 m against six at 6.5 m: the wider far echo is stronger.
    assert straddling_beam(5.0, 6.5, 1, "strongest") == pytest.approx(6.5)
    # Closer than the echo separation (1 m) the echoes merge at the signal-weighted range.
    weights = np.array([3 / 10.0**2, 4 / 10.6**2])
    mixed = straddling_beam(10.0, 10.6, 3, "first")
    assert mixed == pytest.approx(np.dot(weights, [10.0, 10.6]) / weights.sum())
    assert 10.0 < mixed < 10.6


def wall_scan(vertices, detection_range_m, seed=0):
    """An HDL-64 at the camera's centre with only the weak-return drop on, over a quad."""
    sensor = configure_sensor(
        replace(load_sensor("hdl64"), effects=ReturnEffects()), detection_range_m=detection_range_m
    )
    scene = MeshScene(np.asarray(vertices, float), np.array([[0, 1, 2], [0, 2, 3]]))
    T_cam_lidar = mount_pose(MOUNTS["camera"])
    return simulate_scan(scene, KITTI_K, 1242, 375, sensor, T_cam_lidar, np.random.default_rng(seed))


def test_a_grazing_wall_loses_more_returns_than_a_facing_one():
    facing = wall_scan([[-20, -4, 40], [20, -4, 40], [20, 4, 40], [-20, 4, 40]], 30.0)
    # A wall along the road 3 m to the right, from 20 to 60 m: seen at about 4 deg.
    grazing = wall_scan([[3, -4, 20], [3, -4, 60], [3, 4, 60], [3, 4, 20]], 30.0)
    facing_kept = facing.counts["points"] / facing.counts["hits"]
    grazing_kept = grazing.counts["points"] / grazing.counts["hits"]
    assert facing.counts["hits"] > 1000 and grazing.counts["hits"] > 500
    # Reflectance 0.5 (no photo), threshold 0.1 / 30^2. Facing: signal / threshold is 2.8
    # straight ahead at 40 m and 2.0 at the wall's ends (44.7 m, cos 0.89): 99-99.8% kept.
    assert 0.985 < facing_kept < 0.999
    # Grazing: 1.66 at 20 m (cos 0.15, 98% kept), 0.21 at 40 m (38%), 0.06 at 60 m (13%).
    assert grazing_kept < 0.75
    without_drop = wall_scan([[3, -4, 20], [3, -4, 60], [3, 4, 60], [3, 4, 20]], 0.0)
    assert without_drop.counts["points"] == without_drop.counts["hits"]


def test_effects_are_seeded_and_the_photo_sets_intensity():
    quad = [[-20, -4, 15], [20, -4, 15], [20, 4, 15], [-20, 4, 15]]
    scene = MeshScene(np.asarray(quad, float), np.array([[0, 1, 2], [0, 2, 3]]))
    sensor = load_sensor("hdl64")
    T_cam_lidar = mount_pose(MOUNTS["kitti"])
    bright = np.ones((375, 1242), np.float32)
    dark = np.full((375, 1242), 0.1, np.float32)
    scans = [
        simulate_scan(scene, KITTI_K, 1242, 375, sensor, T_cam_lidar, np.random.default_rng(seed), reflectance=image)
        for seed, image in ((4, bright), (4, bright), (5, bright), (4, dark))
    ]
    assert np.array_equal(scans[0].points_lidar, scans[1].points_lidar)
    assert not np.array_equal(scans[0].points_lidar, scans[2].points_lidar)
    assert scans[0].phase == scans[1].phase != scans[2].phase
    intensity_bright, intensity_dark = (np.median(scan.points_lidar[:, 3]) for scan in (scans[0], scans[3]))
    assert intensity_dark == pytest.approx(0.1 * intensity_bright, rel=0.05)


def test_luma_weights():
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]]], np.uint8)
    assert np.allclose(luma(rgb), [[0.2126, 0.7152, 0.0722, 1.0]], atol=1e-6)

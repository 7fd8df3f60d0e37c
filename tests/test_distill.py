"""Cross-interaction and view-relational distillation: targets on values."""

import numpy as np
import pytest
import torch
from simlidar.pipeline import schema
from simlidar.train.distill import (
    align_teacher,
    bin_probabilities,
    cross_interaction_kd,
    teacher_disparity,
    teacher_relations,
    view_relational_loss,
)
from simlidar.train.errors import TrainError
from simlidar.train.kd_bench import frame_errors

# 64 centres evenly spaced in log depth over 1-100 m, as a student's span a driving scene.
CENTRES = torch.logspace(0, 2, 64)[None]


def street(height=40, width=60, seed=0):
    """Depth (H, W) m of a street: sky (0) above the horizon, the road and walls 2-90 m
    below; truth (H, W) m: every third column of the non-sky pixels (a sparse LiDAR)."""
    rng = np.random.default_rng(seed)
    depth = np.zeros((height, width))
    depth[height // 4 :] = np.exp(rng.uniform(np.log(2.0), np.log(90.0), (height - height // 4, width)))
    truth = np.zeros_like(depth)
    truth[:, ::3] = depth[:, ::3]
    return depth, truth


def as_teacher_png(disparity, valid):
    """What a shard carries: teacher.png's 0..1 and the json's (min, max)."""
    png, low, high = schema.encode_relative_png(disparity, valid)
    relative, stored_valid = schema.decode_relative_png(png)
    return torch.from_numpy(relative)[None], torch.from_numpy(stored_valid.astype(np.float32))[None], (low, high)


def perfect_teacher(depths, scale=3.7, shift=0.4):
    """A teacher right up to scale and shift: disparity scale / depth + shift, sky included
    (disparity 0 + shift). -> (teacher (V, 1, H, W) 0..1, valid, range (V, 2))."""
    maps = [
        as_teacher_png(np.where(d > 0, scale / np.where(d > 0, d, 1), 0) + shift, np.ones(d.shape, bool))
        for d in depths
    ]
    return (
        torch.stack([m[0] for m in maps]),
        torch.stack([m[1] for m in maps]),
        torch.tensor([m[2] for m in maps], dtype=torch.float32),
    )


@pytest.mark.parametrize("truth_m", [5.0, 20.0, 60.0])
def test_a_perfect_teachers_target_peaks_within_one_bin_of_the_truth(truth_m):
    depth, truth = street()
    depth[5, 1] = truth_m  # a probe pixel with no ground truth (column 1 is not scanned)
    teacher, valid, ranges = perfect_teacher([depth])
    aligned, mask = align_teacher(
        teacher_disparity(teacher, ranges), valid, torch.from_numpy(truth)[None, None].float()
    )
    assert mask[0, 0, 5, 1] == 1 and aligned[0, 0, 5, 1].item() == pytest.approx(truth_m, rel=1e-3)
    probabilities = bin_probabilities(aligned[:, 0], CENTRES, 0.03)
    nearest = (CENTRES[0].log() - np.log(truth_m)).abs().argmin()
    assert abs(int(probabilities[0, :, 5, 1].argmax()) - int(nearest)) <= 1
    expected = (probabilities[0, :, 5, 1] * CENTRES[0]).sum().item()
    assert expected == pytest.approx(truth_m, rel=0.04)


def test_targets_do_not_depend_on_the_teachers_scale_and_shift():
    depth, truth = street()
    target = torch.from_numpy(truth)[None, None].float()
    reference = None
    for scale, shift in ((1.0, 0.0), (37.5, 2.0), (0.001, 0.5)):
        teacher, valid, ranges = perfect_teacher([depth], scale, shift)
        aligned, mask = align_teacher(teacher_disparity(teacher, ranges), valid, target)
        targets = bin_probabilities(aligned[:, 0], CENTRES, 0.03) * mask
        reference = targets if reference is None else reference
        assert torch.allclose(targets, reference, atol=1e-3)


def test_the_teacher_agrees_with_itself_across_overlapping_views():
    # One panorama seen by two views that share its middle third; only view a sees sky
    # and only view b the near wall, so their own ranges differ widely.
    panorama, truth = street(40, 90)
    panorama[:10, :30] = 0
    panorama[10:, 60:] = np.minimum(panorama[10:, 60:], 3.0)
    truth = np.where(truth > 0, panorama, 0)
    views = [panorama[:, :60], panorama[:, 30:]]
    teacher, valid, ranges = perfect_teacher(views)
    target = torch.from_numpy(np.stack([truth[:, :60], truth[:, 30:]]))[:, None].float()
    aligned, mask = align_teacher(teacher_disparity(teacher, ranges, 2), valid, target, views=2)
    u = torch.arange(30, 60).repeat(30)
    v = torch.arange(10, 40).repeat_interleave(30)
    matches = torch.stack([u, v, u - 30, v], 1).float()
    centres = torch.stack([CENTRES[0], CENTRES[0] * 1.3])  # each view its own centres
    rays = torch.tensor([0.0, 0, 0, 0, 0, 1]).expand(len(matches), 2, 6)  # one camera: distance = z
    relations, usable = teacher_relations(aligned, mask, centres.mean(0), matches, rays, 0.03)
    assert usable.all() and relations.min().item() >= 0.99
    assert torch.allclose(aligned[0, 0, 10:, 30:], aligned[1, 0, 10:, :30], rtol=1e-3)


def test_a_constant_teacher_view_leaves_the_scene_finite():
    ranges = torch.tensor([[0.5, 0.5], [0.2, 0.9]])
    disparity = teacher_disparity(torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(0)), ranges, 2)
    assert torch.isfinite(disparity).all()
    # View b's values on view a's scale: (0.2 + t * 0.7 - 0.5) / 0.7.
    relative = torch.full((2, 1, 1, 1), 0.5)
    assert torch.allclose(teacher_disparity(relative, ranges, 2).flatten(), torch.tensor([0.0, (0.55 - 0.5) / 0.7]))


def test_the_kl_is_zero_for_a_student_on_the_target_and_positive_otherwise():
    depth, truth = street()
    teacher, valid, ranges = perfect_teacher([depth])
    aligned, mask = align_teacher(
        teacher_disparity(teacher, ranges), valid, torch.from_numpy(truth)[None, None].float()
    )
    logits = bin_probabilities(aligned[:, 0], CENTRES, 0.03).clamp(min=1e-30).log()
    assert cross_interaction_kd(logits, CENTRES, aligned, mask, 0.03).item() == pytest.approx(0, abs=1e-5)
    assert cross_interaction_kd(torch.zeros_like(logits), CENTRES, aligned, mask, 0.03).item() > 1.0


def test_kd_sends_no_gradient_into_the_centres_and_some_into_the_logits():
    depth, truth = street()
    teacher, valid, ranges = perfect_teacher([depth])
    aligned, mask = align_teacher(
        teacher_disparity(teacher, ranges), valid, torch.from_numpy(truth)[None, None].float()
    )
    centres = CENTRES.clone().requires_grad_(True)
    logits = torch.zeros(1, 64, *depth.shape, requires_grad=True)
    cross_interaction_kd(logits, centres, aligned, mask, 0.03).backward()
    assert centres.grad is None or centres.grad.abs().max().item() == 0
    assert logits.grad.norm().item() > 1e-3


def test_a_scene_without_ground_truth_adds_no_kd():
    depth, _ = street()
    teacher, valid, ranges = perfect_teacher([depth])
    aligned, mask = align_teacher(teacher_disparity(teacher, ranges), valid, torch.zeros(1, 1, *depth.shape))
    assert mask.sum() == 0
    assert cross_interaction_kd(torch.randn(1, 64, *depth.shape), CENTRES, aligned, mask, 0.03).item() == 0


def two_view_scene(student_b_features=None):
    """One scene of two identical views (8 x 12) whose every pixel corresponds."""
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(1, 1, 5, 4, 6, generator=generator)
    student = torch.cat([features, features if student_b_features is None else student_b_features], 1)
    depth = (2 + 30 * torch.rand(1, 1, 1, 8, 12, generator=generator)).expand(1, 2, 1, 8, 12)
    u, v = torch.meshgrid(torch.arange(12.0), torch.arange(8.0), indexing="xy")
    matches = torch.zeros(1, 2, 2, 96, 4)
    matches[0, 0, 1] = torch.stack([u.flatten(), v.flatten(), u.flatten(), v.flatten()], 1)
    valid = torch.zeros(1, 2, 2, 96)
    valid[0, 0, 1] = 1
    rays = torch.tensor([0.0, 0, 0, 0, 0, 1]).expand(1, 2, 2, 96, 2, 6)  # one camera: distance = z
    return student, depth, torch.ones(1, 2, 1, 8, 12), matches, rays, valid


def test_identical_content_in_two_views_gives_teacher_relation_one_and_loss_zero():
    student, depth, mask, matches, rays, valid = two_view_scene()
    relations, usable = teacher_relations(depth[0], mask[0], CENTRES[0], matches[0, 0, 1], rays[0, 0, 1], 0.03)
    assert usable.all() and torch.allclose(relations, torch.ones(96), atol=1e-6)
    centres = CENTRES.expand(2, -1)[None]
    scaled = student * torch.tensor([1.0, 7.0]).view(1, 2, 1, 1, 1)
    loss = view_relational_loss(scaled, depth, mask, centres, matches, rays, valid, 0.03)
    assert loss.item() == pytest.approx(0, abs=1e-6)


def test_views_whose_features_differ_where_the_teacher_agrees_have_a_loss_with_a_gradient():
    other = torch.randn(1, 1, 5, 4, 6, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
    student, depth, mask, matches, rays, valid = two_view_scene(other)
    centres = CENTRES.expand(2, -1)[None].clone().requires_grad_(True)
    loss = view_relational_loss(student, depth, mask, centres, matches, rays, valid, 0.03)
    loss.backward()
    assert loss.item() > 0.05 and other.grad.norm().item() > 1e-3
    assert centres.grad is None or centres.grad.abs().max().item() == 0


def test_no_shared_point_gives_no_relational_loss_and_one_view_is_an_error():
    student, depth, mask, matches, rays, valid = two_view_scene()
    centres = CENTRES.expand(2, -1)[None]
    assert view_relational_loss(student, depth, mask, centres, matches, rays, valid * 0, 0.03).item() == 0
    with pytest.raises(TrainError, match="scenes of 2 or more views"):
        one_view = (student, depth, mask, centres)
        view_relational_loss(*(part[:, :1] for part in one_view), matches, rays, valid, 0.03)


def test_temperature_must_be_positive():
    with pytest.raises(TrainError, match="--temperature must be positive"):
        bin_probabilities(torch.ones(1, 2, 2), CENTRES, 0.0)


def test_the_kd_target_bench_finds_a_perfect_teacher_within_a_bin():
    depth, truth = street(60, 80)
    errors = frame_errors(torch.from_numpy(truth)[None].float(), 64, (0.5, 100.0))
    spacing = np.log(200) / 64  # log-uniform centres over 0.5-100 m
    for (centres, temperature), (true_m, expected, peak) in errors.items():
        assert torch.equal(true_m, torch.from_numpy(truth[truth > 0]).float())
        assert (peak / true_m).log().abs().max().item() <= spacing / 2 + 1e-3 or centres == "gt-quantiles"
        if temperature == 0.03:
            assert (expected / true_m - 1).abs().mean().item() < 0.01, centres

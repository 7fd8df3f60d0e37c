"""Cross-interaction and view-relational distillation."""

import pytest
import torch
from simlidar.train.distill import (
    cross_interaction_kd,
    normalise_teacher,
    normalised_centres,
    teacher_bin_probabilities,
    view_relational_loss,
)
from simlidar.train.errors import TrainError


def teacher_map(seed=0, shape=(2, 1, 12, 16)):
    generator = torch.Generator().manual_seed(seed)
    return 0.05 + torch.rand(shape, generator=generator)


def test_centres_normalise_in_disparity_nearest_one_farthest_zero():
    # Disparities 1/2, 1/4, 1/8: (d - 1/8) / (1/2 - 1/8).
    normalised = normalised_centres(torch.tensor([[2.0, 4.0, 8.0]]))
    assert torch.allclose(normalised, torch.tensor([[1.0, 1.0 / 3.0, 0.0]]))


def test_kl_is_zero_when_the_students_bins_equal_the_teachers():
    teacher, valid = teacher_map(), torch.ones(2, 1, 12, 16)
    centres = torch.tensor([[1.0, 2.0, 4.0, 8.0, 16.0]]).repeat(2, 1)
    normalised, _ = normalise_teacher(teacher, valid)
    student_logits = teacher_bin_probabilities(normalised, centres, 0.1).log()
    assert cross_interaction_kd(student_logits, centres, teacher, valid, 0.1).item() == pytest.approx(0, abs=1e-6)
    assert cross_interaction_kd(torch.zeros_like(student_logits), centres, teacher, valid, 0.1).item() > 0.05


def test_a_metric_rescaling_or_shift_of_the_teacher_leaves_the_targets_unchanged():
    teacher, valid = teacher_map(), (teacher_map(1) > 0.3).float()
    centres = torch.tensor([[1.0, 3.0, 9.0, 27.0]]).repeat(2, 1)
    reference = teacher_bin_probabilities(normalise_teacher(teacher, valid)[0], centres, 0.05)
    for scaled in (teacher * 37.5, teacher / 1000.0, 3.0 * teacher + 2.0):
        targets = teacher_bin_probabilities(normalise_teacher(scaled, valid)[0], centres, 0.05)
        assert torch.allclose(targets * valid, reference * valid, atol=1e-5)


def test_the_teachers_nearest_pixel_goes_to_the_nearest_bin():
    teacher = torch.linspace(0, 1, 100).view(1, 1, 10, 10)  # disparity: the last pixel is nearest
    normalised, _ = normalise_teacher(teacher, torch.ones_like(teacher))
    probabilities = teacher_bin_probabilities(normalised, torch.tensor([[1.0, 2.0, 4.0]]), 0.01)
    assert probabilities[0, :, -1, -1].argmax() == 0 and probabilities[0, :, 0, 0].argmax() == 2


def test_pixels_without_teacher_add_nothing():
    teacher, valid = teacher_map(), torch.zeros(2, 1, 12, 16)
    logits = torch.randn(2, 4, 12, 16)
    assert cross_interaction_kd(logits, torch.tensor([[1.0, 2.0, 3.0, 4.0]] * 2), teacher, valid, 0.1).item() == 0


def test_relational_loss_is_zero_up_to_a_per_view_scale_and_positive_otherwise():
    generator = torch.Generator().manual_seed(0)
    teacher = torch.rand(2, 3, 6, 16, 32, generator=generator)
    scales = torch.tensor([[0.5, 3.0, 20.0], [1.0, 0.1, 7.0]]).view(2, 3, 1, 1, 1)
    neighbours = torch.tensor([[0, 1, 0], [1, 0, 1], [0, 1, 0]]).float().repeat(2, 1, 1)
    assert view_relational_loss(teacher * scales, teacher, neighbours).item() == pytest.approx(0, abs=1e-7)
    other = torch.randn(2, 3, 5, 16, 32, generator=generator)
    assert view_relational_loss(other, teacher, neighbours).item() > 0.01


def test_a_scene_with_one_view_is_an_error():
    with pytest.raises(TrainError, match="scenes of 2 or more views"):
        view_relational_loss(torch.rand(2, 1, 4, 8, 8), torch.rand(2, 1, 4, 8, 8), torch.zeros(2, 1, 1))

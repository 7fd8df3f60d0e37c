"""Losses: SSI invariance and gradients, masked L1/L2, multi-scale; the overfit check."""

import pytest
import torch
import torch.nn.functional as F
from simlidar.train.losses import (
    SSILoss,
    align_scale_shift,
    gradient_matching,
    masked_l1,
    masked_l2,
    multiscale,
)
from simlidar.train.model import DepthCompletionNet, ModelConfig


def teacher_map(seed=0, shape=(2, 1, 16, 24)):
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("trim", [0.0, 0.2])
@pytest.mark.parametrize(("scale", "shift"), [(1.0, 0.0), (3.5, -2.0), (0.01, 7.0)])
def test_ssi_is_zero_for_any_positive_affine_map_of_the_teacher(trim, scale, shift):
    teacher = teacher_map()
    mask = (teacher_map(1) > 0.3).double()
    loss = SSILoss(trim=trim, gradient_weight=0.5)(scale * teacher + shift, teacher, mask)
    assert loss.item() == pytest.approx(0.0, abs=1e-9)


def test_ssi_is_positive_for_another_map_or_a_negative_scale():
    teacher, mask = teacher_map(), torch.ones(2, 1, 16, 24, dtype=torch.float64)
    for trim in (0.0, 0.2):
        loss = SSILoss(trim=trim)
        assert loss(teacher_map(2), teacher, mask).item() > 1e-3
        assert loss(-2.0 * teacher + 1.0, teacher, mask).item() > 1e-3
        assert loss(teacher**2, teacher, mask).item() > 1e-5


def test_alignment_is_the_least_squares_fit():
    # prediction p = [0, 1, 2, 3], target = 2p + 1 except the last (+ 1): hand-solved
    # normal equations give s = 2.3, t = 0.8.
    prediction = torch.tensor([0.0, 1.0, 2.0, 3.0, 0.0, 1.0, 2.0, 3.0], dtype=torch.float64).view(1, 1, 2, 4)
    target = torch.tensor([1.0, 3.0, 5.0, 8.0, 1.0, 3.0, 5.0, 8.0], dtype=torch.float64).view(1, 1, 2, 4)
    scale, shift, fitted = align_scale_shift(prediction, target, torch.ones_like(prediction))
    assert scale.item() == pytest.approx(2.3) and shift.item() == pytest.approx(0.8) and fitted.item() == 1


@pytest.mark.parametrize("valid_pixels", [0, 1, 2, 9])
def test_ssi_gradient_is_finite_with_few_valid_pixels(valid_pixels):
    prediction = teacher_map(3, (1, 1, 8, 8)).float().requires_grad_()
    mask = torch.zeros(1, 1, 8, 8)
    mask.view(-1)[:valid_pixels] = 1
    for trim in (0.0, 0.2):
        loss = SSILoss(trim=trim)(prediction, teacher_map(4, (1, 1, 8, 8)).float(), mask)
        (gradient,) = torch.autograd.grad(loss, prediction)
        assert torch.isfinite(loss) and torch.isfinite(gradient).all()


def test_a_constant_prediction_gets_no_scale_and_a_finite_gradient():
    prediction = torch.full((1, 1, 8, 8), 2.0, requires_grad=True)
    loss = SSILoss()(prediction, teacher_map(5, (1, 1, 8, 8)).float(), torch.ones(1, 1, 8, 8))
    loss.backward()
    assert torch.isfinite(prediction.grad).all()


def test_gradient_matching_of_a_ramp():
    # residual = x (one unit per column) on a 4 x 4 grid: full scale, |d/dx| = 1 on 12
    # pairs, 0 on 12 vertical pairs -> 0.5; at 1/2 scale (2 x 2, step 2): 2 on 2 pairs of 4 -> 1.0.
    residual = torch.arange(4.0).repeat(4, 1).view(1, 1, 4, 4)
    assert gradient_matching(residual, torch.ones_like(residual), scales=2).item() == pytest.approx(1.5)


def test_masked_losses_and_multiscale_by_hand():
    prediction = torch.tensor([[1.0, 2.0], [3.0, 10.0]]).view(1, 1, 2, 2)
    target = torch.tensor([[2.0, 2.0], [1.0, 0.0]]).view(1, 1, 2, 2)
    mask = (target > 0).float()
    assert masked_l1(prediction, target, mask).item() == pytest.approx(1.0)  # (1 + 0 + 2) / 3
    assert masked_l2(prediction, target, mask).item() == pytest.approx(5 / 3)  # (1 + 0 + 4) / 3
    coarse = torch.full((1, 1, 1, 1), 2.0)  # upsampled to 2 x 2 of 2.0: errors 0, 0, 1
    total = multiscale(masked_l1, [prediction, coarse], target, mask, weights=(1.0, 0.5))
    assert total.item() == pytest.approx(1.0 + 0.5 * 1 / 3)


@pytest.mark.slow
def test_the_model_overfits_one_small_batch():
    torch.manual_seed(0)
    model = DepthCompletionNet(ModelConfig(width=8, levels=2)).train()
    # A smooth image whose first channel is the depth: learnable at every scale.
    rgb = F.interpolate(torch.rand(2, 3, 4, 8), size=(16, 32), mode="bilinear", align_corners=False)
    dense = 5.0 + 20.0 * rgb[:, :1]
    sparse = dense * (torch.rand(2, 1, 16, 32) < 0.1)
    mask = torch.ones_like(dense)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        loss = multiscale(masked_l1, model(rgb, sparse), dense, mask)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0]

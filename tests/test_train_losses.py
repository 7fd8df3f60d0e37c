"""Losses: SSI invariance and gradients, masked L1/L2, multi-scale; the overfit check."""

import math

import pytest
import torch
import torch.nn.functional as F
from simlidar.train.config import TrainConfig
from simlidar.train.losses import (
    SSI_UNITS,
    SSILoss,
    gradient_matching,
    masked_l1,
    masked_l2,
    masked_median,
    median_mad_align,
    multiscale,
    teacher_depth,
    trimmed_absolute,
)
from simlidar.train.model import DepthCompletionNet, ModelConfig
from simlidar.train.objectives import finetune_ssi


def teacher_map(seed=0, shape=(2, 1, 16, 24)):
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("trim", [0.0, 0.2])
@pytest.mark.parametrize(("scale", "shift"), [(1.0, 0.0), (3.5, -2.0), (0.01, 7.0)])
def test_ssi_is_zero_for_any_positive_affine_map_of_the_teacher(trim, scale, shift):
    teacher = teacher_map()
    mask = (teacher_map(1) > 0.3).double()
    loss = SSILoss(trim=trim, gradient_weight=0.5)(scale * teacher + shift, teacher, mask)
    assert loss.item() == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("units", SSI_UNITS)
@pytest.mark.parametrize("trim", [0.0, 0.2])
def test_a_prediction_running_against_the_teacher_is_pulled_back(trim, units):
    # The issue: a least-squares scale clamped at 0 gave -teacher a positive loss and a zero
    # gradient. With median/MAD alignment the scale stays positive: the loss pays, and a
    # small step along -gradient lowers it.
    teacher, mask = teacher_map(), torch.ones(2, 1, 16, 24, dtype=torch.float64)
    prediction = (10.0 - 5.0 * teacher).requires_grad_()
    loss_fn = SSILoss(trim=trim, units=units)
    loss = loss_fn(prediction, teacher, mask)
    (gradient,) = torch.autograd.grad(loss, prediction)
    assert loss.item() > 0.5 and gradient.norm().item() > 1e-3
    assert loss_fn(prediction.detach() - 0.5 * gradient / gradient.norm(), teacher, mask) < loss
    for other in (teacher_map(2), teacher**3):
        assert loss_fn(other, teacher, mask).item() > 1e-3


def test_median_mad_alignment_by_hand():
    values = torch.tensor([1.0, 2, 3, 4, 5, 6, 7, 8, 100, -50], dtype=torch.float64).view(1, 1, 2, 5)
    mask = torch.ones_like(values)
    mask.view(-1)[-1] = 0
    aligned, mad, fitted = median_mad_align(values, mask)
    # median of 1..8, 100 is 5; MAD = (4 + 3 + 2 + 1 + 0 + 1 + 2 + 3 + 95) / 9 = 111 / 9: the
    # outlier moves neither the median nor, much, the scale.
    assert masked_median(values, mask).item() == 5.0 and mad.item() == pytest.approx(111 / 9)
    assert aligned.flatten()[[0, 4, 8]].tolist() == pytest.approx([-4 * 9 / 111, 0.0, 95 * 9 / 111])
    assert fitted.item() == 1
    _, _, fitted = median_mad_align(values, mask * (torch.arange(10).view(1, 1, 2, 5) < 7))
    assert fitted.item() == 0  # 7 valid pixels: too few to align


def test_trimming_drops_the_largest_residuals_and_divides_by_2m():
    residual = torch.tensor([0.1, -0.1, 0.1, 0.1, 10.0], dtype=torch.float64).view(1, 1, 1, 5)
    mask = torch.ones_like(residual)
    # MiDaS: keep the floor(0.8 * 5) = 4 smallest, sum / (2 * M): 0.4 / 10.
    assert trimmed_absolute(residual, mask, 0.2).item() == pytest.approx(0.04)
    assert trimmed_absolute(residual, mask, 0.0).item() == pytest.approx(10.4 / 10)


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


def test_gradient_matching_of_a_ramp_is_divided_by_valid_pixels():
    # residual = x (one unit per column) on a 4 x 4 grid: full scale, |d/dx| = 1 on 12 pairs
    # over 16 pixels -> 0.75; at 1/2 scale (2 x 2, step 2): 2 on 2 pairs over 4 pixels -> 1.0.
    residual = torch.arange(4.0).repeat(4, 1).view(1, 1, 4, 4)
    assert gradient_matching(residual, torch.ones_like(residual), scales=2).item() == pytest.approx(1.75)


def test_teacher_depth_recovers_the_ground_truth_from_an_affine_disparity():
    depth = torch.linspace(3.0, 90.0, 64, dtype=torch.float64).view(1, 1, 4, 16)
    teacher = 0.2 + 7.0 / depth  # relative disparity: unknown scale and shift
    gt = torch.where(torch.arange(64).view(1, 1, 4, 16) % 5 == 0, depth, torch.zeros_like(depth))
    recovered, valid = teacher_depth(teacher, torch.ones_like(teacher), gt)
    assert valid.all() and torch.allclose(recovered, depth)
    _, valid = teacher_depth(-teacher, torch.ones_like(teacher), gt)  # runs against the ground truth
    assert valid.sum() == 0


def test_finetune_ssi_pulls_a_pixel_alike_at_every_depth_as_the_supervised_l1():
    # Depth 3-90 m, ground truth on every 4th row, the teacher a relative disparity of the
    # truth, a prediction off by a smooth +-10 %. In disparity the SSI gradient fell as
    # 1 / depth^2 (50x to 5000x below L1's); in metres it is flat across depth ranges.
    rows, columns = 32, 96
    depth = torch.logspace(math.log10(3.0), math.log10(90.0), columns).repeat(rows, 1).view(1, 1, rows, columns)
    gt = depth * (torch.arange(rows) % 4 == 0).view(1, 1, rows, 1)
    prediction = (depth * (1 + 0.1 * torch.sin(torch.arange(columns) / 7.0))).requires_grad_()
    batch = {"dense": gt, "teacher": 1.0 / depth, "teacher_valid": torch.ones_like(depth)}
    (l1_gradient,) = torch.autograd.grad(masked_l1(prediction, gt, (gt > 0).float()), prediction)

    def ratios(**options):
        config = TrainConfig(shards="", stage="finetune", **options)
        (ssi_gradient,) = torch.autograd.grad(finetune_ssi(config, prediction, batch), prediction)
        by_range = []
        for low, high in ((3, 10), (10, 30), (30, 90)):
            in_range = (depth >= low) & (depth < high)
            ssi = ssi_gradient[in_range & (gt == 0)].abs().mean()
            by_range.append((ssi / l1_gradient[in_range & (gt > 0)].abs().mean()).item())
        return by_range

    # A pixel without GT gets about 1 / (2M) from the data term, M = 3/4 of the pixels (plus
    # what flows through the median and MAD, and the gradient term's +-1/M per pair); one with
    # GT gets 1 / N, N = 1/4 of them: ratios near 1/6, the same order at every depth (in
    # disparity they fell from 1/50 to 1/5000 between 3-10 and 30-90 m).
    for options in ({"trim": 0.0, "gradient_weight": 0.0}, {"trim": 0.2, "gradient_weight": 0.5}):
        by_range = ratios(**options)
        assert all(0.1 < ratio < 0.5 for ratio in by_range) and max(by_range) / min(by_range) < 3, by_range


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

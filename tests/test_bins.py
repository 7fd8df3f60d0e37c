"""The depth-bin head: centres from widths, depth from probabilities, the chamfer term."""

import pytest
import torch
from simlidar.train.bins import BinHead, bin_depth, centres_from_widths, chamfer_loss
from simlidar.train.errors import TrainError


def test_equal_widths_give_evenly_spaced_centres():
    centres = centres_from_widths(torch.ones(1, 4), 2.0, 10.0)
    # Edges 2, 4, 6, 8, 10 -> centres at the midpoints.
    assert torch.allclose(centres, torch.tensor([[3.0, 5.0, 7.0, 9.0]]))


def test_centres_are_increasing_and_inside_the_range():
    torch.manual_seed(0)
    head = BinHead(8, 4, bins=16, min_depth=0.5, max_depth=80.0)
    centres, logits = head(torch.randn(3, 8, 2, 2) * 50, torch.randn(3, 4, 5, 6))
    depth = bin_depth(logits, centres)
    assert centres.shape == (3, 16) and logits.shape == (3, 16, 5, 6) and depth.shape == (3, 1, 5, 6)
    assert (centres.diff(dim=1) > 0).all()
    assert (centres > 0.5).all() and (centres < 80.0).all()
    assert (depth >= centres[:, :1, None, None]).all() and (depth <= centres[:, -1:, None, None]).all()


def test_depth_is_the_probability_weighted_centre():
    centres = torch.tensor([[3.0, 5.0, 7.0, 9.0]])
    one_hot = torch.full((1, 4, 1, 2), -1e4)
    one_hot[0, 2, 0, 0] = 0  # pixel 0: all mass on 7 m
    one_hot[0, :2, 0, 1] = 0  # pixel 1: half on 3 m, half on 5 m
    assert torch.allclose(bin_depth(one_hot, centres), torch.tensor([[[[7.0, 4.0]]]]))


def test_chamfer_is_zero_when_centres_are_the_ground_truth_depths_and_counts_both_ways():
    centres = torch.tensor([[3.0, 5.0, 7.0, 9.0]])
    target = torch.tensor([3.0, 5.0, 7.0, 9.0, 0.0, 0.0]).view(1, 1, 2, 3)
    mask = (target > 0).float()
    assert chamfer_loss(centres, target, mask).item() == 0.0
    # GT at 3 m only: depths -> nearest centre 0; centres -> nearest depth 0, 2, 4, 6 (mean 3).
    only_three = torch.where(target == 3.0, target, torch.zeros_like(target))
    assert chamfer_loss(centres, only_three, (only_three > 0).float()).item() == pytest.approx(3.0)


def test_fewer_than_two_bins_is_an_error():
    with pytest.raises(TrainError, match="--bins must be at least 2"):
        BinHead(8, 4, bins=1, min_depth=0.5, max_depth=80.0)

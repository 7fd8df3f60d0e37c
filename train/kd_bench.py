"""How well the KD target stands for the truth: `simlidar bench kd-target`.

For every frame of some shards with ground truth, a perfect teacher (disparity
scale / depth + shift at the ground-truth pixels, the shift alone everywhere else, as
a teacher sees sky) goes through the same alignment and bin probabilities as training
(distill.py). Per depth range of the truth it prints the expected depth of the target
(sum q_i c_i) and the depth of its most likely bin against the truth, for several
temperatures and two sets of centres: evenly spaced in log depth over the bin range
(a student before it has learnt), and at quantiles of the frame's ground truth (where
the chamfer term puts them).
"""

from __future__ import annotations

from itertools import islice

import torch

from . import data
from .distill import align_teacher, bin_probabilities
from .shards import list_shards

DEPTH_RANGES = ((0.0, 10.0), (10.0, 30.0), (30.0, 90.0))
TEMPERATURES = (0.005, 0.01, 0.02, 0.03, 0.05, 0.1)
# The perfect teacher's scale and shift (any would do: the targets do not depend on them).
TEACHER_SCALE, TEACHER_SHIFT = 3.7, 0.4


def centre_sets(truth: torch.Tensor, bins: int, bin_range: tuple[float, float]) -> dict[str, torch.Tensor]:
    """truth (P,) metres -> {name: (1, bins) centres}: log-uniform over bin_range, and the
    truth's quantiles at (i + 0.5) / bins."""
    low, high = bin_range
    quantiles = torch.quantile(truth.double(), (torch.arange(bins, dtype=torch.float64) + 0.5) / bins)
    return {
        "log-uniform": torch.logspace(torch.tensor(low).log10(), torch.tensor(high).log10(), bins)[None],
        "gt-quantiles": quantiles.float().clamp(low, high)[None],
    }


def frame_errors(dense: torch.Tensor, bins: int, bin_range: tuple[float, float]) -> dict:
    """dense (1, H, W) ground truth m -> {(centres, temperature): (truth (P,), expected
    (P,), peak (P,))} at the ground-truth pixels, for a perfect teacher."""
    truth_map = dense[None].float()
    has_truth = truth_map > 0
    disparity = torch.where(has_truth, TEACHER_SCALE / truth_map.clamp(min=1e-6), 0) + TEACHER_SHIFT
    teacher_depth, _ = align_teacher(disparity, torch.ones_like(truth_map), truth_map)
    truth = truth_map[has_truth]
    aligned = teacher_depth[has_truth]
    errors = {}
    for name, centres in centre_sets(truth, bins, bin_range).items():
        for temperature in TEMPERATURES:
            probabilities = bin_probabilities(aligned[None], centres, temperature)[0]
            expected = (probabilities * centres[0, :, None]).sum(0)
            peak = centres[0, probabilities.argmax(0)]
            errors[name, temperature] = (truth, expected, peak)
    return errors


def run_kd_target_bench(shards: str, bins: int, bin_range: tuple[float, float], frames: int):
    """The table of the module doc, one line at a time, per depth range in % of the
    truth: the mean and the mean absolute error of the target's expected depth, and the
    mean absolute error of its most likely bin's centre."""
    urls = list_shards(shards)
    collected: dict = {}
    count = 0
    for sample in islice(iter(data.eval_stream(urls)), frames):
        if not (sample["dense"] > 0).any():
            continue
        count += 1
        for key, values in frame_errors(sample["dense"], bins, bin_range).items():
            collected.setdefault(key, []).append(values)
    yield f"{count} images of {shards}; {bins} bins over {bin_range[0]}-{bin_range[1]} m; perfect teacher"
    ranges = "".join(f"{f'{low:.0f}-{high:.0f} m':>22s}" for low, high in DEPTH_RANGES)
    yield f"{'centres':14s} {'T':>5s}{ranges}"
    yield f"{'':14s} {'':>5s}" + f"{'bias  |error|  |peak|':>22s}" * len(DEPTH_RANGES)
    for (name, temperature), parts in collected.items():
        truth, expected, peak = (torch.cat(values) for values in zip(*parts, strict=True))
        cells = []
        for low, high in DEPTH_RANGES:
            inside = (truth >= low) & (truth < high)
            if not inside.any():
                cells.append(f"{'-':>22s}")
                continue
            error = expected[inside] / truth[inside] - 1
            peak_error = (peak[inside] / truth[inside] - 1).abs().mean()
            cells.append(f"{100 * error.mean():+8.2f} {100 * error.abs().mean():7.2f} {100 * peak_error:6.2f}")
        yield f"{name:14s} {temperature:5.3f}" + "".join(cells)

"""Distillation from a depth foundation model into a bin student.

Cross-interaction KD. The teacher's output is relative: its scale (and, for disparity,
its shift) is unknown. Per image it is normalised to [0, 1] between robust low and high
quantiles, which removes any scale and shift. The student's metric bin centres are
normalised the same way in disparity (1 / depth), so the nearest centre maps to 1 and
the farthest to 0 like the teacher's near and far. Each pixel's teacher value placed
on these normalised centres gives soft teacher bin probabilities,
q_i = softmax_i(-|t - c_i| / temperature), and a per-pixel KL(q || p) pulls the
student's bin probabilities p toward them. The centres are detached: their metric
values come from ground truth only, scale never flows from the teacher.

View-relational KD. For each pair of adjacent views of a scene, a relation matrix: the
cosine similarities between the pooled feature tokens (a grid of cells) of one view
and those of the other. The student's matrices are matched to the teacher's with a
robust (smooth L1) loss. Cosine similarity ignores a feature map's scale, so the loss
is zero whenever the student's features equal the teacher's up to a per-view scale,
and the two may have different channel counts.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .errors import TrainError

# Teacher values are normalised between these per-image quantiles (robust min and max).
TEACHER_QUANTILES = (0.02, 0.98)
# Fewer valid teacher pixels than this: no normalisation, the image adds no KD.
MIN_TEACHER_PIXELS = 8
# Relation matrices compare views on a grid of this many cells (rows, columns).
RELATION_GRID = (4, 8)
# Smooth-L1 transition of the relational loss (cosine similarities lie in [-1, 1]).
RELATION_BETA = 0.1


def normalise_teacher(teacher: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """teacher (B, 1, H, W) relative disparity (any scale and shift), valid (B, 1, H, W)
    0/1 -> (normalised (B, 1, H, W) in [0, 1], valid (B, 1, H, W)) with the images that
    have too few valid pixels or no spread masked out."""
    flat = teacher.flatten(1).float()
    present = valid.flatten(1) > 0
    low_q, high_q = TEACHER_QUANTILES
    with_nan = torch.where(present, flat, torch.full_like(flat, float("nan")))
    bounds = torch.nanquantile(with_nan, torch.tensor([low_q, high_q], device=flat.device), dim=1)
    low, high = bounds[0][:, None], bounds[1][:, None]
    spread = high - low
    usable = (present.sum(1, keepdim=True) >= MIN_TEACHER_PIXELS) & (spread > 1e-12 * high.abs().clamp(min=1e-12))
    safe_spread = torch.where(usable, spread, torch.ones_like(spread))
    # An image with no valid pixel has NaN bounds: 0 there, not NaN (NaN * 0 is NaN).
    normalised = torch.where(usable, (flat - low) / safe_spread, torch.zeros_like(flat)).clamp(0, 1)
    mask = (present & usable).to(teacher.dtype)
    return normalised.view_as(teacher), mask.view_as(teacher)


def normalised_centres(centres: torch.Tensor) -> torch.Tensor:
    """centres (B, N) metres, increasing -> (B, N) their disparities min-max normalised per
    image: 1 for the nearest centre, 0 for the farthest."""
    disparity = 1.0 / centres
    near, far = disparity[:, :1], disparity[:, -1:]
    return (disparity - far) / (near - far).clamp(min=1e-12)


def teacher_bin_probabilities(teacher_normalised: torch.Tensor, centres: torch.Tensor, temperature: float):
    """teacher_normalised (B, 1, H, W) in [0, 1], centres (B, N) m -> soft teacher bin
    probabilities (B, N, H, W): softmax over bins of -|t - normalised centre| / temperature."""
    placed = normalised_centres(centres.detach())[:, :, None, None]
    return (-(teacher_normalised - placed).abs() / temperature).softmax(1)


def cross_interaction_kd(
    logits: torch.Tensor, centres: torch.Tensor, teacher: torch.Tensor, teacher_valid: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Mean over valid teacher pixels of KL(q || p): q the teacher's soft bin probabilities
    on the student's centres (B, N), p = softmax(logits (B, N, H, W)); teacher (B, 1, H, W)
    relative disparity with teacher_valid (B, 1, H, W) 0/1. 0 when no pixel is valid."""
    if temperature <= 0:
        raise TrainError(f"--temperature must be positive (got {temperature})")
    normalised, mask = normalise_teacher(teacher, teacher_valid)
    target = teacher_bin_probabilities(normalised, centres, temperature)
    log_student = logits.float().log_softmax(1)
    kl = (target * (target.clamp(min=1e-12).log() - log_student)).sum(1, keepdim=True)
    return (kl * mask).sum() / mask.sum().clamp(min=1)


def view_tokens(features: torch.Tensor, grid: tuple[int, int] = RELATION_GRID) -> torch.Tensor:
    """features (V, C, H, W) -> (V, cells, C) unit-length tokens of a grid of average-pooled cells."""
    pooled = F.adaptive_avg_pool2d(features.float(), grid).flatten(2).transpose(1, 2)
    return F.normalize(pooled, dim=2, eps=1e-8)


def relation_matrices(features: torch.Tensor, pairs: list[tuple[int, int]]) -> torch.Tensor:
    """features (V, C, H, W) of one scene's views, pairs of adjacent view indices ->
    (pairs, cells, cells) cosine similarities between the tokens of the two views."""
    tokens = view_tokens(features)
    return torch.stack([tokens[a] @ tokens[b].T for a, b in pairs])


def adjacent_pairs(neighbours: torch.Tensor) -> list[tuple[int, int]]:
    """neighbours (V, V) 0/1 adjacency of a scene's views -> the pairs (a, b), a < b."""
    views = neighbours.shape[0]
    return [(a, b) for a in range(views) for b in range(a + 1, views) if neighbours[a, b] > 0]


def view_relational_loss(
    student_features: torch.Tensor, teacher_features: torch.Tensor, neighbours: torch.Tensor
) -> torch.Tensor:
    """Smooth-L1 between the student's and the teacher's relation matrices of adjacent
    views. student_features (S, V, C, H, W) and teacher_features (S, V, C', H', W'):
    S scenes of V views each; neighbours (S, V, V) 0/1. Averaged over pairs and cells."""
    if student_features.shape[1] < 2:
        raise TrainError(
            "--view-relational needs scenes of 2 or more views: train on shards made with `simlidar generate --rig`"
        )
    losses = []
    for student, teacher, adjacency in zip(student_features, teacher_features, neighbours, strict=True):
        pairs = adjacent_pairs(adjacency)
        if not pairs:
            continue
        losses.append(
            F.smooth_l1_loss(relation_matrices(student, pairs), relation_matrices(teacher, pairs), beta=RELATION_BETA)
        )
    if not losses:
        raise TrainError("--view-relational: no scene in the batch has adjacent views (rig neighbours are empty)")
    return torch.stack(losses).mean()


def teacher_features(
    teacher: torch.Tensor, teacher_valid: torch.Tensor, centres: torch.Tensor, temperature: float
) -> torch.Tensor:
    """The teacher's side of the view relations: its soft bin probabilities on the
    student's (detached) centres, (B, N, H, W), zero where it has no value."""
    normalised, mask = normalise_teacher(teacher, teacher_valid)
    return teacher_bin_probabilities(normalised, centres, temperature) * mask

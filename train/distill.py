"""Distillation from a depth foundation model into a bin student.

Cross-interaction KD. The teacher's output is a relative disparity: its scale and
shift are unknown. One affine map per scene (all views of an instant together, or one
image where batches are not grouped in scenes) puts it in metric disparity: the
median and mean absolute deviation of the teacher are matched to those of the ground
truth's disparity, over the pixels where both have a value (MiDaS's alignment, exact
for a teacher that is right up to scale and shift). The ground truth is where the
student's centres are meaningful (they are learnt from it), so a perfect teacher's
target lands on the right centre at every depth, sky and pixels without ground truth
left out of the fit. Every teacher pixel then gets soft bin probabilities on the
student's centres, q_i = softmax_i(-|log teacher_depth - log c_i| / temperature): the
distance is relative (a temperature of 0.03 is about 3% of depth at every range), and
a per-pixel KL(q || p) pulls the student's bin probabilities p toward them. The centres
are detached: their metric values come from ground truth only, scale never flows from
the teacher, and the teacher's own scale never enters (the map is fitted per scene).

View-relational KD. For each pair of adjacent views, the points seen by both (LiDAR
points projected into the two views) give corresponding pixels. A relation is the
cosine similarity between the two views' features at corresponding pixels: the
student's decoder features, and the teacher's bin probabilities of the point's
distance from the LiDAR (camera z differs between rotated cameras; the distance does
not) on the scene's mean centres (one bin frame for the scene, so one 3D point's
teacher features are the same vector in every view). The student's relations are matched to the teacher's with a
robust (smooth L1) loss: identical content in two views gives relations of 1 on both
sides and a loss of 0; cosine similarity ignores a feature map's scale, and the two
sides may have different channel counts.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .errors import TrainError

# Fewer pixels with both a teacher value and ground truth in a scene than this: the
# teacher cannot be aligned there, the scene adds no KD.
MIN_ALIGNED_PIXELS = 8
# A teacher whose disparity spreads less than this (relative to its size) over the
# aligned pixels carries no structure: no KD for that scene.
MIN_RELATIVE_SPREAD = 1e-6
# Smooth-L1 transition of the relational loss (cosine similarities lie in [-1, 1]).
RELATION_BETA = 0.1


def check_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise TrainError(f"--temperature must be positive (got {temperature})")


def teacher_disparity(teacher: torch.Tensor, teacher_range: torch.Tensor, views: int = 1) -> torch.Tensor:
    """teacher (B, 1, H, W) in 0..1 as teacher.png stores it (min-max per image),
    teacher_range (B, 2) the (min, max) of the teacher's own disparity its json records;
    the B images are scenes of `views` consecutive views -> (B, 1, H, W) the teacher's
    disparity on one scale per scene (from the first view's min, in units of the scene's
    widest range, so that float32 keeps its precision whatever the teacher's scale and
    shift; a scene of constant teachers stays finite)."""
    if teacher_range.shape != (teacher.shape[0], 2):
        raise TrainError(f"teacher_range must be (B, 2), got {tuple(teacher_range.shape)}")
    ranges = teacher_range.double().view(-1, views, 2)
    spans = ranges[..., 1] - ranges[..., 0]
    reference_span = spans.amax(1, keepdim=True)
    reference_span = torch.where(reference_span > 0, reference_span, torch.ones_like(reference_span))
    offset = ((ranges[..., 0] - ranges[:, :1, 0]) / reference_span).float().view(-1, 1, 1, 1)
    scale = (spans / reference_span).float().view(-1, 1, 1, 1)
    return offset + teacher.float() * scale


def _median_and_deviation(values: torch.Tensor, present: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """values, present (G, P) -> per row the median and mean absolute deviation (G, 1)
    of the present values (NaN where none is)."""
    with_nan = torch.where(present, values, torch.full_like(values, float("nan")))
    median = with_nan.nanmedian(1, keepdim=True).values
    deviation = (with_nan - median).abs().nanmean(1, keepdim=True)
    return median, deviation


def align_teacher(
    disparity: torch.Tensor, teacher_valid: torch.Tensor, target: torch.Tensor, views: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher in metric depth, one affine map of its disparity per scene.

    disparity (B, 1, H, W) the teacher's own disparity with teacher_valid (B, 1, H, W)
    0/1; target (B, 1, H, W) ground-truth depth in metres (0 = none); the B images are
    B / views scenes of `views` consecutive views. Returns (depth (B, 1, H, W) metres,
    positive everywhere; mask (B, 1, H, W) 0/1: teacher pixels of scenes that could be
    aligned). Pixels the map sends to a disparity <= 0 (sky, beyond the ground truth's
    reach) get a depth far past any centre."""
    batch = disparity.shape[0]
    if batch % views:
        raise TrainError(f"a batch of {batch} views is not made of scenes of {views} views")
    flat = disparity.float().reshape(batch // views, -1)
    truth = target.float().reshape(batch // views, -1)
    has_teacher = teacher_valid.reshape(batch // views, -1) > 0
    both = has_teacher & (truth > 0)
    truth_disparity = torch.where(truth > 0, 1.0 / truth.clamp(min=1e-6), torch.zeros_like(truth))
    teacher_median, teacher_deviation = _median_and_deviation(flat, both)
    truth_median, truth_deviation = _median_and_deviation(truth_disparity, both)
    usable = (both.sum(1, keepdim=True) >= MIN_ALIGNED_PIXELS) & (
        teacher_deviation > MIN_RELATIVE_SPREAD * teacher_median.abs().clamp(min=1e-12)
    )
    scale = torch.where(usable, truth_deviation / teacher_deviation, torch.zeros_like(teacher_deviation))
    aligned = truth_median.nan_to_num() + (flat - teacher_median.nan_to_num()) * scale
    depth = 1.0 / aligned.clamp(min=1e-6)
    mask = (has_teacher & usable).to(target.dtype)
    return depth.view_as(disparity), mask.view_as(teacher_valid)


def bin_probabilities(depth: torch.Tensor, centres: torch.Tensor, temperature: float) -> torch.Tensor:
    """depth (B, ...) metres > 0, centres (B, N) metres -> (B, N, ...) soft bin
    probabilities, softmax over bins of -|log depth - log centre| / temperature."""
    check_temperature(temperature)
    log_centres = centres.detach().float().log().view(*centres.shape, *([1] * (depth.dim() - 1)))
    return (-(depth.float().log().unsqueeze(1) - log_centres).abs() / temperature).softmax(1)


def cross_interaction_kd(
    logits: torch.Tensor, centres: torch.Tensor, teacher_depth: torch.Tensor, mask: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Mean over masked pixels of KL(q || p): q the aligned teacher's soft bin
    probabilities on the student's (detached) centres (B, N), p = softmax(logits
    (B, N, H, W)); teacher_depth and mask (B, 1, H, W) from align_teacher. 0 when no
    pixel is masked in."""
    target = bin_probabilities(teacher_depth[:, 0], centres, temperature)
    log_student = logits.float().log_softmax(1)
    kl = (target * (target.clamp(min=1e-12).log() - log_student)).sum(1, keepdim=True)
    return (kl * mask).sum() / mask.sum().clamp(min=1)


def sample_features(features: torch.Tensor, pixels: torch.Tensor, stride: int) -> torch.Tensor:
    """features (C, h, w) of an image at `stride` pixels per feature cell, pixels (M, 2)
    image (u, v) with pixel centres at integers -> (M, C) bilinear samples."""
    height, width = features.shape[-2] * stride, features.shape[-1] * stride
    grid = torch.stack([2 * (pixels[:, 0] + 0.5) / width - 1, 2 * (pixels[:, 1] + 0.5) / height - 1], 1)
    samples = F.grid_sample(features[None].float(), grid[None, None].float(), align_corners=False)
    return samples[0, :, 0].T


def pixel_values(maps: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
    """maps (C, H, W), pixels (M, 2) image (u, v) -> (M, C) values at the nearest pixels."""
    u = pixels[:, 0].round().long().clamp(0, maps.shape[-1] - 1)
    v = pixels[:, 1].round().long().clamp(0, maps.shape[-2] - 1)
    return maps[:, v, u].T


def cross_view_relations(features_a: torch.Tensor, features_b: torch.Tensor) -> torch.Tensor:
    """(M, C) features of M points in one view and (M, C) in another -> (M,) cosine similarities."""
    return F.cosine_similarity(features_a.float(), features_b.float(), dim=1, eps=1e-8)


def distance_from_lidar(depth: torch.Tensor, rays: torch.Tensor) -> torch.Tensor:
    """depth (M,) camera z in metres along rays (M, 6) (camera centre, ray with z = 1, in
    the LiDAR frame) -> (M,) the point's distance from the LiDAR: one number for one
    point, whichever camera sees it."""
    return (rays[:, :3] + depth[:, None] * rays[:, 3:]).norm(dim=1).clamp(min=1e-3)


def teacher_relations(
    teacher_depth: torch.Tensor,
    mask: torch.Tensor,
    scene_centres: torch.Tensor,
    matches: torch.Tensor,
    rays: torch.Tensor,
    temperature: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One pair of views: teacher_depth and mask (2, 1, H, W) of views a and b,
    scene_centres (N,) metres, matches (M, 4) corresponding pixels (u_a, v_a, u_b, v_b),
    rays (M, 2, 6) their rays (distance_from_lidar) -> (relations (M,), usable (M,) bool
    where both views have a teacher value). The teacher's features of a point are its bin
    probabilities, in both views on the scene's centres and of its distance from the LiDAR."""
    values_a = pixel_values(torch.cat([teacher_depth[0], mask[0]]), matches[:, :2])
    values_b = pixel_values(torch.cat([teacher_depth[1], mask[1]]), matches[:, 2:])
    centres = scene_centres[None].expand(len(matches), -1)
    features = [
        bin_probabilities(distance_from_lidar(values[:, 0], rays[:, side]), centres, temperature)
        for side, values in enumerate((values_a, values_b))
    ]
    return cross_view_relations(*features), (values_a[:, 1] > 0) & (values_b[:, 1] > 0)


def view_relational_loss(
    student_features: torch.Tensor,
    teacher_depth: torch.Tensor,
    teacher_mask: torch.Tensor,
    centres: torch.Tensor,
    matches: torch.Tensor,
    match_rays: torch.Tensor,
    match_valid: torch.Tensor,
    temperature: float,
) -> torch.Tensor:
    """Smooth-L1 between the student's and the teacher's cross-view relations at
    corresponding pixels of adjacent views, averaged over the usable matches.

    student_features (S, V, C, h, w); teacher_depth and teacher_mask (S, V, 1, H, W)
    from align_teacher; centres (S, V, N) metres (detached here); matches (S, V, V, M, 4)
    pixels (u_a, v_a, u_b, v_b) of view a's point and view b's, match_rays
    (S, V, V, M, 2, 6) their rays (distance_from_lidar), match_valid (S, V, V, M) 0/1.
    0 when no pair of views shares a usable point."""
    if student_features.shape[1] < 2:
        raise TrainError(
            "--view-relational needs scenes of 2 or more views: train on shards made with `simlidar generate --rig`"
        )
    stride = max(1, round(teacher_depth.shape[-1] / student_features.shape[-1]))
    losses, weights = [], []
    for scene in range(student_features.shape[0]):
        scene_centres = centres[scene].detach().float().mean(0)
        for a, b in (match_valid[scene].flatten(2).amax(2) > 0).nonzero().tolist():
            pairs = matches[scene, a, b]
            teacher, usable = teacher_relations(
                teacher_depth[scene, [a, b]],
                teacher_mask[scene, [a, b]],
                scene_centres,
                pairs,
                match_rays[scene, a, b],
                temperature,
            )
            usable &= match_valid[scene, a, b] > 0
            if not usable.any():
                continue
            student = cross_view_relations(
                sample_features(student_features[scene, a], pairs[usable, :2], stride),
                sample_features(student_features[scene, b], pairs[usable, 2:], stride),
            )
            losses.append(F.smooth_l1_loss(student, teacher[usable], beta=RELATION_BETA, reduction="sum"))
            weights.append(int(usable.sum()))
    if not losses:
        return student_features.new_zeros(()).float()
    return torch.stack(losses).sum() / sum(weights)

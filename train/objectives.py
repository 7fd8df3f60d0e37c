"""The loss each run trains with, by stage and objective.

pretrain: L1 (or L2) on the dense target, from the sparse input, multi-scale.
finetune: the same on the real (semi-dense) ground truth
          + ssi_weight * SSI(prediction, teacher depth) where the ground truth is
          missing and the teacher has a value, in metric depth: the teacher's relative
          disparity is mapped to depth by a per-image fit to the ground truth, and
          SSI's residual is in metres (losses.py), so a pixel weighs like a
          supervised one at every depth.
--objective bins-kd (a light student with a depth-bin head, see student.py):
          L1 (or L2) on the dense target + chamfer_weight * chamfer(centres, target)
          + kd_weight * KL(teacher bin probabilities || student's) (distill.py)
          [+ relational_weight * view relations of adjacent views, --view-relational].
"""

from __future__ import annotations

import torch

from .bins import chamfer_loss
from .config import TrainConfig
from .distill import align_teacher, cross_interaction_kd, teacher_disparity, view_relational_loss
from .losses import SSILoss, masked_l1, masked_l2, multiscale, teacher_depth

LOSSES = {"l1": masked_l1, "l2": masked_l2}
# The loss parts each objective logs (log.csv columns).
LOSS_PARTS = {"completion": ("supervised", "ssi"), "bins-kd": ("supervised", "chamfer", "kd", "relational")}


def compute_loss(config: TrainConfig, outputs, batch: dict) -> tuple[torch.Tensor, dict]:
    """The stage's (or objective's) loss and its parts (floats, for the log)."""
    if config.objective == "bins-kd":
        return bins_kd_loss(config, outputs, batch)
    target = batch["dense"]
    mask = (target > 0).to(target.dtype)
    supervised = multiscale(LOSSES[config.loss], outputs, target, mask)
    if config.stage == "pretrain" or config.ssi_weight == 0:
        return supervised, {"supervised": supervised.item(), "ssi": 0.0}
    ssi = finetune_ssi(config, outputs[0], batch)
    return supervised + config.ssi_weight * ssi, {"supervised": supervised.item(), "ssi": ssi.item()}


def finetune_ssi(config: TrainConfig, prediction_m: torch.Tensor, batch: dict) -> torch.Tensor:
    """SSI between the predicted depth and the teacher's, on pixels without ground truth."""
    target = batch["dense"]
    depth, valid = teacher_depth(batch["teacher"], batch["teacher_valid"], target)
    ssi_mask = valid * (target <= 0).to(target.dtype)
    return SSILoss(config.trim, config.gradient_weight, units="prediction")(prediction_m, depth, ssi_mask)


def bins_kd_loss(config: TrainConfig, outputs: dict, batch: dict) -> tuple[torch.Tensor, dict]:
    """A bin student's loss. supervised and chamfer see the ground-truth pixels (the
    dense member: real LiDAR or annotations on real data, the teacher's depth on
    generated data); kd sees every teacher pixel of a scene whose teacher could be
    aligned to the ground truth (align_teacher); relational sees the LiDAR points that
    two adjacent views share (batch["matches"]). Scene batches are S scenes of V views
    (batch["neighbours"] (S, V, V)); the teacher is aligned once per scene."""
    target = batch["dense"]
    mask = (target > 0).to(target.dtype)
    centres, logits = outputs["centres"], outputs["logits"]
    views = batch["neighbours"].shape[1] if config.view_relational else 1
    disparity = teacher_disparity(batch["teacher"], batch["teacher_range"], views)
    teacher_depth, teacher_mask = align_teacher(disparity, batch["teacher_valid"], target, views)
    parts = {
        "supervised": LOSSES[config.loss](outputs["depth"][0], target, mask),
        "chamfer": chamfer_loss(centres, target, mask),
        "kd": cross_interaction_kd(logits, centres, teacher_depth, teacher_mask, config.temperature),
        "relational": target.new_zeros(()),
    }
    if config.view_relational:
        scenes = batch["neighbours"].shape[:2]
        parts["relational"] = view_relational_loss(
            outputs["features"].unflatten(0, scenes),
            teacher_depth.unflatten(0, scenes),
            teacher_mask.unflatten(0, scenes),
            centres.unflatten(0, scenes),
            batch["matches"],
            batch["match_rays"],
            batch["match_valid"],
            config.temperature,
        )
    loss = (
        parts["supervised"]
        + config.chamfer_weight * parts["chamfer"]
        + config.kd_weight * parts["kd"]
        + config.relational_weight * parts["relational"]
    )
    return loss, {name: part.item() for name, part in parts.items()}


def as_float32(outputs):
    """Depth maps in float32 for the loss (autocast may have made them half)."""
    if isinstance(outputs, dict):
        return {**outputs, "depth": [o.float() for o in outputs["depth"]]}
    return [o.float() for o in outputs]

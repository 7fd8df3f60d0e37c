"""Tiny randomly initialised transformers depth models, saved the way the Hub cache
holds them, so tests load them through the real code path offline."""

from pathlib import Path

import torch
from transformers import (
    BeitConfig,
    DepthAnythingConfig,
    DepthAnythingForDepthEstimation,
    Dinov2Config,
    DPTConfig,
    DPTForDepthEstimation,
    DPTImageProcessorPil,
    ViTConfig,
    ViTModel,
    ZoeDepthConfig,
    ZoeDepthForDepthEstimation,
    ZoeDepthImageProcessorPil,
)

COMMIT = "0123456789abcdef0123456789abcdef01234567"
# The size of every tiny backbone: 4 layers, 32 wide, 2 heads.
TINY_TRANSFORMER = {"hidden_size": 32, "num_hidden_layers": 4, "num_attention_heads": 2, "intermediate_size": 64}


def tiny_depth_anything(depth_estimation_type: str = "relative"):
    """A 4-layer, 32-wide Depth Anything (DINOv2 backbone, patch 14) and its processor:
    keep the aspect ratio, short side near 56 px, multiple of 14 (the real one: 518)."""
    backbone = Dinov2Config(
        **TINY_TRANSFORMER,
        patch_size=14,
        image_size=56,
        out_features=["stage1", "stage2", "stage3", "stage4"],
        reshape_hidden_states=False,
    )
    config = DepthAnythingConfig(
        backbone_config=backbone,
        reassemble_hidden_size=32,
        neck_hidden_sizes=[8, 16, 32, 32],
        fusion_hidden_size=16,
        head_hidden_size=8,
        patch_size=14,
        depth_estimation_type=depth_estimation_type,
        max_depth=20,
    )
    torch.manual_seed(0)
    model = DepthAnythingForDepthEstimation(config).eval()
    processor = DPTImageProcessorPil(
        size={"height": 56, "width": 56}, keep_aspect_ratio=True, ensure_multiple_of=14, resample=3
    )
    return model, processor


def tiny_dpt():
    """A 4-layer ViT DPT with a fixed 64 x 64 input (like Intel/dpt-large's 384 x 384)."""
    config = DPTConfig(
        **TINY_TRANSFORMER,
        image_size=64,
        patch_size=16,
        backbone_out_indices=[0, 1, 2, 3],
        neck_hidden_sizes=[8, 16, 32, 32],
        fusion_hidden_size=16,
        head_in_index=-1,
    )
    torch.manual_seed(1)
    model = DPTForDepthEstimation(config).eval()
    processor = DPTImageProcessorPil(size={"height": 64, "width": 64}, keep_aspect_ratio=False)
    return model, processor


def tiny_zoedepth():
    """A ZoeDepth with a 4-layer, 32-wide BEiT backbone and one metric bin head."""
    backbone = BeitConfig(
        **TINY_TRANSFORMER,
        image_size=64,
        patch_size=16,
        out_features=["stage1", "stage2", "stage3", "stage4"],
        reshape_hidden_states=False,
        use_relative_position_bias=True,
    )
    config = ZoeDepthConfig(
        backbone_config=backbone,
        neck_hidden_sizes=[8, 16, 32, 32],
        fusion_hidden_size=16,
        bottleneck_features=16,
        num_relative_features=8,
        bin_embedding_dim=8,
        num_attractors=[4, 2, 2, 1],
        bin_configurations=[{"n_bins": 8, "min_depth": 0.1, "max_depth": 10.0, "name": "nyu"}],
    )
    torch.manual_seed(2)
    model = ZoeDepthForDepthEstimation(config).eval()
    processor = ZoeDepthImageProcessorPil(
        size={"height": 64, "width": 64}, keep_aspect_ratio=True, ensure_multiple_of=16
    )
    return model, processor


def tiny_vit():
    """Not a depth model."""
    torch.manual_seed(3)
    return ViTModel(ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64))


def save_to_hub_cache(cache: Path, repo_id: str, model, processor=None, commit: str = COMMIT) -> Path:
    """Lay `model` out as huggingface_hub's cache does after a download of `repo_id`
    (snapshots/COMMIT plus refs/main); returns the snapshot folder."""
    storage = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = storage / "snapshots" / commit
    model.save_pretrained(snapshot)
    if processor is not None:
        processor.save_pretrained(snapshot)
    (storage / "refs").mkdir(parents=True, exist_ok=True)
    (storage / "refs" / "main").write_text(commit)
    return snapshot

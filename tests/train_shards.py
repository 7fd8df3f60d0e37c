"""Small shards of known content for the training tests."""

import io
import json

import numpy as np
from PIL import Image
from simlidar.pipeline import schema
from simlidar.pipeline.output.store import LocalStore
from simlidar.pipeline.writer import ShardWriter


def ramp_sample(seed: int, size=(24, 40), teacher: bool = True) -> dict:
    """A sample whose maps all encode the column: dense = 2 + column / 4 m (exact in
    1/256 m steps), sparse = dense on every 3rd row, teacher = normalised 1 / dense; its
    green channel is the seed (`sample_id`)."""
    height, width = size
    dense = np.tile(2.0 + np.arange(width, dtype=np.float32) / 4, (height, 1))
    dense[0, 0] = 200.5  # beyond 8 bits: must survive decoding
    sparse = np.where((np.arange(height) % 3 == seed % 3)[:, None], dense, 0).astype(np.float32)
    rgb = np.zeros((height, width, 3), np.uint8)
    rgb[..., 0] = (np.arange(width) * 5)[None, :]
    rgb[..., 1] = seed
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")  # lossless, stored as the image member
    members = {
        schema.IMAGE: buffer.getvalue(),
        schema.SPARSE: schema.encode_depth_png(sparse),
        schema.DENSE: schema.encode_depth_png(dense),
        schema.META: json.dumps({"seed": seed}).encode(),
    }
    if teacher:
        members[schema.TEACHER], _, _ = schema.encode_relative_png(1.0 / dense, dense > 0)
    return members


def write_ramp_shards(folder, shards=2, per_shard=4, drop=None, teacher=True, damaged=None):
    """shards x per_shard ramp samples, keyed s{shard}-{index}; drop: a member left out of the
    first sample; damaged: {key: {member: bytes}} members replaced in those samples."""
    folder.mkdir(parents=True, exist_ok=True)
    for shard in range(shards):
        with ShardWriter(LocalStore(folder), f"shard-{shard:06d}.tar") as writer:
            for index in range(per_shard):
                members = ramp_sample(shard * per_shard + index, teacher=teacher)
                if drop and shard == 0 and index == 0:
                    members.pop(drop)
                members.update((damaged or {}).get(f"s{shard}-{index}", {}))
                writer.write(f"s{shard}-{index}", members)
    return folder


def eight_bit_png(size=(24, 40)) -> bytes:
    """A depth map saved as 8 bits: each value rounded to whole metres, 255 m at most."""
    buffer = io.BytesIO()
    Image.fromarray(np.full(size, 5, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def truncated_jpeg(size=(24, 40)) -> bytes:
    """A JPEG cut in the middle of its scan (a download that stopped)."""
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (*size, 3), dtype=np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()[: len(buffer.getvalue()) // 2]


def depth_of_another_size(size=(12, 20), depth_m=3.0) -> bytes:
    """A depth PNG of `size` (H, W) holding `depth_m` everywhere (0: no depth at all)."""
    return schema.encode_depth_png(np.full(size, depth_m, np.float32))


def sample_ids(batch) -> list[int]:
    """The seed of each sample of a batch of ramp samples (its green channel)."""
    return [round(value) for value in (batch["rgb"][:, 1, 0, 0] * 255).tolist()]

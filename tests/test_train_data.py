"""The shard loader: 16-bit decoding, identical crop and flip, determinism, bad input."""

import io
from itertools import islice

import numpy as np
import pytest
import torch
from PIL import Image
from simlidar.pipeline import schema
from simlidar.train import data, shards
from simlidar.train.errors import TrainError
from torch.utils.data import default_collate

from .train_shards import sample_ids, write_ramp_shards


def test_decoding_keeps_16_bit_depth_and_the_teacher(tmp_path):
    urls = shards.list_shards(write_ramp_shards(tmp_path / "shards"))
    sample = next(iter(data.eval_stream(urls)))
    assert sample["key"] == "s0-0"
    dense = sample["dense"][0].numpy()
    assert dense[0, 0] == 200.5 and dense[5, 7] == 2.0 + 7 / 4
    teacher = sample["teacher"][0].numpy()
    # min-max normalised 1 / dense: nearest 2 m -> 1, farthest 200.5 m (pixel 0, 0) -> 0
    low, high = 1 / 200.5, 1 / 2
    assert teacher[3, 0] == pytest.approx(1.0) and teacher[0, 0] == 0.0
    assert teacher[3, 10] == pytest.approx((1 / 4.5 - low) / (high - low), abs=2e-5)
    assert sample["teacher_valid"].min() == 1


def loader(folder, **options):
    return data.train_loader(shards.index_shards(shards.list_shards(folder)), **options)


def test_crop_and_flip_move_every_map_together(tmp_path):
    batch = next(
        iter(loader(write_ramp_shards(tmp_path / "shards"), batch_size=8, crop_hw=(16, 24), seed=3, workers=0))
    )
    assert batch["rgb"].shape == (8, 3, 16, 24) and batch["dense"].shape == (8, 1, 16, 24)
    dense, sparse, red = batch["dense"][:, 0], batch["sparse"][:, 0], batch["rgb"][:, 0]
    column = (dense - 2.0) * 4  # the source column of each pixel, from the depth
    assert torch.allclose(red * 255, column * 5, atol=0.5)  # the image moved with the depth
    assert torch.equal(sparse[sparse > 0], dense[sparse > 0])
    flipped = column[:, 5, 0] > column[:, 5, -1]
    assert flipped.any() and (~flipped).any()  # some flipped, some not (seeded)


def test_small_images_are_padded_with_no_depth(tmp_path):
    shards = write_ramp_shards(tmp_path / "shards", shards=1, per_shard=1)
    batch = next(iter(loader(shards, batch_size=1, crop_hw=(32, 40), seed=0, workers=0)))
    assert batch["dense"].shape == (1, 1, 32, 40) and (batch["dense"][0, 0, 24:] == 0).all()


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("done", [1, 3, 4])
def test_the_stream_is_a_function_of_the_seed_and_resumes_at_any_step(tmp_path, workers, done):
    # A resumed loader starts at worker 0; worker w must play the role of worker
    # (w + done) % workers, or batches done, done + 1 swap (the issue: stop at 3, workers 2).
    index = shards.index_shards(shards.list_shards(write_ramp_shards(tmp_path / "shards", shards=3, per_shard=4)))

    def batches(seed, batches_done, count):
        options = dict(batch_size=3, crop_hw=(8, 8), seed=seed, workers=workers, shuffle_buffer=5)
        stream = data.train_loader(index, batches_done=batches_done, **options)
        return [batch["dense"] + 1000 * batch["sparse"] for batch, _ in zip(stream, range(count), strict=False)]

    straight = batches(0, 0, 7)
    assert all(torch.equal(a, b) for a, b in zip(straight, batches(0, 0, 7), strict=True))
    assert all(torch.equal(a, b) for a, b in zip(straight[done:], batches(0, done, 7 - done), strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(straight, batches(1, 0, 7), strict=True))


def test_resume_skips_whole_shards_without_opening_them(tmp_path, monkeypatch):
    # 6 shards of 4 samples, one worker, no shuffle: after 5 batches of 2 the worker has used
    # 10 samples, so the first two shards it read are never opened again and the third is
    # read from its third sample on.
    index = shards.index_shards(shards.list_shards(write_ramp_shards(tmp_path / "shards", shards=6, per_shard=4)))
    opened = []
    real_read = data.read_units
    monkeypatch.setattr(data, "read_units", lambda index, shard: opened.append(shard) or real_read(index, shard))
    options = dict(batch_size=2, crop_hw=(8, 8), seed=0, shuffle_buffer=1)
    straight = list(islice(iter(data.TrainStream(index, **options)), 14))
    order = list(opened)
    opened.clear()
    resumed = list(islice(iter(data.TrainStream(index, batches_done=5, **options)), 4))
    assert sample_ids(default_collate(straight[10:])) == sample_ids(default_collate(resumed))
    assert opened == order[2:4] and len(set(order[:4])) == 4


def test_ranks_read_disjoint_samples(tmp_path):
    index = shards.index_shards(shards.list_shards(write_ramp_shards(tmp_path / "shards", shards=4, per_shard=2)))
    options = dict(batch_size=1, crop_hw=(8, 8), seed=0, shuffle_buffer=1, world_size=2)
    seen = [
        [sample_ids(batch)[0] for batch in islice(data.train_loader(index, workers=1, rank=rank, **options), 4)]
        for rank in (0, 1)
    ]
    # Each rank reads 2 of the 4 shards per epoch: 4 distinct samples, none of the other rank's.
    assert len(set(seen[0])) == len(set(seen[1])) == 4 and not set(seen[0]) & set(seen[1])


def test_bad_shard_folders_are_one_line_errors_and_incomplete_samples_are_recorded(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(TrainError, match=r"no shards \(\*\.tar\) in .*empty: point --val-shards at"):
        shards.list_shards(tmp_path / "empty", "--val-shards")
    index = shards.index_shards(shards.list_shards(write_ramp_shards(tmp_path / "broken", drop="sparse.png")))
    assert index.bad == ({"shard": "shard-000000.tar", "key": "s0-0", "reason": "no sparse.png member"},)
    assert index.samples == 8 and index.unit_count == 7 and ("s0-0",) not in index.units[0]
    index = shards.index_shards(shards.list_shards(write_ramp_shards(tmp_path / "no-image", drop="jpg")))
    assert index.bad[0]["reason"] == "no jpg or png member"
    (tmp_path / "cut.tar").write_bytes((tmp_path / "broken" / "shard-000000.tar").read_bytes()[:700])
    with pytest.raises(TrainError, match=r"cut\.tar is not a readable tar shard .*; regenerate it") as error:
        shards.index_shards([str(tmp_path / "cut.tar")])
    assert "\n" not in str(error.value)


def test_samples_without_a_teacher_have_an_empty_teacher_mask(tmp_path):
    urls = shards.list_shards(write_ramp_shards(tmp_path / "shards", teacher=False))
    sample = next(iter(data.eval_stream(urls)))
    assert sample["teacher_valid"].sum() == 0 and np.all(sample["teacher"].numpy() == 0)


def test_a_generated_sample_without_teacher_png_takes_its_dense_teacher_depth():
    dense = np.tile(np.array([2.0, 4.0, 8.0, 0.0], np.float32), (3, 1))
    rgb = np.zeros((3, 4, 3), np.uint8)
    sample = {
        "__key__": "photo-v0",
        schema.IMAGE: jpeg_bytes(rgb),
        schema.SPARSE: schema.encode_depth_png(np.zeros_like(dense)),
        schema.DENSE: schema.encode_depth_png(dense),
        schema.META: b'{"teacher": {"id": "depth-anything-v2-small", "output": "disparity"}}',
    }
    maps = data.decode_sample(sample)
    # 1/2, 1/4, 1/8 m^-1 normalised to 0..1 on the valid pixels; no depth, no teacher.
    assert np.allclose(maps["teacher"][0], [1.0, 1 / 3, 0.0, 0.0])
    assert maps["teacher_valid"][0].tolist() == [True, True, True, False]


def jpeg_bytes(rgb):
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG")
    return buffer.getvalue()

"""An output read with stock tools: webdataset with simlidar's depth handler gives metres to the
millimetre, its stock decoders would not, and `datasets.load_dataset(OUT)` reads the shards."""

import io
import tarfile

import numpy as np
import pytest
import webdataset as wds
from PIL import Image
from simlidar.pipeline import schema

from .helpers import generate, tar_members


@pytest.fixture
def out(cli, photos, tmp_path):
    folder = tmp_path / "out"
    assert generate(cli, photos, folder)[0] == 0
    return folder


@pytest.fixture
def rig_out(cli, photos, tmp_path):
    """Views of a virtual rig: samples with teacher.png."""
    folder = tmp_path / "rig"
    assert generate(cli, photos, folder, "--rig", "virtual2")[0] == 0
    return folder


def _shard(out) -> wds.WebDataset:
    return wds.WebDataset(str(out / "shard-000000.tar"), shardshuffle=False)


def _written(out) -> dict[str, bytes]:
    return tar_members(out / "shard-000000.tar")


def test_the_webdataset_handler_gives_the_written_metres_to_the_millimetre(out):
    members = _written(out)
    samples = list(_shard(out).decode(schema.webdataset_depth, "rgb"))
    assert len(samples) == sum(name.endswith(".json") for name in members) == 3
    for sample in samples:
        for member in (schema.SPARSE, schema.DENSE):
            raw = np.asarray(Image.open(io.BytesIO(members[f"{sample['__key__']}.{member}"])), dtype=np.int64)
            depth_m = sample[member]
            assert depth_m.dtype == np.float32 and depth_m.shape == raw.shape
            # No depth stays 0; every other pixel is the file's value / 256 to well under a millimetre.
            assert np.array_equal(depth_m == 0, raw == 0)
            assert np.abs(depth_m.astype(np.float64) * 256 - raw).max() < 256e-3 * 1e-3
        # The photos' wall is 12 m away: the dense map says 12.000 m there, not 8-bit steps.
        assert np.isclose(np.median(sample[schema.DENSE][sample[schema.DENSE] > 0]), 12.0, atol=1e-3)
        assert sample["jpg"].dtype == np.float32 and sample["jpg"].shape[2] == 3


def test_teacher_png_is_normalised_disparity_with_nan_for_none_and_metres_when_metric(rig_out):
    sample = next(iter(_shard(rig_out).decode(schema.webdataset_depth)))
    disparity, dense_m = sample[schema.TEACHER], sample[schema.DENSE]
    assert np.array_equal(np.isnan(disparity), dense_m == 0)
    assert np.nanmin(disparity) == 0.0 and np.nanmax(disparity) == 1.0
    teacher_m = schema.teacher_depth_m(disparity, sample["json"]["teacher_relative"])
    assert np.array_equal(teacher_m == 0, dense_m == 0)
    # Both from one depth: dense.png rounded to 1/256 m (half a step: 1.95 mm), teacher.png's
    # 16 bits of disparity over 4..12 m (under a millimetre at the far wall).
    assert np.abs(teacher_m - dense_m).max() < 1 / 512 + 1e-3
    with pytest.raises(ValueError, match="relative disparity"):
        schema.teacher_depth_m(disparity, {**sample["json"]["teacher_relative"], "kind": "relative"})


def test_the_stock_decoders_the_card_warns_about_do_lose_the_metres(out):
    """What the README's warning is about: "pil", "l" and "torchrgb" all squeeze the depth."""
    key_member = next(name for name in _written(out) if name.endswith(".dense.png"))
    for spec in ("l", "torchrgb", "pil"):
        sample = next(iter(_shard(out).decode(spec)))
        decoded = np.asarray(sample[schema.DENSE], dtype=np.float64)
        assert decoded.max() <= 255 and not np.isclose(decoded.max() / 256, 12.0), (spec, key_member)


def test_load_dataset_reads_an_output_folder_as_16_bit_depth(out, tmp_path):
    datasets = pytest.importorskip("datasets")
    card = (out / "README.md").read_text()
    assert 'path: "shard-*.tar"' in card and '.decode("pil")' in card and "webdataset_depth" in card
    dataset = datasets.load_dataset(str(out), split="train", cache_dir=str(tmp_path / "datasets-cache"))
    members = _written(out)
    assert sorted(dataset["__key__"]) == sorted(name.split(".")[0] for name in members if name.endswith(".json"))
    for row in dataset:
        assert row["dense.png"].mode.startswith("I")
        decoded = schema.decode_depth_png(members[f"{row['__key__']}.dense.png"])
        assert np.array_equal(np.asarray(row["dense.png"], dtype=np.float32) / 256.0, decoded)


def test_a_readme_of_the_users_own_is_kept_and_ours_is_renewed(cli, photos, tmp_path):
    folder = tmp_path / "out"
    assert generate(cli, photos, folder)[0] == 0
    ours = (folder / "README.md").read_text()
    assert "3 samples in 1 WebDataset" in ours
    (folder / "README.md").write_text("my notes\n")
    assert generate(cli, photos, folder)[0] == 0
    assert (folder / "README.md").read_text() == "my notes\n"
    (folder / "README.md").unlink()
    assert generate(cli, photos, folder, "--overwrite", "--limit", "2")[0] == 0
    assert "2 samples in 1 WebDataset" in (folder / "README.md").read_text()
    with tarfile.open(folder / "shard-000000.tar") as tar:
        assert not any(member.name.endswith("README.md") for member in tar.getmembers())

"""Scene batches for view-relational training: groups bounded by the recorded view count,
within one pass over one shard; a scene split across shards is refused."""

import json

import numpy as np
import pytest
from simlidar.pipeline.output.store import LocalStore
from simlidar.pipeline.writer import ShardWriter
from simlidar.train import data, shards
from simlidar.train.errors import TrainError

from .helpers import write_photo
from .test_students_e2e import K, photo_depth
from .train_shards import ramp_sample


@pytest.fixture
def two_photo_shards(cli, tmp_path):
    """Two photos, --rig virtual (3 views each), one photo per shard."""
    for seed in range(2):
        write_photo(tmp_path / "photos", f"p{seed}.jpg", photo_depth(seed), K=K, seed=seed)
    options = ("--teacher", "sidecar", "--quiet", "--workers", "1", "--rig", "virtual", "--shard-size", "1")
    code, _, err = cli("generate", "--images", tmp_path / "photos", "--out", tmp_path / "rig", *options)
    assert code == 0, err
    return shards.list_shards(tmp_path / "rig")


def test_scenes_hold_exactly_their_views_on_one_or_two_shards(two_photo_shards):
    index = shards.index_shards(two_photo_shards, scenes=True)
    assert index.views == (3,) and [len(units) for units in index.units] == [1, 1]
    assert [len(unit) for units in index.units for unit in units] == [3, 3]
    # Workers reading the same shard twice in a row once merged scenes into groups of 15, 6
    # and 9 views; one photo's shard repeated forever grew one group without end.
    for urls in (two_photo_shards, two_photo_shards[:1]):
        loader = data.train_loader(shards.index_shards(urls, scenes=True), 2, (32, 32), 0, workers=2, shuffle_buffer=2)
        for batch, _ in zip(loader, range(4), strict=False):
            assert batch["rgb"].shape == (2, 3, 3, 32, 32) and batch["neighbours"].shape == (2, 3, 3)
            # virtual views 0-1 and 1-2 overlap, 0 and 2 do not
            assert batch["neighbours"][0].tolist() == [[0, 1, 0], [1, 0, 1], [0, 1, 0]]


def rig_members(scene, view, views=3):
    members = ramp_sample(view)
    rig = {"view": view, "views": views, "neighbours": [n for n in (view - 1, view + 1) if 0 <= n < views]}
    members["json"] = json.dumps({"scene": scene, "rig": rig}).encode()
    return members


def write_scenes(path, views_of_scenes):
    with ShardWriter(LocalStore(path.parent), path.name) as writer:
        for scene, views in views_of_scenes:
            for view in views:
                writer.write(f"{scene}-r{view}", rig_members(scene, view))


def test_a_scene_across_two_shards_is_refused_and_a_scene_missing_a_view_left_out(tmp_path):
    write_scenes(tmp_path / "a.tar", [("photo1", [0, 1, 2]), ("photo2", [0, 1])])
    write_scenes(tmp_path / "b.tar", [("photo2", [2]), ("photo3", [0, 1, 2])])
    with pytest.raises(TrainError, match="scene 'photo2' has views in .*a.tar and .*b.tar") as error:
        shards.index_shards([str(tmp_path / "a.tar"), str(tmp_path / "b.tar")], scenes=True)
    assert "\n" not in str(error.value)
    write_scenes(tmp_path / "c.tar", [("photo4", [0, 2]), ("photo5", [2, 1, 0])])
    index = shards.index_shards([str(tmp_path / "c.tar")], scenes=True)
    # photo4 misses view 1: left out; photo5's views come back in view order
    assert index.incomplete == 1 and index.units == ((("photo5-r0", "photo5-r1", "photo5-r2"),),)
    batch = next(iter(data.train_loader(index, 1, (8, 8), 0, workers=0, shuffle_buffer=1)))
    # each view's green channel is its view index (ramp_sample(view))
    assert np.array_equal((batch["rgb"][0, :, 1, 0, 0] * 255).round().numpy(), [0, 1, 2])

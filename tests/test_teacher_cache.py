"""The zarr teacher cache: hits skip the model, partial entries are recomputed, and a
second generate run with another sensor or seed makes no model call."""

import json
import tarfile
from pathlib import Path

import huggingface_hub.constants
import numpy as np
import pytest
from PIL import Image
from simlidar.pipeline import schema
from simlidar.pipeline.stages.teacher import CachedTeacher, TeacherCache, file_sha256
from simlidar.teachers import TeacherInput, load_teacher
from simlidar.teachers.hf import HFModel

from .tiny_models import COMMIT, save_to_hub_cache, tiny_depth_anything


@pytest.fixture
def teacher(tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    save_to_hub_cache(cache, "depth-anything/Depth-Anything-V2-Small-hf", *tiny_depth_anything())
    return load_teacher("depth-anything-v2-small", device="cpu")


@pytest.fixture
def forward_calls(monkeypatch):
    """Counts of images through HFModel.forward (the bare model)."""
    calls = []
    original = HFModel.forward

    def counting(self, pixel_values):
        calls.append(len(pixel_values))
        return original(self, pixel_values)

    monkeypatch.setattr(HFModel, "forward", counting)
    return calls


def photos(folder: Path, count: int = 2) -> list[TeacherInput]:
    folder.mkdir(parents=True, exist_ok=True)
    items = []
    for index in range(count):
        rgb = np.random.default_rng(index).integers(0, 256, (48, 64, 3), dtype=np.uint8)
        rgb[:24] = (120, 170, 230)  # a sky-ish top half
        path = folder / f"p{index}.png"
        Image.fromarray(rgb).save(path)
        items.append(TeacherInput(path, rgb))
    return items


def test_second_pass_reads_the_cache_and_calls_the_model_zero_times(teacher, forward_calls, tmp_path):
    batch = photos(tmp_path / "photos")
    cached = CachedTeacher(teacher, TeacherCache(tmp_path / "cache"))
    first = cached.predict(batch)
    assert sum(forward_calls) == 2 and (cached.hits, cached.misses) == (0, 2)
    second = CachedTeacher(teacher, TeacherCache(tmp_path / "cache")).predict(batch)
    assert sum(forward_calls) == 2
    for fresh, hit in zip(first, second, strict=True):
        assert np.array_equal(fresh.depth, hit.depth) and hit.depth.dtype == np.float32
        assert (hit.kind, hit.teacher, hit.revision) == ("disparity", "depth-anything-v2-small", COMMIT)
        assert hit.conversion == fresh.conversion
    # The entry is keyed by the file's bytes and the teacher: name, revision, --max-size, precision.
    entry = TeacherCache.entry_path(file_sha256(batch[0].path), teacher.cache_id(batch[0]))
    assert entry.startswith(f"depth-anything-v2-small_{COMMIT}_max1536_float32-") and entry.endswith(
        file_sha256(batch[0].path)
    )
    chunk = next((tmp_path / "cache" / entry).rglob("c/*/*"))
    assert chunk.stat().st_size < 48 * 64 * 4  # compressed


def test_a_partly_written_entry_is_recomputed(teacher, forward_calls, tmp_path):
    batch = photos(tmp_path / "photos", count=1)
    CachedTeacher(teacher, TeacherCache(tmp_path / "cache")).predict(batch)
    entry = tmp_path / "cache" / TeacherCache.entry_path(file_sha256(batch[0].path), teacher.cache_id(batch[0]))
    # A crash between the data and the attributes that mark the entry complete.
    metadata = json.loads((entry / "zarr.json").read_text())
    metadata["attributes"].pop("complete")
    (entry / "zarr.json").write_text(json.dumps(metadata))
    again = CachedTeacher(teacher, TeacherCache(tmp_path / "cache"))
    again.predict(batch)
    assert sum(forward_calls) == 2 and again.misses == 1
    assert json.loads((entry / "zarr.json").read_text())["attributes"]["complete"] is True
    assert CachedTeacher(teacher, TeacherCache(tmp_path / "cache")).predict(batch)[0].depth.shape == (48, 64)
    assert sum(forward_calls) == 2


def test_sidecar_photos_are_not_cached(tmp_path):
    batch = photos(tmp_path / "photos", count=1)
    (tmp_path / "photos" / "p0.depth.png").write_bytes(schema.encode_depth_png(np.full((48, 64), 3.0, np.float32)))
    cached = CachedTeacher(load_teacher("auto"), TeacherCache(tmp_path / "cache"))
    assert cached.predict(batch)[0].depth.max() == 3.0
    assert not (tmp_path / "cache").exists()


def dense_and_meta(out: Path) -> dict:
    with tarfile.open(out / "shard-000000.tar") as tar:
        members = {member.name: tar.extractfile(member).read() for member in tar.getmembers()}
    return {
        name.split(".")[0]: (
            schema.decode_depth_png(members[name]),
            json.loads(members[name.replace("dense.png", "json")]),
        )
        for name in members
        if name.endswith(".dense.png")
    }


def test_generate_with_another_sensor_or_seed_makes_no_model_call(cli, teacher, forward_calls, tmp_path):
    photos(tmp_path / "photos", count=2)
    cache = tmp_path / "shared-cache"

    def generate(out, *extra):
        args = ["generate", "--images", tmp_path / "photos", "--out", tmp_path / out, "--teacher"]
        code, _, err = cli(*args, "depth-anything-v2-small", "--cache", cache, "--workers", "1", "--quiet", *extra)
        assert code == 0, err
        return dense_and_meta(tmp_path / out)

    first = generate("hdl64")
    assert sum(forward_calls) == 2
    dense, meta = first["p0-v0"]
    teacher_record = meta["teacher"]
    assert teacher_record["id"] == "depth-anything-v2-small" and teacher_record["revision"] == COMMIT
    assert teacher_record["output"] == "disparity" and teacher_record["conversion"]["from"] == "disparity"
    conversion = teacher_record["conversion"]
    assert 2.0 <= conversion["near_m"] <= 5.0 and 40.0 <= conversion["far_m"] <= 80.0
    assert meta["intrinsics_source"].startswith("random fov ")
    # The random tiny model outputs many zeros (ReLU head): those are "sky", no return.
    assert np.mean(dense == 0) == pytest.approx(conversion["no_return_fraction"])
    valid = dense[dense > 0]
    assert valid.min() >= conversion["near_m"] - 1 / 256 and valid.max() <= conversion["far_m"] + 1 / 256

    other_sensor = generate("vlp16", "--sensor", "vlp16")
    other_seed = generate("seed7", "--seed", "7")
    assert sum(forward_calls) == 2  # both from the cache
    for key, (dense, meta) in first.items():
        assert np.array_equal(other_sensor[key][0], dense) and other_sensor[key][1]["K"] == meta["K"]
        assert other_seed[key][1]["teacher"]["conversion"]["near_m"] != meta["teacher"]["conversion"]["near_m"]

"""`simlidar inspect`: statistics that match the shards, previews, and damage found."""

import hashlib
import json

import numpy as np
from PIL import Image
from simlidar.pipeline import schema
from simlidar.pipeline.output.preview import BAR_BAND, GAP, TITLE_BAND
from simlidar.pipeline.output.store import LocalStore
from simlidar.pipeline.writer import ShardWriter

from .helpers import generate, tar_members


def test_statistics_match_the_samples_and_a_contact_sheet_is_drawn(cli, photos, tmp_path):
    out = tmp_path / "out"
    assert generate(cli, photos, out, "--views", "2")[0] == 0
    code, text, err = cli("inspect", "--shards", out)
    assert code == 0, err
    members = tar_members(out / "shard-000000.tar")
    sparse = [schema.decode_depth_png(data) for name, data in members.items() if name.endswith(".sparse.png")]
    points = [json.loads(data)["counts"]["points"] for name, data in members.items() if name.endswith(".json")]
    stats = json.loads((out / "previews" / "stats.json").read_text())
    assert stats["samples"] == 6 and stats["problems"] == 0 and stats["per_sensor"] == {"hdl64": 6}
    assert stats["points_per_sample"]["mean"] == np.mean(points)
    assert np.isclose(stats["sparse_density"]["mean"], np.mean([np.count_nonzero(s) / s.size for s in sparse]))
    assert sum(stats["sparse_depth_histogram"].values()) == sum(np.count_nonzero(s) for s in sparse)
    assert stats["sparse_depth_histogram"]["20-30 m"] == 0  # the scenes end at a wall 12 m away
    assert "6 samples in 1 shard" in text and "1 shards" not in text and "per sensor: hdl64 6" in text
    sheet = Image.open(out / "previews" / "contact_sheet.png")
    # Six 160x96 samples, two to a row: each row's six images and gaps fill 1800 px at 178 px high.
    row_height = round((1800 - 18) / (2 * 3 * 160 / 96))
    assert sheet.size == (1800, 3 * (row_height + TITLE_BAND + GAP) + BAR_BAND)


def test_damaged_shards_are_listed_with_what_is_wrong(cli, photos, tmp_path):
    out = tmp_path / "out"
    assert generate(cli, photos, out, "--shard-size", "1")[0] == 0
    manifest = json.loads((out / "manifest.json").read_text())

    (out / "shard-000000.tar").unlink()
    damaged = bytearray((out / "shard-000001.tar").read_bytes())
    damaged[2000] ^= 0xFF
    (out / "shard-000001.tar").write_bytes(bytes(damaged))
    members = tar_members(out / "shard-000002.tar")
    with ShardWriter(LocalStore(out), "shard-000002.tar") as writer:
        writer.write(
            "img2-v0", {name.split(".", 1)[1]: data for name, data in members.items() if ".sparse." not in name}
        )
    manifest["shards"][2]["sha256"] = hashlib.sha256((out / "shard-000002.tar").read_bytes()).hexdigest()
    (out / "manifest.json").write_text(json.dumps(manifest))

    code, _, err = cli("inspect", "--shards", out)
    assert code == 1
    problems = [line for line in err.splitlines() if line.startswith("problem:")]
    assert problems[0] == "problem: shard-000000.tar: missing"
    assert "shard-000001.tar: checksum differs from the manifest" in problems[1]
    assert problems[-1] == "problem: shard-000002.tar: img2-v0: missing sparse.png"
    assert (
        err.splitlines()[-1]
        == f"error: {len(problems)} problems in {out} (listed above); re-run `simlidar generate` on it"
    )


def test_a_folder_without_a_manifest_is_a_one_line_error(cli, tmp_path):
    code, _, err = cli("inspect", "--shards", tmp_path)
    assert code == 1 and err.count("\n") == 1 and "not a simlidar output" in err


def test_a_shard_that_is_not_a_tar_is_reported(cli, photos, tmp_path):
    out = tmp_path / "out"
    assert generate(cli, photos, out)[0] == 0
    (out / "shard-000000.tar").write_bytes(b"\0garbage" * 10)
    code, _, err = cli("inspect", "--shards", out)
    assert code == 1 and "checksum differs" in err and "shard-000000.tar: not a readable tar" in err

"""`simlidar publish`: what is staged loads with stock tools; names the Hub would refuse,
no token and no network are one-line errors that leave nothing half-written."""

import hashlib
import io
import json
import re
import tarfile

import numpy as np
import pytest
from huggingface_hub import DatasetCard, constants
from simlidar.pipeline import schema

from .helpers import generate, tar_members


@pytest.fixture
def out(cli, photos, tmp_path):
    folder = tmp_path / "out"
    assert generate(cli, photos, folder, "--save-points")[0] == 0
    return folder


def test_the_staged_dataset_loads_with_datasets_and_the_card_snippet(cli, out, tmp_path, capsys):
    code, text, err = cli(
        "publish", "--shards", out, "--repo", "someone/street-hdl64", "--license", "cc-by-4.0", "--dry-run"
    )
    assert code == 0, err
    staging = out / "hub"
    assert (staging / "data" / "train" / "shard-000000.tar").read_bytes() == (out / "shard-000000.tar").read_bytes()
    assert (staging / "previews" / "contact_sheet.png").is_file() and (staging / "manifest.json").is_file()
    assert not (out / "hub.tmp").exists()

    card = DatasetCard.load(staging / "README.md", repo_type="dataset")
    assert card.data.license == "cc-by-4.0" and card.data.task_categories == ["depth-estimation"]
    assert card.data.size_categories == ["n<1K"] and "hdl64" in card.data.tags
    assert card.data.configs == [
        {"config_name": "default", "data_files": [{"split": "train", "path": "data/train/*.tar"}]}
    ]
    assert "| samples | 3 from 3 photos (0 skipped), 1 shards |" in card.text and "@inproceedings" in card.text

    import datasets

    # An explicit cache: offline, `datasets` would otherwise reuse a build of another dataset
    # staged under the same folder name ("hub") in the user's cache.
    dataset = datasets.load_dataset(str(staging), split="train", cache_dir=str(tmp_path / "datasets-cache"))
    assert set(dataset.column_names) == {"__key__", "__url__", "jpg", "sparse.png", "dense.png", "json", "points.npy"}
    members = tar_members(out / "shard-000000.tar")
    for row in dataset:
        key = row["__key__"]
        written_sparse = schema.decode_depth_png(members[f"{key}.sparse.png"])
        assert np.array_equal(np.asarray(row["sparse.png"], dtype=np.float32) / 256.0, written_sparse)
        assert np.array_equal(
            np.asarray(row["dense.png"], dtype=np.float32) / 256.0, schema.decode_depth_png(members[f"{key}.dense.png"])
        )
        assert row["json"]["counts"]["sparse_pixels"] == np.count_nonzero(written_sparse)
        assert np.asarray(row["points.npy"]).shape == (row["json"]["counts"]["points"], 7)

    snippet = re.findall(r"```python\n(.*?)```", card.text, re.S)[1]
    local = snippet.replace("https://huggingface.co/datasets/someone/street-hdl64/resolve/main/", f"file://{staging}/")
    exec(compile(local, "README.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in printed] == ["img0-v0", "img1-v0", "img2-v0"]
    for line in printed:
        # The card's decoder gives metres: the pixel count and the farthest depth of the file.
        key, pixels, farthest = line.split()[0], int(line.split()[1]), float(line.split()[-2])
        assert pixels == np.count_nonzero(schema.decode_depth_png(members[f"{key}.sparse.png"]))
        assert farthest == schema.decode_depth_png(members[f"{key}.dense.png"]).max()


def test_without_network_the_upload_fails_in_one_line_and_the_staging_is_whole(cli, out, monkeypatch):
    secret = "hf_secret_never_printed_0123456789"
    monkeypatch.setenv("HF_TOKEN", secret)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    before = (out / "shard-000000.tar").read_bytes()
    code, text, err = cli("publish", "--shards", out, "--repo", "someone/street-hdl64", "--license", "mit")
    assert code == 1 and err.count("\n") == 1
    assert "upload to someone/street-hdl64 failed" in err and "re-run the same command to resume" in err
    assert secret not in text + err
    staged = sorted(path.relative_to(out / "hub").as_posix() for path in (out / "hub").rglob("*") if path.is_file())
    assert staged == ["README.md", "data/train/shard-000000.tar", "manifest.json", "previews/contact_sheet.png"]
    assert not (out / "hub.tmp").exists() and (out / "shard-000000.tar").read_bytes() == before


def test_offline_or_without_a_token_says_what_to_do(cli, out, monkeypatch, tmp_path):
    code, _, err = cli("publish", "--shards", out, "--repo", "someone/street-hdl64", "--license", "mit")
    assert code == 1 and err.count("\n") == 1 and "HF_HUB_OFFLINE is set" in err
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    code, _, err = cli("publish", "--shards", out, "--repo", "someone/street-hdl64")
    assert code == 1 and "hf auth login" in err and "HF_TOKEN" in err and "--dry-run" in err


def rewrite_shard(out, edit):
    """Rewrite shard 0 with `edit(members) -> members` and update its checksum in the manifest."""
    path = out / "shard-000000.tar"
    members = edit(tar_members(path))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name in sorted(members):
            info = tarfile.TarInfo(name)
            info.size = len(members[name])
            tar.addfile(info, io.BytesIO(members[name]))
    path.write_bytes(buffer.getvalue())
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["shards"][0]["sha256"] = hashlib.sha256(buffer.getvalue()).hexdigest()
    (out / "manifest.json").write_text(json.dumps(manifest))


def test_names_the_hub_would_reject_are_refused_before_staging(cli, out):
    rewrite_shard(out, lambda members: {**members, "img0-v0.Depth Map.PNG": b"x"})
    code, _, err = cli("publish", "--shards", out, "--repo", "someone/x", "--dry-run")
    assert code == 1 and "would reject member name 'Depth Map.PNG'" in err
    assert not (out / "hub").exists()

    rewrite_shard(out, lambda members: {name: data for name, data in members.items() if name != "img1-v0.points.npy"})
    code, _, err = cli("publish", "--shards", out, "--repo", "someone/x", "--dry-run")
    assert code == 1 and "problems" in err and "img1-v0: missing points.npy" in err

    code, _, err = cli("publish", "--shards", out, "--repo", "not a repo", "--dry-run")
    assert code == 2 and "write USER/NAME" in err


def test_the_card_links_to_the_revision_it_is_uploaded_to(out):
    from simlidar.pipeline.output.publish import stage

    card = (stage(out, "someone/street-hdl64", "cc-by-4.0", "train", "v2") / "README.md").read_text()
    assert "/resolve/v2/data/train/" in card and "/resolve/main/" not in card

"""`predict`: a model's depth for photos with their sparse depth (or for shards) is eval's, written
as KITTI writes depth, with a preview; bad inputs are one line each, before the model loads."""

import json
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image
from simlidar.pipeline import schema
from simlidar.train import data
from simlidar.train.errors import TrainError
from simlidar.train.factory import load_model
from simlidar.train.loop import train
from simlidar.train.metrics import image_metrics
from simlidar.train.predict import predict
from simlidar.train.validate import model_metrics, predict_depth

from .test_train_checkpoint import tiny_config
from .train_shards import write_ramp_shards


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(checkpoint, shard) of a tiny model trained 4 steps on ramp shards (EMA weights differ from the raw)."""
    folder = tmp_path_factory.mktemp("predict")
    shards = write_ramp_shards(folder / "shards", shards=1)
    train(tiny_config(shards, folder / "run", lr=3e-2), progress=False)
    return folder / "run" / "last.pt", shards / "shard-000000.tar"


def _photo_folder(shard, folder, keys=("s0-0", "s0-1")):
    """The shard's samples as photos (KEY.png) with their sparse depth beside them (KEY.sparse.png)."""
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(shard) as tar:
        for key in keys:
            (folder / f"{key}.png").write_bytes(tar.extractfile(f"{key}.{schema.IMAGE}").read())
            (folder / f"{key}.sparse.png").write_bytes(tar.extractfile(f"{key}.{schema.SPARSE}").read())
    return folder


def test_predict_on_photos_writes_evals_prediction_as_kitti_depth(trained, tmp_path):
    checkpoint, shard = trained
    photos = _photo_folder(shard, tmp_path / "photos")
    record = predict(str(checkpoint), str(photos), str(tmp_path / "out"), progress=False)
    assert record["written"] == ["s0-0", "s0-1"] and record["weights"] == "ema"

    model = load_model(torch.load(checkpoint, weights_only=True), checkpoint, ema=True).eval()
    per_image, _ = model_metrics(model, [str(shard)], torch.device("cpu"))
    eval_metrics = {image["key"]: image for image in per_image}
    for sample in data.eval_stream([str(shard)]):
        if sample["key"] not in record["written"]:
            continue
        expected_m = predict_depth(model, sample["rgb"], sample["sparse"], torch.device("cpu"))
        written = (tmp_path / "out" / f"{sample['key']}.png").read_bytes()
        # KITTI's format: uint16 of metres x 256; exactly eval's prediction, so encoded.
        assert Image.open(tmp_path / "out" / f"{sample['key']}.png").mode == "I;16"
        assert written == schema.encode_depth_png(expected_m)
        predicted_m = schema.decode_depth_png(written)
        assert np.abs(predicted_m - expected_m).max() <= 1 / 512
        # And eval scored that very prediction: its metrics, to the PNG's 1/256 m steps.
        metrics = image_metrics(predicted_m, sample["dense"][0].numpy())
        assert metrics["rmse_mm"] == pytest.approx(eval_metrics[sample["key"]]["rmse_mm"], abs=2.0)
    preview = np.asarray(Image.open(tmp_path / "out" / "previews" / "s0-0.png"))
    assert preview.shape == (3 * (24 + 24) + 10, 40 + 110 + 20, 3)  # RGB, sparse input, prediction
    assert json.loads((tmp_path / "out" / "predictions.json").read_text())["written"] == ["s0-0", "s0-1"]


def test_predict_on_shards_gives_the_same_bytes_and_raw_weights_differ(trained, tmp_path):
    checkpoint, shard = trained
    photos = _photo_folder(shard, tmp_path / "photos")
    predict(str(checkpoint), str(photos), str(tmp_path / "photos-out"), progress=False)
    record = predict(str(checkpoint), str(shard), str(tmp_path / "out"), previews=1, progress=False)
    assert record["written"] == ["s0-0", "s0-1", "s0-2", "s0-3"]
    for key in ("s0-0", "s0-1"):
        assert (tmp_path / "out" / f"{key}.png").read_bytes() == (tmp_path / "photos-out" / f"{key}.png").read_bytes()
    assert sorted(path.name for path in (tmp_path / "out" / "previews").iterdir()) == ["s0-0.png"]
    one = predict(str(checkpoint), str(photos / "s0-1.png"), str(tmp_path / "one"), previews=0, progress=False)
    assert one["written"] == ["s0-1"]
    assert (tmp_path / "one" / "s0-1.png").read_bytes() == (tmp_path / "out" / "s0-1.png").read_bytes()
    raw = predict(str(checkpoint), str(shard), str(tmp_path / "raw"), use_ema=False, previews=0, progress=False)
    assert raw["weights"] == "model"
    assert (tmp_path / "raw" / "s0-0.png").read_bytes() != (tmp_path / "out" / "s0-0.png").read_bytes()


def test_bad_inputs_are_one_line_each_before_the_model_loads(trained, tmp_path, monkeypatch):
    checkpoint, shard = trained
    photos = _photo_folder(shard, tmp_path / "photos")
    monkeypatch.setattr("simlidar.train.predict.load_checkpoint", lambda path: pytest.fail("loaded the model"))

    def fails(match, images, out=str(tmp_path / "out"), **options):
        with pytest.raises(TrainError, match=match) as error:
            predict(str(checkpoint), str(images), out, progress=False, **options)
        assert "\n" not in str(error.value)

    (photos / "s0-1.sparse.png").unlink()
    fails(r"no sparse depth for s0-1.png: expected s0-1.sparse.png beside it, or pass --sparse", photos)
    fails(r"no sparse depth for s0-0.png in .*: expected s0-0.png or s0-0.sparse.png", photos, sparse=str(tmp_path))
    (photos / "s0-1.sparse.png").write_bytes(schema.encode_depth_png(np.ones((10, 10), np.float32)))
    fails(r"s0-1.sparse.png is 10x10 but s0-1.png is 40x24: the sparse depth must be the photo's size", photos)
    Image.fromarray(np.zeros((24, 40), np.uint8)).save(photos / "s0-1.sparse.png")
    fails(r"sparse depth must be a 16-bit PNG of metres x 256 \(KITTI's format\), not mode L", photos)
    (photos / "s0-1.sparse.png").unlink()
    (photos / "s0-1.png").write_text("not an image")
    (photos / "s0-1.sparse.png").write_bytes(schema.encode_depth_png(np.ones((24, 40), np.float32)))
    fails(r"s0-1.png: not a readable image", photos)
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "readme.txt").write_text("hello")
    fails(r"no photos \(.jpg, .jpeg, .png\) in .*notes", notes)
    fails(r"--sparse is for a folder of photos", shard, sparse=str(photos))
    fails(r"is neither a photo, a folder of photos nor shards", tmp_path / "missing")
    fails(r"is neither a photo, a folder of photos nor shards", notes / "readme.txt")
    fails(r"--out .* is a file: give a folder", photos, out=str(photos / "s0-0.png"))
    (photos / "s0-1.jpg").write_bytes((photos / "s0-0.png").read_bytes())
    fails(r"s0-1.jpg and s0-1.png would both be written as s0-1.png", photos)


def test_a_checkpoint_of_another_kind_is_one_line(trained, tmp_path):
    checkpoint, shard = trained
    photos = _photo_folder(shard, tmp_path / "photos")
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": torch.nn.Linear(2, 2).state_dict()}, foreign)
    with pytest.raises(TrainError, match="is not a simlidar checkpoint"):
        predict(str(foreign), str(photos), str(tmp_path / "out"), progress=False)
    wider = tmp_path / "wider.pt"
    state = torch.load(checkpoint, weights_only=True)
    torch.save({**state, "model_config": {**state["model_config"], "width": 8}}, wider)
    with pytest.raises(TrainError, match="weights do not match the model of width 8"):
        predict(str(wider), str(photos), str(tmp_path / "out"), progress=False)


def test_the_predict_command_writes_and_says_where_and_its_errors_are_one_line(trained, cli, tmp_path):
    checkpoint, shard = trained
    photos = _photo_folder(shard, tmp_path / "photos")
    arguments = ("predict", "--checkpoint", checkpoint, "--images", photos, "--out", tmp_path / "out", "--quiet")
    code, out, err = cli(*arguments)
    assert code == 0, err
    assert out == f"2 depth maps (ema weights, step 4) in {tmp_path / 'out'}/\n"
    assert sorted(path.name for path in (tmp_path / "out").glob("*.png")) == ["s0-0.png", "s0-1.png"]
    # A usage error (click's code 2), and a data error exiting as eval's own data errors do.
    code, _, err = cli("predict", "--checkpoint", checkpoint, "--images", shard, "--sparse", photos, "--out", tmp_path)
    assert code == 2 and "--sparse is for a folder of photos" in err
    (photos / "s0-1.sparse.png").unlink()
    code, _, err = cli("predict", "--checkpoint", checkpoint, "--images", photos, "--out", tmp_path / "out")
    eval_code, _, eval_err = cli("eval", "--checkpoint", tmp_path / "missing.pt", "--shards", shard)
    assert code == eval_code != 0 and "no checkpoint at" in eval_err
    assert err == "error: no sparse depth for s0-1.png: expected s0-1.sparse.png beside it, or pass --sparse FOLDER " \
        "(16-bit PNGs of metres x 256 named as the photos)\n"

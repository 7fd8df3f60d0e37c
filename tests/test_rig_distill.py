"""bins-kd on a converted real rig: the nuScenes frame's six cameras and real sweep."""

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from simlidar.pipeline import schema

from .helpers import assert_every_term_falls

NUSCENES = Path(__file__).parents[2] / "shared" / "data" / "nuscenes_frame"
FRAME = "1532402927647951"
# The frame at 1/8 of its 1600 x 900 (K scaled alike): the same rig and sweep, small
# enough for a CPU test.
SHRINK = 8
TINY = ["--workers", "0", "--log-every", "1", "--quiet", "--ema", "0", "--student", "mono"]


def nearest_fill(sparse):
    """(H, W) metres, 0 = none -> every pixel the depth of its nearest valid pixel."""
    v, u = np.nonzero(sparse)
    rows, columns = np.mgrid[: sparse.shape[0], : sparse.shape[1]]
    distance = (rows.reshape(-1, 1) - v) ** 2 + (columns.reshape(-1, 1) - u) ** 2
    return sparse[v, u][distance.argmin(1)].reshape(sparse.shape)


def small_rig(root):
    """The frame shrunk, as two instants (FRAME and a copy) of ROOT/CAMERA/FRAME.jpg and
    ROOT/LIDAR_TOP/FRAME.bin."""
    calibration = json.loads((NUSCENES / "calibration.json").read_text())
    (root / "LIDAR_TOP").mkdir(parents=True)
    sweep = (NUSCENES / "LIDAR_TOP" / f"{FRAME}.bin").read_bytes()
    for camera in calibration["cameras"]:
        camera["K"] = (np.array(camera["K"]) * [[1 / SHRINK], [1 / SHRINK], [1]]).tolist()
        camera["image_size"] = [1600 // SHRINK, 900 // SHRINK]
        (root / camera["name"]).mkdir()
        with Image.open(NUSCENES / camera["name"] / f"{FRAME}.jpg") as image:
            small = image.resize(camera["image_size"], Image.BILINEAR)
        for frame in (FRAME, "0002"):
            small.save(root / camera["name"] / f"{frame}.jpg", quality=95)
            (root / "LIDAR_TOP" / f"{frame}.bin").write_bytes(sweep)
    (root / "calibration.json").write_text(json.dumps(calibration))


@pytest.fixture
def rig_shards(cli, tmp_path):
    """Converted twice: first to read the projected sweeps, then with a teacher that is
    each sweep densified (a nearest fill: the scene's geometry, right up to scale)."""
    if not NUSCENES.is_dir():
        pytest.skip(f"real nuScenes frame not found at {NUSCENES}")
    root = tmp_path / "rig"
    small_rig(root)
    calibration = root / "calibration.json"
    code, _, err = cli("convert", "rig", root, "--rig", calibration, "--out", tmp_path / "plain", "--quiet")
    assert code == 0, err
    with tarfile.open(tmp_path / "plain" / "shard-000000.tar") as tar:
        for member in tar.getmembers():
            if member.name.endswith(".sparse.png"):
                key = member.name.split(".")[0]
                meta = json.loads(tar.extractfile(f"{key}.json").read())
                dense = nearest_fill(schema.decode_depth_png(tar.extractfile(member).read()))
                sidecar = root / Path(meta["source_path"]).with_suffix(".depth.png")
                Image.fromarray(np.round(dense * 256).astype(np.uint16)).save(sidecar)
    out = tmp_path / "shards"
    code, _, err = cli("convert", "rig", root, "--rig", calibration, "--out", out, "--teacher", "sidecar", "--quiet")
    assert code == 0, err
    return out


@pytest.mark.slow
def test_a_short_view_relational_run_on_the_real_rig_lowers_every_term(cli, rig_shards, tmp_path):
    run = tmp_path / "run"
    # Crops of the whole (shrunk) images: adjacent cameras overlap at their edges.
    command = ["train", "--shards", rig_shards, "--out", run, *TINY, "--crop", "112", "200", "--steps", "30"]
    command += ["--objective", "bins-kd", "--view-relational", "--bins", "16", "--width", "4", "--lr", "1e-3"]
    command += ["--batch-size", "1", "--kd-weight", "100", "--relational-weight", "10", "--chamfer-weight", "1"]
    code, _, err = cli(*command)
    assert code == 0, err
    rows = assert_every_term_falls(run / "log.csv", 30)
    assert all(float(row["kd"]) > 0 and float(row["relational"]) > 0 for row in rows)

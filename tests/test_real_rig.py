"""Real camera rigs (`simlidar generate --images ROOT --rig ROOT/calibration.json`): one
LiDAR scan per frame shared by every camera, cross-camera geometry, the scene loader
and bad input.

The rig: three 64 x 32 cameras of 90 deg horizontal field of view, 0.3 m apart, yawed
-50, 0 and +50 deg (the outer two overlap the centre one by 40 deg, not each other),
a LiDAR 0.5 m above them. The world: a wall at z = 10 m in the rig frame and a box face
at z = 6 m for |x|, |y| <= 1 m."""

import io
import json
import sys

import numpy as np
import pytest
from simlidar.pipeline import schema
from simlidar.pipeline.errors import PipelineError
from simlidar.pipeline.sources.calibrated_rig import load_calibration
from simlidar.sensors.camera import invert_pose
from simlidar.sensors.mount import R_CAM_LIDAR_NOMINAL
from simlidar.sensors.rig_geometry import yaw_rotation
from simlidar.train.data import TrainStream
from simlidar.train.shards import index_shards

from .helpers import main, tar_members, write_photo

WIDTH, HEIGHT = 64, 32
K = np.array([[32.0, 0.0, 31.5], [0.0, 32.0, 15.5], [0.0, 0.0, 1.0]])
NAMES = ("left", "front", "right")
YAWS_DEG = (-50.0, 0.0, 50.0)
WALL_Z, BOX_Z, BOX_HALF = 10.0, 6.0, 1.0
EXACT = ("--teacher", "sidecar", "--quiet", "--workers", "1", "--sensor", "hdl64", "--mount-jitter", "none")
NO_EFFECTS = ("--range-noise", "0", "--drop-rate", "0", "--detection-range", "0", "--divergence", "0")


def pose(R, t):
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, t
    return T


T_RIG_CAM = [pose(yaw_rotation(np.deg2rad(yaw)), [0.3 * index - 0.3, 0.0, 0.0]) for index, yaw in enumerate(YAWS_DEG)]
T_RIG_LIDAR = pose(R_CAM_LIDAR_NOMINAL, [0.0, -0.5, 0.0])


def world_depth(T_rig_cam, u, v):
    """Camera z (m) of the box face or the wall through pixel coordinates (u, v) (arrays); 0 = none."""
    rays_cam = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u, float)], -1)
    rays_rig, origin = rays_cam @ T_rig_cam[:3, :3].T, T_rig_cam[:3, 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        s_box = (BOX_Z - origin[2]) / rays_rig[..., 2]
        s_wall = (WALL_Z - origin[2]) / rays_rig[..., 2]
    on_box = origin[:2] + s_box[..., None] * rays_rig[..., :2]
    box = (rays_rig[..., 2] > 0) & (np.abs(on_box) <= BOX_HALF).all(-1)
    depth = np.where(box, s_box, s_wall)
    return np.where((rays_rig[..., 2] > 0) & (depth < 100), depth, 0.0)


def calibration_record(cameras=None):
    cameras = cameras or [
        {"name": name, "K": K.tolist(), "image_size": [WIDTH, HEIGHT], "T_rig_cam": T.tolist()}
        for name, T in zip(NAMES, T_RIG_CAM, strict=True)
    ]
    return {"name": "tri", "T_rig_lidar": T_RIG_LIDAR.tolist(), "cameras": cameras}


def make_rig(root, frames=("000", "001"), record=None):
    u, v = np.meshgrid(np.arange(WIDTH, dtype=float), np.arange(HEIGHT, dtype=float))
    for index, (name, T) in enumerate(zip(NAMES, T_RIG_CAM, strict=True)):
        for number, frame in enumerate(frames):
            write_photo(root / name, f"{frame}.jpg", world_depth(T, u, v).astype(np.float32), seed=10 * index + number)
    (root / "calibration.json").write_text(json.dumps(record or calibration_record()))
    return root / "calibration.json"


def project(points_cam):
    z = points_cam[:, 2]
    return K[0, 0] * points_cam[:, 0] / z + K[0, 2], K[1, 1] * points_cam[:, 1] / z + K[1, 2], z


@pytest.fixture(scope="module")
def rig_run(tmp_path_factory):
    """(shard members, output folder) of a 2-frame run with points saved, made twice."""
    root = tmp_path_factory.mktemp("rig")
    calibration = make_rig(root / "data")
    outputs = []
    for out in ("out", "again"):
        arguments = ["generate", "--images", root / "data", "--rig", calibration, "--out", root / out]
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(sys, "argv", ["simlidar", *map(str, [*arguments, *EXACT, *NO_EFFECTS, "--save-points"])])
            main()
        outputs.append((root / out / "shard-000000.tar").read_bytes())
    assert outputs[0] == outputs[1]  # byte-identical re-runs
    return tar_members(root / "out" / "shard-000000.tar"), root / "out"


def metas_of(members, frame):
    return [json.loads(members[f"{frame}-r{index}.json"]) for index in range(3)]


def test_calibration_is_read_with_overlapping_neighbours(tmp_path):
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps(calibration_record()))
    calibration = load_calibration(str(path))
    assert [camera.name for camera in calibration.cameras] == list(NAMES)
    # Outer cameras see [-95, -5] and [5, 95] deg: each overlaps the front camera only.
    assert calibration.neighbours == ((1,), (0, 2), (1,))
    assert np.allclose(invert_pose(calibration.cameras[2].T_rig_cam) @ T_RIG_CAM[2], np.eye(4))


def test_one_scan_per_frame_serves_every_camera(rig_run):
    members, _ = rig_run
    assert sorted(members) == sorted(
        f"{frame}-r{index}.{member}"
        for frame in ("000", "001")
        for index in range(3)
        for member in ("jpg", "sparse.png", "dense.png", "teacher.png", "json", "points.npy")
    )
    for frame in ("000", "001"):
        metas = metas_of(members, frame)
        assert {meta["scene"] for meta in metas} == {frame}
        assert [(meta["rig"]["view"], meta["rig"]["views"], meta["rig"]["camera"]) for meta in metas] == [
            (0, 3, "left"),
            (1, 3, "front"),
            (2, 3, "right"),
        ]
        assert [meta["rig"]["neighbours"] for meta in metas] == [[1], [0, 2], [1]]
        # One scan: the same points, count and phase in every camera.
        assert len({members[f"{frame}-r{index}.points.npy"] for index in range(3)}) == 1
        assert len({meta["counts"]["points"] for meta in metas}) == 1 and metas[0]["counts"]["points"] > 500
        # Everything but the camera's own fields (the scan's phase, sensor, mount, seed) is shared.
        own = ("key", "source_path", "rig", "T_cam_lidar", "mesh", "counts", "teacher", "teacher_relative")
        shared = [{key: value for key, value in meta.items() if key not in own} for meta in metas]
        assert shared[1] == shared[0] == shared[2] and shared[0]["mount"]["name"] == "calibration"
        for index, meta in enumerate(metas):
            assert meta["K"] == K.tolist() and meta["image_size"] == [WIDTH, HEIGHT]
            assert meta["source_path"] == f"{NAMES[index]}/{frame}.jpg"
            # No jitter: T_cam_lidar is the calibration's inv(T_rig_cam) @ T_rig_lidar.
            expected = np.linalg.inv(T_RIG_CAM[index]) @ T_RIG_LIDAR
            assert np.allclose(meta["T_cam_lidar"], expected, atol=1e-12)
            for other, R in zip(meta["rig"]["neighbours"], meta["rig"]["R_cam_neighbours"], strict=True):
                yaw = np.deg2rad(YAWS_DEG[other] - YAWS_DEG[index])
                assert np.allclose(R, yaw_rotation(yaw))
            sparse = schema.decode_depth_png(members[f"{meta['key']}.sparse.png"])
            assert meta["counts"]["sparse_pixels"] == np.count_nonzero(sparse) > 50


def test_returns_agree_with_each_cameras_depth_and_reproject_between_cameras(rig_run):
    members, _ = rig_run
    metas = metas_of(members, "000")
    points_lidar = np.load(io.BytesIO(members["000-r0.points.npy"]))[:, :3].astype(np.float64)
    sparse = [schema.decode_depth_png(members[f"000-r{index}.sparse.png"]) for index in range(3)]
    projected = []
    for index, meta in enumerate(metas):
        T = np.array(meta["T_cam_lidar"])
        u, v, z = project(points_lidar @ T[:3, :3].T + T[:3, 3])
        inside = (z > 0) & (u >= -0.5) & (u < WIDTH - 0.5) & (v >= -0.5) & (v < HEIGHT - 0.5)
        projected.append((u, v, z, inside))
        # A return lies on the wall or the box face seen through its own (sub-pixel) ray.
        error = np.abs(z[inside] - world_depth(T_RIG_CAM[index], u[inside], v[inside]))
        assert inside.sum() > 100 and np.mean(error < 0.03) > 0.95
    for a, b in ((1, 0), (1, 2), (0, 1)):
        u_a, v_a, z_a, in_a = projected[a]
        u_b, v_b, z_b, in_b = projected[b]
        both = in_a & in_b
        assert both.sum() > 30  # the overlap holds points of the one scan
        # Camera A's view of a point (pixel + depth) carried through the calibration into B.
        rays_a = np.stack([(u_a - K[0, 2]) / K[0, 0], (v_a - K[1, 2]) / K[1, 1], np.ones_like(u_a)], -1)
        points_a = rays_a[both] * z_a[both, None]
        T_b_a = np.linalg.inv(T_RIG_CAM[b]) @ T_RIG_CAM[a]
        u_ab, v_ab, z_ab = project(points_a @ T_b_a[:3, :3].T + T_b_a[:3, 3])
        assert np.hypot(u_ab - u_b[both], v_ab - v_b[both]).max() < 1e-6
        # ... lands on a pixel where B's sparse map holds a return: the nearest of those
        # landing there (the z-buffer), on the same surface within the pixel's footprint.
        held = sparse[b][np.floor(v_ab + 0.5).astype(int), np.floor(u_ab + 0.5).astype(int)]
        assert (held > 0).all() and (held <= z_ab + 1 / 256).all()
        assert np.mean(np.abs(held - z_ab) < 0.04 * z_ab) > 0.97  # the rest: B's pixel straddles the box's edge


def test_dense_pixels_of_one_camera_reproject_onto_the_others_within_a_pixel(rig_run):
    members, _ = rig_run
    dense = [schema.decode_depth_png(members[f"001-r{index}.dense.png"]) for index in range(3)]
    u, v = np.meshgrid(np.arange(WIDTH, dtype=float), np.arange(HEIGHT, dtype=float))
    for a, b in ((1, 0), (1, 2), (2, 1)):
        valid = dense[a] > 0
        points_a = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1)[valid]
        points_a *= dense[a][valid][:, None]
        T_b_a = np.linalg.inv(T_RIG_CAM[b]) @ T_RIG_CAM[a]
        u_b, v_b, z_b = project(points_a @ T_b_a[:3, :3].T + T_b_a[:3, 3])
        seen = (z_b > 0) & (u_b > 0) & (u_b < WIDTH - 1) & (v_b > 0) & (v_b < HEIGHT - 1)
        column, row = np.floor(u_b[seen] + 0.5).astype(int), np.floor(v_b[seen] + 0.5).astype(int)
        depth_b = dense[b][row, column]
        same_surface = np.abs(depth_b - z_b[seen]) < 0.05 * z_b[seen]  # not across the box's edge
        assert seen.sum() > 100 and same_surface.mean() > 0.8
        # B's own 3-D point at that pixel goes back onto A's pixel: within B's rounding to its
        # pixel centre (0.71 px), which near A's edge (45 deg off axis) spans up to 2 of A's pixels.
        rays_b = np.stack([(column - K[0, 2]) / K[0, 0], (row - K[1, 2]) / K[1, 1], np.ones(len(row))], -1)
        T_a_b = np.linalg.inv(T_b_a)
        u_a, v_a, _ = project((rays_b * depth_b[:, None])[same_surface] @ T_a_b[:3, :3].T + T_a_b[:3, 3])
        distance = np.hypot(u_a - u[valid][seen][same_surface], v_a - v[valid][seen][same_surface])
        assert np.mean(distance) < 0.5 and np.max(distance) < 1.5


def test_the_loader_batches_a_frames_cameras_as_one_scene(rig_run):
    _, out = rig_run
    urls = [str(out / "shard-000000.tar")]
    index = index_shards(urls, scenes=True)
    assert index.units[0][:2] == (("000-r0", "000-r1", "000-r2"), ("001-r0", "001-r1", "001-r2"))
    scene = next(iter(TrainStream(index, batch_size=1, crop_hw=(16, 16), seed=0)))
    assert scene["rgb"].shape == (3, 3, 16, 16) and scene["sparse"].shape == (3, 1, 16, 16)
    assert scene["neighbours"].tolist() == [[0, 1, 0], [1, 0, 1], [0, 1, 0]]


def test_a_frame_missing_a_camera_image_is_recorded_and_skipped(cli, tmp_path):
    calibration = make_rig(tmp_path / "data")
    (tmp_path / "data" / "right" / "001.jpg").unlink()
    # The default mount jitter and return effects this time.
    arguments = ("--images", tmp_path / "data", "--rig", calibration, "--out", tmp_path / "out", "--sensor", "vlp16")
    code, _, err = cli("generate", *arguments, "--teacher", "sidecar", "--quiet", "--workers", "1")
    assert code == 0, err
    assert sorted(name for name in tar_members(tmp_path / "out" / "shard-000000.tar") if name.endswith(".json")) == [
        f"000-r{index}.json" for index in range(3)
    ]
    errors = [json.loads(line) for line in (tmp_path / "out" / "errors.jsonl").read_text().splitlines()]
    assert len(errors) == 1 and errors[0]["path"] == "001" and "camera right has no image" in errors[0]["reason"]


def bad_camera(**changes):
    cameras = calibration_record()["cameras"]
    cameras[0] = {**cameras[0], **changes}
    return calibration_record(cameras)


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (bad_camera(K=[[32, 0], [0, 32]]), "camera 'left': K must be a 3x3 list"),
        (bad_camera(T_rig_cam=(2 * np.eye(4)).tolist()), "T_rig_cam must be rigid"),
        (bad_camera(image_size=[64]), "image_size must be [width, height]"),
        # Turned 100 deg further left, the left camera sees [-195, -105] deg: no other camera's view.
        (bad_camera(T_rig_cam=pose(yaw_rotation(np.deg2rad(-150)), [0, 0, 0]).tolist()), "'left' overlaps no other"),
        ({"cameras": calibration_record()["cameras"]}, "T_rig_lidar (the LiDAR mount"),
        (calibration_record(calibration_record()["cameras"][:1]), "at least 2 cameras"),
    ],
)
def test_a_bad_calibration_is_a_one_line_error(cli, tmp_path, record, message):
    make_rig(tmp_path / "data", frames=("000",), record=record)
    arguments = ("--images", tmp_path / "data", "--rig", tmp_path / "data" / "calibration.json")
    code, _, err = cli("generate", *arguments, "--out", tmp_path / "out", *EXACT)
    assert code == 1 and message in err and err.count("\n") == 1, err


def test_a_missing_camera_folder_or_a_mount_is_a_one_line_error(cli, tmp_path):
    calibration = make_rig(tmp_path / "data", frames=("000",))
    record = calibration_record()
    record["cameras"][2] = {**record["cameras"][2], "name": "rear"}
    (tmp_path / "data" / "calibration.json").write_text(json.dumps(record))
    code, _, err = cli("generate", "--images", tmp_path / "data", "--rig", calibration, "--out", tmp_path / "o", *EXACT)
    assert code == 1 and "has no folder rear/" in err and err.count("\n") == 1, err
    code, _, err = cli(
        "generate", "--images", tmp_path / "data", "--rig", calibration, "--mount", "kitti", "--out", tmp_path / "o"
    )
    assert code == 2 and "drop --mount" in err and err.count("\n") == 1, err
    with pytest.raises(PipelineError, match="cannot read rig calibration"):
        load_calibration(str(tmp_path / "nowhere.json"))


def test_a_calibrated_rig_needs_a_local_folder(cli, tmp_path):
    calibration = make_rig(tmp_path / "data", frames=("000",))
    for images in ("s3://bucket/rig", str(tmp_path / "data" / "frames-{0..1}.tar")):
        code, _, err = cli("generate", "--images", images, "--rig", calibration, "--out", tmp_path / "o", *EXACT)
        assert code == 2 and "a calibrated rig's images must be a local folder" in err and err.count("\n") == 1, err

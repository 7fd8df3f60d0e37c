"""Virtual camera rigs: presets and files, geometry of the views, resampling, and
`simlidar generate --rig`."""

import io
import json

import numpy as np
import pytest
from simlidar.pipeline import schema
from simlidar.pipeline.errors import PipelineError
from simlidar.pipeline.sources.virtual_rig import PRESETS, Rig, RigView, check_rig, load_rig, render_view, rig_cameras

from .helpers import tar_members, write_photo

K_PHOTO = np.array([[100.0, 0.0, 79.5], [0.0, 100.0, 39.5], [0.0, 0.0, 1.0]])
WIDTH, HEIGHT = 160, 80
# A tilted plane n . X = D in the photo's camera frame (metres).
NORMAL, D = np.array([0.2, -0.3, 1.0]), 10.0


def plane_depth(K, width, height, R_photo_view=None):
    """Exact camera z of the plane along each pixel ray of a camera turned by R_photo_view (None: the photo)."""
    R_photo_view = np.eye(3) if R_photo_view is None else R_photo_view
    u, v = np.meshgrid(np.arange(width), np.arange(height))
    rays = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u, float)], -1)
    return D / (rays @ R_photo_view.T @ NORMAL)


def backproject(depth, K):
    u, v = np.meshgrid(np.arange(depth.shape[1]), np.arange(depth.shape[0]))
    return np.stack([(u - K[0, 2]) / K[0, 0] * depth, (v - K[1, 2]) / K[1, 1] * depth, depth], -1)


def project(points, K):
    with np.errstate(divide="ignore", invalid="ignore"):  # pixels without depth
        return points[..., 0] / points[..., 2] * K[0, 0] + K[0, 2], points[..., 1] / points[..., 2] * K[1, 1] + K[1, 2]


def test_virtual_preset_is_three_half_views_overlapping_by_half():
    cameras = rig_cameras(load_rig("virtual"), K_PHOTO, WIDTH, HEIGHT)
    half_fov = np.arctan(80 / 100)  # the photo sees +-38.66 deg
    assert [camera.neighbours for camera in cameras] == [(1,), (0, 2), (1,)]
    assert np.allclose([camera.yaw_rad for camera in cameras], [-half_fov / 2, 0, half_fov / 2])
    for camera in cameras:
        # Half the photo's field of view at the photo's focal length: 2 * 100 * tan(19.33 deg) = 70.2 px.
        assert camera.width == 70 and camera.height == HEIGHT and camera.K[0, 0] == 100.0
    assert {name: len(rig.views) for name, rig in PRESETS.items()} == {"virtual": 3, "virtual2": 2, "virtual5": 5}


def test_rig_views_reproject_onto_each_other_within_a_pixel():
    cameras = rig_cameras(load_rig("virtual"), K_PHOTO, WIDTH, HEIGHT)
    rgb = np.random.default_rng(0).integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    dense = plane_depth(K_PHOTO, WIDTH, HEIGHT).astype(np.float32)
    views = [render_view(camera, K_PHOTO, rgb, dense, np.zeros((0, 3))) for camera in cameras]
    for camera, view in zip(cameras, views, strict=True):
        expected = plane_depth(camera.K, camera.width, camera.height, camera.R_photo_view)
        has_depth = view.dense_m > 0
        assert has_depth.mean() > 0.9 and view.outside_pixels == (~has_depth).sum()
        relative = np.abs(view.dense_m[has_depth] / expected[has_depth] - 1)
        # Disparity is linear on a plane: exact but for the photo's outer half-pixel border (clamped).
        assert np.median(relative) < 1e-6 and relative.max() < 1e-2
    for a, b in ((0, 1), (1, 2), (1, 0)):
        camera_a, camera_b = cameras[a], cameras[b]
        points_a = backproject(views[a].dense_m, camera_a.K)
        points_b = points_a @ camera_a.R_photo_view.T @ camera_b.R_photo_view  # view A -> photo -> view B
        u_b, v_b = project(points_b, camera_b.K)
        seen = (views[a].dense_m > 0) & (u_b > 0) & (u_b < camera_b.width - 1) & (v_b > 0) & (v_b < HEIGHT - 1)
        assert seen.mean() > 0.3  # neighbours overlap by half a view
        column, row = np.round(u_b[seen]).astype(int), np.round(v_b[seen]).astype(int)
        depth_b = views[b].dense_m[row, column]
        assert (depth_b > 0).mean() > 0.95  # but B's few corner pixels outside the photo
        column, row, depth_b = column[depth_b > 0], row[depth_b > 0], depth_b[depth_b > 0]
        # Where B sees that pixel, B's own 3-D point projects back onto the pixel of A.
        rays_b = np.stack([(column - camera_b.K[0, 2]) / 100, (row - camera_b.K[1, 2]) / 100, np.ones(len(row))], -1)
        back_a = (rays_b * depth_b[:, None]) @ camera_b.R_photo_view.T @ camera_a.R_photo_view
        u_a, v_a = project(back_a, camera_a.K)
        v_grid, u_grid = (
            axis[views[b].dense_m[np.round(v_b[seen]).astype(int), np.round(u_b[seen]).astype(int)] > 0]
            for axis in np.nonzero(seen)
        )
        assert np.hypot(u_a - u_grid, v_a - v_grid).max() < 1.0


def test_points_are_z_buffered_in_each_view_and_rgb_is_resampled():
    camera = rig_cameras(load_rig("virtual"), K_PHOTO, WIDTH, HEIGHT)[2]
    points_view = np.array([[0.0, 0.0, 5.0], [0.0, 0.0, 9.0], [1.0, 0.5, 4.0]])  # two on one pixel
    points_photo = points_view @ camera.R_photo_view.T
    rgb = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    rgb[:, :, 1] = 200
    view = render_view(camera, K_PHOTO, rgb, np.full((HEIGHT, WIDTH), 7.0, np.float32), points_photo)
    centre = (int(np.floor(camera.K[1, 2] + 0.5)), int(np.floor(camera.K[0, 2] + 0.5)))
    assert view.sparse_m[centre] == pytest.approx(5.0)  # the nearer of the two
    assert view.sparse_m[int(39.5 + 12.5 + 0.5), int(camera.K[0, 2] + 25 + 0.5)] == pytest.approx(4.0)
    assert np.count_nonzero(view.sparse_m) == 2
    inside = view.dense_m > 0
    assert (view.rgb[inside][:, 1] == 200).all() and (view.rgb[~inside] == 0).all()


def test_rig_file_and_bad_rigs(tmp_path):
    path = tmp_path / "pair.toml"
    path.write_text("[[views]]\nyaw = 0.2\nfov = 0.6\n[[views]]\nyaw = -0.2\nfov = 0.6\n")
    rig = load_rig(str(path))
    assert rig.name == "pair" and [view.yaw for view in rig.views] == [-0.2, 0.2]  # sorted left to right
    apart = tmp_path / "apart.toml"
    apart.write_text("[[views]]\nyaw = -0.3\nfov = 0.2\n[[views]]\nyaw = 0.3\nfov = 0.2\n")
    with pytest.raises(PipelineError, match="views 0 and 1 do not overlap"):
        load_rig(str(apart))
    with pytest.raises(PipelineError, match="leaves the photo"):
        check_rig(Rig("wide", (RigView(0.3, 0.6), RigView(0.0, 0.6))))
    with pytest.raises(PipelineError, match="unknown rig 'nope'"):
        load_rig("nope")


def test_generate_with_a_rig_writes_one_sample_per_view_from_one_scan(cli, tmp_path):
    depth = np.full((64, 128), 12.0, np.float32)
    depth[20:50, 50:80] = 5.0
    write_photo(tmp_path / "photos", "img.jpg", depth, K=np.array([[80.0, 0, 63.5], [0, 80.0, 31.5], [0, 0, 1]]))
    options = ("--teacher", "sidecar", "--quiet", "--workers", "1", "--rig", "virtual", "--save-points")
    code, _, err = cli("generate", "--images", tmp_path / "photos", "--out", tmp_path / "out", *options)
    assert code == 0, err
    members = tar_members(tmp_path / "out" / "shard-000000.tar")
    metas = [json.loads(members[f"img-r{index}.json"]) for index in range(3)]
    assert sorted(members) == sorted(
        f"img-r{index}.{member}"
        for index in range(3)
        for member in ("jpg", "sparse.png", "dense.png", "teacher.png", "json", "points.npy")
    )
    assert {meta["scene"] for meta in metas} == {"img"} and [meta["rig"]["view"] for meta in metas] == [0, 1, 2]
    assert [meta["rig"]["neighbours"] for meta in metas] == [[1], [0, 2], [1]]
    # One scan: the same points and phase in every view.
    assert len({members[f"img-r{index}.points.npy"] for index in range(3)}) == 1
    assert len({json.dumps(meta["T_cam_lidar"]) == json.dumps(metas[0]["T_cam_lidar"]) for meta in metas}) == 2
    for meta in metas:
        R = np.array(meta["rig"]["R_view_photo"])
        assert np.allclose(R @ R.T, np.eye(3)) and meta["image_size"] == [56, 64]
        sparse = schema.decode_depth_png(members[f"{meta['key']}.sparse.png"])
        dense = schema.decode_depth_png(members[f"{meta['key']}.dense.png"])
        teacher, valid = schema.decode_relative_png(members[f"{meta['key']}.teacher.png"])
        hits = sparse > 0
        assert hits.sum() > 50 and np.median(np.abs(sparse[hits] - dense[hits])) < 0.2
        # The teacher's disparity is 1 / dense, min-max normalised: nearest pixels -> 1.
        assert valid.sum() == (dense > 0).sum() and teacher[dense == dense[dense > 0].min()].max() == 1.0
    points = np.load(io.BytesIO(members["img-r0.points.npy"]))
    assert points.shape[1] == 7


def test_a_rig_whose_views_do_not_overlap_is_a_one_line_error(cli, tmp_path):
    write_photo(tmp_path / "photos", "img.jpg", np.full((32, 64), 10.0, np.float32))
    apart = tmp_path / "apart.toml"
    apart.write_text("[[views]]\nyaw = -0.3\nfov = 0.2\n[[views]]\nyaw = 0.3\nfov = 0.2\n")
    code, _, err = cli("generate", "--images", tmp_path / "photos", "--out", tmp_path / "out", "--rig", apart)
    assert code == 1 and "do not overlap" in err and err.count("\n") == 1
    code, _, err = cli(
        "generate", "--images", tmp_path / "photos", "--out", tmp_path / "out", "--rig", "virtual", "--views", "2"
    )
    assert code == 2 and "--views 1" in err and err.count("\n") == 1

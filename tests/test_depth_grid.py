"""The march method: the grid mesh's returns, cast through the depth map's pixel grid
without building the mesh (sensors/depth_grid.py, pipeline/stages/march.py)."""

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
from numpy.random import default_rng
from simlidar.pipeline import schema
from simlidar.pipeline.bench.frame import densified_depth
from simlidar.pipeline.output.fidelity import read_kitti_object_frame
from simlidar.pipeline.stages.march import depth_grid_scene, fidelity_against_grid, hit_fidelity
from simlidar.pipeline.stages.mesh import MeshOptions, _background_behind_edges, depth_to_mesh
from simlidar.pipeline.stages.scan import simulate_scan
from simlidar.sensors import MOUNTS, ReturnEffects, load_sensor, mount_pose
from simlidar.sensors.camera import rays_reaching_frustum
from simlidar.sensors.depth_grid import DepthGridScene, hidden_background_layer
from simlidar.sensors.raycast import Hits, MeshScene, render_depth
from simlidar.sensors.targets import TargetUnion

from .helpers import KITTI_K, REPO, generate, tar_members, write_photo

WIDTH, HEIGHT = 1242, 375
KITTI_OBJECT = Path(__file__).parents[2] / "shared" / "data" / "kitti_object"


def grid_scene(depth, K=KITTI_K, options=MeshOptions()):
    mesh = depth_to_mesh(depth, K, options)
    return MeshScene(mesh.vertices_cam, mesh.triangles)


def ideal_scan(scene, mount):
    """An HDL-64 scan with every return effect off (exact geometry) from `mount`."""
    ideal = replace(load_sensor("hdl64"), effects=ReturnEffects())
    return simulate_scan(scene, KITTI_K, WIDTH, HEIGHT, ideal, mount_pose(MOUNTS[mount]), default_rng(0))


def frame_rays(T_cam_lidar, K, width, height):
    """(origin (3,), directions (N, 3)) of an HDL-64 frame's rays that can reach the image."""
    sensor = load_sensor("hdl64")
    directions = sensor.fire(default_rng(0)).directions_lidar @ T_cam_lidar[:3, :3].T
    origin = T_cam_lidar[:3, 3]
    toward = rays_reaching_frustum(origin, directions, K, width, height, sensor.min_range_m, sensor.max_range_m)
    return origin, directions[toward]


def box_in_front_of_wall():
    depth = np.full((HEIGHT, WIDTH), 20.0, np.float32)
    depth[100:300, 400:800] = 5.0
    return depth


def test_plane_at_10m_is_hit_where_the_rays_meet_it():
    T_cam_lidar = mount_pose(MOUNTS["kitti"])
    origin, directions = frame_rays(T_cam_lidar, KITTI_K, WIDTH, HEIGHT)
    hits = depth_grid_scene(np.full((HEIGHT, WIDTH), 10.0, np.float32), KITTI_K).cast(origin, directions)
    t_plane = (10.0 - origin[2]) / directions[:, 2]
    points = origin + directions * t_plane[:, None]
    u = KITTI_K[0, 0] * points[:, 0] / 10.0 + KITTI_K[0, 2]
    v = KITTI_K[1, 1] * points[:, 1] / 10.0 + KITTI_K[1, 2]
    # The mesh spans the pixel centres: [0, W - 1] x [0, H - 1].
    on_mesh = (u >= 0) & (u <= WIDTH - 1) & (v >= 0) & (v <= HEIGHT - 1)
    assert on_mesh.sum() > 15_000
    assert np.array_equal(np.isfinite(hits.t), on_mesh)
    assert np.abs(hits.t[on_mesh] - t_plane[on_mesh]).max() < 1e-6
    assert np.allclose(np.abs(hits.normals[on_mesh, 2]), 1.0)


def test_box_before_a_wall_leaves_no_return_in_the_gap():
    depth = box_in_front_of_wall()
    sparse = ideal_scan(depth_grid_scene(depth, KITTI_K), "kitti").sparse_depth_m
    values = sparse[sparse > 0]
    assert ((values > 5.05) & (values < 19.95)).sum() == 0
    assert (np.abs(values - 5.0) < 0.01).sum() > 100 and (np.abs(values - 20.0) < 0.01).sum() > 100


def test_hidden_layer_gives_see_through_points_to_an_offset_lidar_only():
    depth = box_in_front_of_wall()
    scene = depth_grid_scene(depth, KITTI_K)
    offset = ideal_scan(scene, "kitti").sparse_depth_m
    centred = ideal_scan(scene, "camera").sparse_depth_m
    see_through = offset > depth + 0.3
    assert see_through.sum() > 20
    assert (centred > depth + 0.3).sum() == 0
    rows, cols = np.nonzero(see_through)
    edge_distance = np.minimum.reduce([rows - 100, 299 - rows, cols - 400, 799 - cols])
    assert edge_distance.min() >= 0 and edge_distance.max() <= MeshOptions.occlusion_fill_px
    assert np.allclose(offset[see_through], 20.0, atol=0.01)
    without_layer = ideal_scan(depth_grid_scene(depth, KITTI_K, MeshOptions(occlusion_fill_px=0)), "kitti")
    assert (without_layer.sparse_depth_m > depth + 0.3).sum() == 0


@pytest.mark.parametrize("mount", ["kitti", "camera"])
def test_scan_equals_the_grid_mesh_scan(mount):
    depth = box_in_front_of_wall()
    march = ideal_scan(depth_grid_scene(depth, KITTI_K), mount)
    grid = ideal_scan(grid_scene(depth), mount)
    assert march.counts == grid.counts
    assert np.allclose(march.sparse_depth_m, grid.sparse_depth_m, atol=1e-4, rtol=0)


def assert_fidelity(depth, K, T_cam_lidar, options=MeshOptions(), sensor="hdl64"):
    """The march hits reach the issue's bounds against the grid mesh's on one frame's rays."""
    figures = fidelity_against_grid(depth, K, load_sensor(sensor), T_cam_lidar, options)
    assert figures["grid_hits"] > 5_000
    assert figures["present"] >= 0.99 and figures["within_1pct"] >= 0.99
    assert figures["invented"] == 0
    reference = figures["see_through_reference"]
    assert abs(figures["see_through_candidate"] - reference) <= 0.1 * reference
    return figures


@dataclass(frozen=True)
class KittiFrame:
    depth_m: np.ndarray
    K: np.ndarray
    T_cam_lidar: np.ndarray


@pytest.fixture(scope="module")
def kitti_frame():
    """KITTI object frame 000134: its densified real scan at 1224 x 370, its calibration."""
    stem = KITTI_OBJECT / "000134"
    if not stem.with_suffix(".bin").is_file():
        pytest.skip(f"{stem}.bin is absent (the shared reference data, see ../shared/data/README.md)")
    frame = read_kitti_object_frame(stem)
    depth = densified_depth(frame)
    assert depth.shape == (370, 1224) and (depth > 0).mean() > 0.5
    return KittiFrame(depth, frame.calibration.K, frame.calibration.T_cam_lidar)


@pytest.mark.parametrize("sensor", ["hdl64", "hdl64-kitti"])
def test_fidelity_on_real_kitti_depth_from_its_own_calibration(kitti_frame, sensor):
    """hdl64-kitti fires each laser from its own origin (per-ray origins)."""
    figures = assert_fidelity(kitti_frame.depth_m, kitti_frame.K, kitti_frame.T_cam_lidar, sensor=sensor)
    assert figures["see_through_reference"] > 0.001


@pytest.mark.slow
@pytest.mark.parametrize("mount", ["kitti", "roof", "bumper", "camera"])
def test_fidelity_on_every_mount(kitti_frame, mount):
    street = schema.decode_depth_png((REPO / "examples" / "scenes" / "street_kitti.depth.png").read_bytes())
    assert_fidelity(street, KITTI_K, mount_pose(MOUNTS[mount]))
    assert_fidelity(kitti_frame.depth_m, kitti_frame.K, mount_pose(MOUNTS[mount]), MeshOptions(stride=2))


def test_per_ray_origins_match_the_grid_mesh(kitti_frame):
    """Each laser may fire from its own origin: (N, 3) origins, a few cm apart."""
    depth, K = kitti_frame.depth_m, kitti_frame.K
    origin, directions = frame_rays(kitti_frame.T_cam_lidar, K, *depth.shape[::-1])
    origins = origin + default_rng(1).uniform(-0.05, 0.05, size=(len(directions), 3))
    grid = grid_scene(depth, K).cast(origins, directions)
    march = depth_grid_scene(depth, K).cast(origins, directions)
    hit = np.isfinite(grid.t)
    assert np.array_equal(hit, np.isfinite(march.t))
    assert np.abs(march.t[hit] - grid.t[hit]).max() < 1e-3


def test_rig_of_cameras_casts_as_their_merged_meshes():
    """Two cameras 40 deg apart, each with its own (wavy) depth and a box in one, in one scene frame."""
    K = np.array([[300.0, 0.0, 160.0], [0.0, 300.0, 120.0], [0.0, 0.0, 1.0]])
    rng = default_rng(2)
    rows, cols = np.mgrid[0:240, 0:320]
    depths = [(5.0 + 0.5 * np.sin(cols / 17.0 + k) * np.cos(rows / 23.0)).astype(np.float32) for k in range(2)]
    depths[1][60:180, 100:220] = 2.0
    angle = np.deg2rad(40.0)
    T_scene_right = np.eye(4)
    T_scene_right[:3, :3] = [[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]]
    T_scene_right[:3, 3] = [0.3, 0.0, 0.05]
    poses = [np.eye(4), T_scene_right]
    meshes = [depth_to_mesh(depth, K) for depth in depths]
    vertices = np.concatenate([m.vertices_cam @ T[:3, :3].T + T[:3, 3] for m, T in zip(meshes, poses, strict=True)])
    triangles = np.concatenate([meshes[0].triangles, meshes[1].triangles + len(meshes[0].vertices_cam)])
    directions = rng.normal(size=(20_000, 3)) + [0.6, 0.0, 2.5]
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    origin = np.array([0.1, -0.2, -0.3])
    merged = MeshScene(vertices, triangles).cast(origin, directions)
    union = TargetUnion([depth_grid_scene(d, K, T_scene_cam=T) for d, T in zip(depths, poses, strict=True)])
    rig = union.cast(origin, directions)
    hit = np.isfinite(merged.t)
    assert hit.sum() > 10_000
    assert np.array_equal(hit, np.isfinite(rig.t))
    assert np.abs(rig.t[hit] - merged.t[hit]).max() < 1e-4
    assert np.allclose(np.abs(np.sum(rig.normals[hit] * merged.normals[hit], axis=1)), 1.0, atol=1e-4)


@pytest.mark.parametrize(
    "depth",
    [
        np.zeros((20, 30)),
        np.full((1, 30), 5.0),
        np.full((20, 1), 5.0),
        np.full((20, 30), np.nan),
        np.full((20, 30), -1.0),
    ],
    ids=["all-empty", "one-row", "one-column", "nan", "negative"],
)
def test_depth_maps_without_a_triangle_give_no_hit(depth):
    K = np.array([[20.0, 0.0, 15.0], [0.0, 20.0, 10.0], [0.0, 0.0, 1.0]])
    directions = default_rng(3).normal(size=(500, 3)) + [0.0, 0.0, 3.0]
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    hits = DepthGridScene(depth, K).cast(np.zeros(3), directions)
    assert not np.isfinite(hits.t).any() and (hits.triangle_ids == -1).all()


def test_holes_and_no_rays():
    K = np.array([[20.0, 0.0, 15.0], [0.0, 20.0, 10.0], [0.0, 0.0, 1.0]])
    depth = np.full((20, 30), 5.0)
    depth[5:8, 5:8] = np.inf
    depth[12, 20] = np.nan
    directions = default_rng(4).normal(size=(2_000, 3)) + [0.0, 0.0, 3.0]
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    origin = np.array([0.05, 0.02, 0.0])
    march = DepthGridScene(depth, K).cast(origin, directions)
    grid = grid_scene(depth, K, MeshOptions(occlusion_fill_px=0)).cast(origin, directions)
    assert np.array_equal(np.isfinite(march.t), np.isfinite(grid.t))
    assert (~np.isfinite(march.t)).sum() > 50
    empty = DepthGridScene(depth, K).cast(origin, np.zeros((0, 3)))
    assert empty.t.shape == (0,) and empty.normals.shape == (0, 3)


def test_bad_shapes_name_the_parameter():
    with pytest.raises(ValueError, match="depth_m must be"):
        DepthGridScene(np.zeros((2, 3, 4)), np.eye(3))
    with pytest.raises(ValueError, match="hidden_depth_m must"):
        DepthGridScene(np.zeros((4, 4)), np.eye(3), hidden_depth_m=np.zeros((4, 5)))
    with pytest.raises(ValueError, match="K must be"):
        DepthGridScene(np.zeros((4, 4)), np.eye(4))
    with pytest.raises(ValueError, match="positive focal lengths"):
        DepthGridScene(np.zeros((4, 4)), np.diag([0.0, 1.0, 1.0]))


@pytest.mark.parametrize("fill_px", [0, 1, 16, 1000])
def test_hidden_layer_is_the_grid_meshs(fill_px):
    depth = schema.decode_depth_png((REPO / "examples" / "scenes" / "corridor.depth.png").read_bytes())
    depth[:40, :40] = np.nan
    valid = np.isfinite(depth) & (depth > 0)
    visible = np.where(valid, depth, 0.0).astype(np.float32)
    layer, hidden = _background_behind_edges(visible, valid, MeshOptions(occlusion_fill_px=fill_px))
    compiled = hidden_background_layer(depth, fill_px, MeshOptions.max_depth_jump)
    assert np.array_equal(compiled, np.where(hidden, layer, 0.0))
    assert (compiled > 0).sum() == hidden.sum() and (fill_px == 0 or hidden.sum() > 100)


def test_hit_fidelity_counts_missing_moved_invented_and_see_through_returns():
    """Five rays straight down the optical axis onto a wall at 10 m (visible depth 10 m)."""
    depth = np.full((3, 3), 10.0)
    K = np.array([[10.0, 0.0, 1.0], [0.0, 10.0, 1.0], [0.0, 0.0, 1.0]])
    no_normals, ids = np.zeros((5, 3)), np.zeros(5, dtype=np.int64)
    grid = Hits(np.array([10.0, 10.0, 10.0, 20.0, np.inf]), no_normals, ids)
    march = Hits(np.array([10.0, 10.5, np.inf, 20.0, 5.0]), no_normals, ids)
    directions = np.tile([0.0, 0.0, 1.0], (5, 1))
    figures = hit_fidelity(grid, march, lambda t: directions * t[:, None], depth, K)
    assert figures["present"] == 0.75
    assert figures["within_1pct"] == pytest.approx(2 / 3)
    # Ray 5 hits where the grid has nothing; ray 2 is behind the grid, not in front.
    assert figures["invented"] == 1
    assert figures["see_through_reference"] == 0.25
    # Ray 2 lands 0.5 m behind the wall: see-through for the march only.
    assert figures["see_through_candidate"] == 0.5


def test_bench_prints_march_beside_grid_with_full_fidelity(cli, tmp_path):
    depth = np.full((96, 160), 20.0, np.float32)
    depth[30:70, 50:110] = 5.0
    K = np.array([[100.0, 0.0, 79.5], [0.0, 100.0, 47.5], [0.0, 0.0, 1.0]])
    write_photo(tmp_path / "photos", "box.jpg", depth, K)
    code, out, err = cli(
        "bench", "frame", "--images", tmp_path / "photos", "--kitti-object", tmp_path / "none", "--repeats", "1"
    )
    assert code == 0, err
    march, grid = (line.split() for line in out.splitlines() if line.startswith("box.jpg"))
    assert march[2] == "march" and grid[2] == "grid"
    # The march's row ends with its ratio to the grid and its fidelity: every grid return
    # present, all within 1%, none invented, the same see-through share.
    ratio, present, within, invented, see_through = march[-5:]
    assert float(ratio) > 0 and present == "100.000%" and within == "100.00%" and invented == "0"
    grid_share, march_share = see_through.split(">")
    assert grid_share == march_share != "0.00%"
    assert f"(no KITTI frame: {tmp_path / 'none'}.bin is absent)" in out


def test_generate_defaults_to_march_with_the_grids_returns(cli, photos, tmp_path):
    """The default run and `--mesh grid` write the same LiDAR pixels (ranges agree to float
    rounding, so a depth may differ by one PNG step); the json names the method."""
    assert generate(cli, photos, tmp_path / "march")[0] == 0
    assert generate(cli, photos, tmp_path / "grid", "--mesh", "grid")[0] == 0
    march, grid = (tar_members(tmp_path / name / "shard-000000.tar") for name in ("march", "grid"))
    assert march.keys() == grid.keys()
    for name in sorted(name for name in march if name.endswith(".sparse.png")):
        march_sparse, grid_sparse = (schema.decode_depth_png(members[name]) for members in (march, grid))
        assert np.count_nonzero(grid_sparse) > 100
        assert np.array_equal(march_sparse > 0, grid_sparse > 0)
        assert np.abs(march_sparse - grid_sparse).max() <= 1 / 256
    record = json.loads(march["img0-v0.json"])
    depth = schema.decode_depth_png(march["img0-v0.dense.png"])
    assert record["mesh"]["method"] == "march" and record["mesh"]["vertices"] == np.count_nonzero(depth)
    assert 0 < record["mesh"]["hidden_vertices"] < record["mesh"]["vertices"]
    assert json.loads(grid["img0-v0.json"])["mesh"]["method"] == "grid"


def test_pixel_rays_from_the_camera_render_back_the_depth():
    """Rays from the camera centre through pixel centres pass exactly through the mesh's
    vertices: every pixel with a kept triangle at its vertex returns its own depth (the
    visible layer, never the hidden one behind it at the same vertex)."""
    depth = schema.decode_depth_png((REPO / "examples" / "scenes" / "street_kitti.depth.png").read_bytes())
    rendered = render_depth(depth_grid_scene(depth, KITTI_K), KITTI_K, WIDTH, HEIGHT)
    valid = depth > 0
    covered = valid & (rendered > 0)
    assert covered.sum() > 0.998 * valid.sum() and not (rendered[~valid] > 0).any()
    assert np.abs(rendered[covered] - depth[covered]).max() < 1e-3


@pytest.mark.parametrize("method", ["march", "grid", "decimated"])
def test_the_one_target_factory_places_every_method_in_the_scene_frame(method):
    """ray_target (depth map, K, options -> target): a plane at 10 m in a camera turned 90 degrees
    about the scene's z axis and moved 2 m is hit, from the scene's origin, where it lies there."""
    from simlidar.pipeline.stages.target import ray_target

    T_scene_cam = np.eye(4)
    T_scene_cam[:3, :3] = [[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
    T_scene_cam[:3, 3] = [0.0, 0.0, 2.0]
    made = ray_target(np.full((60, 80), 10.0, np.float32), np.array([[40.0, 0, 40], [0, 40.0, 30], [0, 0, 1]]),
                      MeshOptions(method=method, target_faces=0.5), T_scene_cam)  # fmt: skip
    # The camera looks along the scene's z; its x is the scene's y: the plane is z = 12 m there.
    directions = np.array([[0.0, 0.0, 1.0], [0.2, 0.1, 1.0], [-0.1, 0.2, 1.0], [1.0, 0.0, 0.0]])
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    hits = made.target.cast(np.zeros(3), directions)
    assert np.allclose(hits.t[:3], 12.0 / directions[:3, 2], rtol=1e-5) and not np.isfinite(hits.t[3])
    assert made.summary["method"] == method
    assert made.summary.get("vertices", 60 * 80) == 60 * 80

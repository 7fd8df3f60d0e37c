"""The mesh methods (grid, decimated, poisson) on scenes whose answer is known."""

from dataclasses import replace

import numpy as np
import pytest
from simlidar.pipeline.config import GenerateConfig
from simlidar.pipeline.errors import PipelineError
from simlidar.pipeline.stages.mesh import METHODS, MeshOptions, depth_to_mesh
from simlidar.pipeline.stages.scan import simulate_scan
from simlidar.sensors import MOUNTS, ReturnEffects, load_sensor, mount_pose
from simlidar.sensors.camera import backproject
from simlidar.sensors.raycast import MeshScene, render_depth

WIDTH, HEIGHT = 160, 120
K = np.array([[130.0, 0.0, 79.5], [0.0, 130.0, 59.5], [0.0, 0.0, 1.0]])
# A coarser octree than the default keeps Poisson well under a second per test.
FAST = {"poisson_depth": 7}


def options(method, **changes):
    return MeshOptions(**{"method": method, **FAST, **changes})


def box_in_front_of_wall():
    depth = np.full((HEIGHT, WIDTH), 20.0, np.float32)
    depth[30:90, 50:110] = 5.0
    return depth


@pytest.mark.parametrize("method", METHODS)
def test_every_method_renders_back_a_fronto_parallel_plane(method):
    mesh = depth_to_mesh(np.full((HEIGHT, WIDTH), 10.0, np.float32), K, options(method))
    rendered = render_depth(MeshScene(mesh.vertices_cam, mesh.triangles), K, WIDTH, HEIGHT)
    covered = rendered > 0
    assert covered[1:-1, 1:-1].mean() > 0.99
    assert np.abs(rendered[covered] - 10.0).max() < 0.01 * 10.0


@pytest.mark.parametrize("method", METHODS)
def test_no_method_puts_lidar_points_between_box_and_wall(method):
    mesh = depth_to_mesh(box_in_front_of_wall(), K, options(method))
    scan = simulate_scan(
        MeshScene(mesh.vertices_cam, mesh.triangles),
        K,
        WIDTH,
        HEIGHT,
        replace(load_sensor("hdl64"), effects=ReturnEffects()),
        mount_pose(MOUNTS["kitti"]),
        np.random.default_rng(0),
    )
    values = scan.sparse_depth_m[scan.sparse_depth_m > 0]
    # Tolerance: none at all. The grid and decimated meshes cut the jump; the
    # trimmed Poisson surface keeps at most stubs of a few pixel footprints.
    assert ((values > 5.1) & (values < 19.9)).sum() == 0
    assert (np.abs(values - 5.0) < 0.05).sum() > 100 and (np.abs(values - 20.0) < 0.2).sum() > 100


@pytest.mark.parametrize("target", [2000, 0.05])
def test_decimation_reaches_its_target_face_count(target):
    depth = box_in_front_of_wall()
    grid = depth_to_mesh(depth, K, options("grid"))
    decimated = depth_to_mesh(depth, K, options("decimated", target_faces=target))
    wanted = target if target >= 1 else target * grid.visible_triangles
    assert abs(decimated.visible_triangles - wanted) <= 0.03 * wanted
    # The hidden layer is kept as it is.
    assert decimated.hidden_triangles == grid.hidden_triangles > 0
    assert decimated.summary() == {
        "method": "decimated",
        "faces": len(decimated.triangles),
        "visible_triangles": decimated.visible_triangles,
        "hidden_triangles": grid.hidden_triangles,
    }


def test_poisson_is_trimmed_to_the_input_points():
    depth = box_in_front_of_wall()
    depth[:20] = 0.0  # sky: no input, so no surface
    trim_px = 2.0
    mesh = depth_to_mesh(depth, K, options("poisson", poisson_trim_px=trim_px))
    assert len(mesh.triangles) > 1000
    points = backproject(depth, K)[depth > 0]
    # Brute-force nearest input point for an even sample of ~500 vertices.
    sample = mesh.vertices_cam[:: max(1, len(mesh.vertices_cam) // 500)]
    distance_squared = ((sample[:, None, :] - points[None, :, :]) ** 2).sum(axis=-1)
    nearest = distance_squared.argmin(axis=1)
    distance = np.sqrt(distance_squared[np.arange(len(sample)), nearest])
    assert (distance <= trim_px * points[nearest, 2] / K[0, 0] + 1e-5).all()
    rendered = render_depth(MeshScene(mesh.vertices_cam, mesh.triangles), K, WIDTH, HEIGHT)
    assert not rendered[:18].any()


def test_grid_stride_keeps_every_kth_pixel():
    depth = np.full((HEIGHT, WIDTH), 10.0, np.float32)
    full = depth_to_mesh(depth, K, options("grid"))
    coarse = depth_to_mesh(depth, K, options("grid", stride=4))
    assert coarse.visible_triangles == 2 * (HEIGHT // 4 - 1) * (WIDTH // 4 - 1)
    assert np.allclose(coarse.vertices_cam, full.vertices_cam.reshape(HEIGHT, WIDTH, 3)[::4, ::4].reshape(-1, 3))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("fill", [0.0, np.nan])
def test_all_invalid_depth_gives_an_empty_mesh_for_every_method(method, fill):
    mesh = depth_to_mesh(np.full((HEIGHT, WIDTH), fill, np.float32), K, options(method))
    assert len(mesh.triangles) == 0 and mesh.visible_triangles == mesh.hidden_triangles == 0
    assert mesh.summary()["method"] == method


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("mesh", "marching", "unknown `mesh` method"),
        ("mesh_stride", 0, "`mesh_stride` must"),
        ("mesh_faces", 0, "`mesh_faces` must"),
        ("poisson_depth", 0, "`poisson_depth` must"),
        ("poisson_trim_px", 0, "`poisson_trim_px` must"),
    ],
)
def test_bad_mesh_options_are_refused_in_one_line(field, value, message):
    """The config names its parameter; the CLI shows the flag (test_layout.py)."""
    with pytest.raises(PipelineError, match=message) as refused:
        GenerateConfig(images="x", **{field: value})
    assert "\n" not in str(refused.value)

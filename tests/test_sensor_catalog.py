"""The sensor catalog: every preset against the datasheet figures in its file, the Risley
scanners' optics, user sensor files and their errors, and `simlidar sensors`."""

import numpy as np
import pytest
from PIL import Image
from simlidar.sensors import RisleyLidar, SensorSpecError, available_sensors, configure_sensor, load_sensor
from simlidar.sensors.catalog import CATALOG_DIR
from simlidar.sensors.risley import refract

PRESETS = [
    "hdl64",
    "hdl64-kitti",
    "hdl32",
    "vlp16",
    "vlp16-hires",
    "vlp32c",
    "vls128",
    "os0",
    "os1",
    "os2",
    "pandar64",
    "pandarqt",
    "mid40",
    "mid70",
    "avia",
]


def test_the_catalog_holds_every_preset():
    assert set(PRESETS) <= set(available_sensors())


@pytest.mark.parametrize("name", PRESETS)
def test_preset_matches_the_published_figures_in_its_file(name):
    sensor = load_sensor(name)
    published = sensor.published
    assert sensor.name == name and len(sensor.source) > 80
    assert sensor.channels == published["channels"]
    assert sensor.points_per_frame == pytest.approx(published["points_per_frame"], rel=0.05)
    if isinstance(sensor, RisleyLidar):
        horizontal, vertical = sensor.field_of_view_deg()
        assert horizontal == pytest.approx(published["horizontal_fov_deg"], abs=0.5)
        assert vertical == pytest.approx(published["vertical_fov_deg"], abs=0.5)
    else:
        top, bottom = sensor.vertical_fov_deg
        assert top == pytest.approx(published["top_deg"], abs=0.25)
        assert bottom == pytest.approx(published["bottom_deg"], abs=0.25)


def test_spinning_tables_the_issue_spells_out():
    hdl32 = load_sensor("hdl32").elevations_deg
    assert np.allclose(np.diff(hdl32), -1.3333, atol=1e-3)
    hires = load_sensor("vlp16-hires").elevations_deg
    assert hires[0] == 10.0 and hires[-1] == -10.0
    vlp32c = np.asarray(load_sensor("vlp32c").elevations_deg)
    steps = -np.diff(vlp32c)
    # 1/3 deg steps from +1.67 to -4 deg, wider above and below.
    near_horizon = (vlp32c[1:] >= -4.01) & (vlp32c[:-1] <= 1.67)
    assert steps[near_horizon].max() < 0.5 < steps.max()
    pandar = np.asarray(load_sensor("pandar64").elevations_deg)
    between = pandar[(pandar <= 2.1) & (pandar >= -6.1)]
    assert np.allclose(-np.diff(between), 0.167, atol=0.01)
    ouster = {name: load_sensor(name) for name in ("os0", "os1", "os2")}
    assert [s.vertical_fov_deg[0] - s.vertical_fov_deg[1] for s in ouster.values()] == [90.0, 45.0, 22.5]
    assert all(s.columns == 1024 for s in ouster.values())


def test_per_channel_azimuth_offsets_move_the_rays():
    sensor = load_sensor("vlp32c")
    directions, ring = sensor.ray_directions(0.0)
    azimuth = np.rad2deg(np.arctan2(directions[:, 1], directions[:, 0]))
    first_column = np.arange(sensor.channels) * sensor.columns
    expected = -180.0 + np.asarray(sensor.azimuth_offsets_deg)
    assert np.allclose((azimuth[first_column] - expected + 180) % 360 - 180, 0.0, atol=1e-9)
    assert set(np.round(np.abs(sensor.azimuth_offsets_deg), 1)) == {1.4, 4.2}


def test_thin_wedge_deviates_by_n_minus_one_times_its_angle():
    wedge = np.deg2rad(1.0)
    glass = 1.5
    tilted = np.array([np.sin(wedge), 0.0, np.cos(wedge)])
    inside = refract(np.array([[0.0, 0.0, 1.0]]), np.array([0.0, 0.0, 1.0]), 1 / glass)
    out = refract(inside, tilted, glass)[0]
    assert np.rad2deg(np.arccos(out[2])) == pytest.approx((glass - 1) * 1.0, rel=0.01)


def test_risley_coverage_grows_with_integration_time():
    base = load_sensor("mid40")
    coverage = {}
    for seconds in (0.1, 1.0):
        directions = configure_sensor(base, integration_time_s=seconds).fire(np.random.default_rng(0)).directions_lidar
        azimuth = np.rad2deg(np.arctan2(directions[:, 1], directions[:, 0]))
        elevation = np.rad2deg(np.arcsin(directions[:, 2]))
        # Share of 0.5 deg cells inside the 38.4 deg circle that hold at least one ray.
        cells = {(a, e) for a, e in zip(np.floor(azimuth / 0.5), np.floor(elevation / 0.5), strict=True)}
        centres = np.arange(-19.0, 19.0, 0.5) + 0.25
        inside = np.hypot(*np.meshgrid(centres, centres)) < 19.0
        coverage[seconds] = len(cells) / inside.sum()
    assert len(directions) == 100_000
    assert coverage[1.0] > 1.5 * coverage[0.1]
    assert coverage[0.1] > 0.2


def test_risley_frames_are_seeded_and_stay_inside_the_fov():
    sensor = load_sensor("avia")
    first, again, other = (sensor.fire(np.random.default_rng(seed)) for seed in (1, 1, 2))
    assert np.array_equal(first.directions_lidar, again.directions_lidar)
    assert first.phase == again.phase != other.phase
    assert not np.array_equal(first.directions_lidar, other.directions_lidar)
    azimuth = np.rad2deg(np.arctan2(first.directions_lidar[:, 1], first.directions_lidar[:, 0]))
    elevation = np.rad2deg(np.arcsin(first.directions_lidar[:, 2]))
    assert np.abs(azimuth).max() <= 35.4 and np.abs(elevation).max() <= 38.7
    assert sorted(set(first.ring.tolist())) == list(range(6))


def _vlp16_text():
    return (CATALOG_DIR / "vlp16.toml").read_text()


def _mid40_text():
    return (CATALOG_DIR / "mid40.toml").read_text()


def test_a_users_sensor_file_loads_by_path(tmp_path):
    path = tmp_path / "my_lidar.toml"
    text = _vlp16_text().replace('name = "vlp16"', 'name = "my_lidar"')
    path.write_text(text.replace("max_m = 100.0", "max_m = 60.0"))
    sensor = load_sensor(str(path))
    assert (sensor.name, sensor.channels, sensor.max_range_m) == ("my_lidar", 16, 60.0)
    assert sensor.spec_hash() != load_sensor("vlp16").spec_hash()


@pytest.mark.parametrize(
    "text, field",
    [
        (_vlp16_text().replace("range_noise_m = 0.03", ""), "returns.range_noise_m"),
        (_vlp16_text().replace('mode = "strongest"', 'mode = "loudest"'), "returns.mode"),
        (_vlp16_text().replace("drop_rate = 0.0", "drop_rate = 1.5"), "returns.drop_rate"),
        (_vlp16_text().replace("rotation_hz = 10.0", "rotation_hz = 10.0\nspeed = 3"), "scan.speed"),
        (_vlp16_text().replace('kind = "spinning"', 'kind = "flash"'), "kind"),
        (_mid40_text().replace("rotor_rpm = [7294.0, -4664.0]", "rotor_rpm = [7294.0]"), "prisms.rotor_rpm"),
        (_mid40_text().replace("rotor_rpm = [7294.0, -4664.0]", "rotor_rpm = [5000, 5000]"), "prisms.rotor_rpm"),
        (_mid40_text().replace("refractive_index = 1.51", "refractive_index = 0.9"), "prisms.refractive_index"),
        (_mid40_text().replace("wedge_deg = [18.0, 18.0]", "wedge_deg = [45.0, 45.0]"), "prisms.wedge_deg"),
        (_mid40_text().replace("integration_time_s = 0.1", "integration_time_s = -1"), "scan.integration_time_s"),
        (_mid40_text().replace("min_m = 1.0", "min_m = -0.5"), "range.min_m"),
        (_mid40_text().replace("elevation_deg = [0]", "elevation_deg = [45]"), "emitters.elevation_deg[0]"),
    ],
)
def test_bad_sensor_files_name_the_file_and_the_field(tmp_path, text, field):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(SensorSpecError) as raised:
        load_sensor(str(path))
    message = str(raised.value)
    assert message.startswith(str(path)) and f"'{field}'" in message and "\n" not in message


def test_integration_time_is_refused_for_a_spinning_sensor():
    with pytest.raises(SensorSpecError, match="`integration_time_s` applies to non-repetitive"):
        configure_sensor(load_sensor("hdl64"), integration_time_s=0.5)
    with pytest.raises(SensorSpecError, match="returns must be one of"):
        configure_sensor(load_sensor("hdl64"), returns="loudest")


def test_sensors_list_and_show(cli, tmp_path):
    code, out, err = cli("sensors", "list")
    assert code == 0, err
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:-1]}
    assert set(rows) == set(available_sensors())
    assert rows["hdl64"][1:5] == ["spinning", "64", "+2.0..-24.7", "360.0"] and rows["hdl64"][5] == "133312"
    assert rows["mid40"][1:3] == ["risley", "1"] and rows["mid40"][4] == "38.4"
    code, out, err = cli("sensors", "show", "vlp16")
    assert code == 0 and "channels 16" in out and "Velodyne VLP-16" in out and "detection_range_m 50.0" in out
    code, _, err = cli("sensors", "show", "hdl65")
    assert code == 2 and "unknown sensor 'hdl65'" in err and "mid40" in err


def test_sensors_show_draws_the_pattern_and_a_frame(cli, tmp_path):
    picture = tmp_path / "mid40.png"
    code, out, err = cli("sensors", "show", "mid40", "--plot", picture)
    assert code == 0, err
    image = np.asarray(Image.open(picture).convert("RGB"))
    # The pattern's axes (360 px high) over the frame over the scene (1242 x 375 drawn 1220 wide).
    assert image.shape == (360 + round(375 * 1220 / 1242) + 4 * 40, 1300 + 110, 3)
    pattern = image[40:400, 70:1260]
    assert (pattern.sum(axis=2) < 600).mean() > 0.02
    # The camera's view, outlined in black (no ray's colour is that dark).
    assert (pattern.max(axis=2) < 40).sum() > 500

"""Sensor files from the maker's per-unit figures: an Ouster metadata JSON and a
Velodyne-style per-laser table, checked against the makers' own point formulas."""

import json
from pathlib import Path

import numpy as np
import pytest
import tomllib
from simlidar.sensors import SensorSpecError, load_sensor
from simlidar.sensors.maker_metadata import ouster_spec, velodyne_table_spec, write_sensor_file

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
OUSTER = DATA / "ouster" / "OS-1-128_v2.3.0_1024x10.json"


@pytest.mark.skipif(not OUSTER.is_file(), reason="needs ../shared/data/ouster/OS-1-128_v2.3.0_1024x10.json")
def test_ouster_import_reproduces_the_metadatas_angles_and_points(tmp_path):
    metadata = json.loads(OUSTER.read_text())
    written = write_sensor_file(ouster_spec(metadata, "os1-128-unit", label=OUSTER.name), tmp_path / "os.toml")
    sensor = load_sensor(str(tmp_path / "os.toml"))
    assert sensor == written and sensor.name == "os1-128-unit"
    assert sensor.elevations_deg == tuple(metadata["beam_altitude_angles"])
    assert (sensor.channels, sensor.columns, sensor.rotation_hz) == (128, 1024, 10.0)
    assert sensor.default_mount == load_sensor("os1").default_mount
    # Ouster's formula for a return of range r (mm, from the lidar origin) of beam i at
    # encoder angle theta: n = lidar_origin_to_beam_origin_mm,
    # x = (r - n) cos(theta - az_i) cos(alt_i) + n cos(theta), y likewise with sin, z = (r - n) sin(alt_i).
    n = metadata["lidar_origin_to_beam_origin_mm"] / 1000.0
    altitude = np.deg2rad(np.asarray(metadata["beam_altitude_angles"]))[:, None]
    azimuth = np.deg2rad(np.asarray(metadata["beam_azimuth_angles"]))[:, None]
    theta = sensor.column_azimuths(0.3)[None, :]
    range_m = 7.5
    ouster_points = np.stack(
        np.broadcast_arrays(
            (range_m - n) * np.cos(theta - azimuth) * np.cos(altitude) + n * np.cos(theta),
            (range_m - n) * np.sin(theta - azimuth) * np.cos(altitude) + n * np.sin(theta),
            (range_m - n) * np.sin(altitude),
        ),
        axis=-1,
    ).reshape(-1, 3)
    directions, _ = sensor.ray_directions(0.3)
    ours = sensor.ray_origins(0.3) + (range_m - n) * directions
    np.testing.assert_allclose(ours, ouster_points, atol=1e-12)


def velodyne_laser_point(laser: dict, encoder_rad: float, distance_m: float) -> np.ndarray:
    """Velodyne's driver formula (angles clockwise from y forward, x right), turned into this
    project's LiDAR frame (x forward, y left)."""
    vertical = np.deg2rad(laser["vert_correction_deg"])
    rotation = -encoder_rad - np.deg2rad(laser["rot_correction_deg"])
    xy = distance_m * np.cos(vertical) - laser["vert_offset_m"] * np.sin(vertical)
    x_right = xy * np.sin(rotation) - laser["horiz_offset_m"] * np.cos(rotation)
    y_forward = xy * np.cos(rotation) + laser["horiz_offset_m"] * np.sin(rotation)
    z = distance_m * np.sin(vertical) + laser["vert_offset_m"] * np.cos(vertical)
    return np.array([y_forward, -x_right, z])


LASERS = [
    {
        "id": 0,
        "vert_correction_deg": -7.15,
        "rot_correction_deg": -4.2,
        "vert_offset_m": 0.198,
        "horiz_offset_m": 0.026,
    },
    {"id": 1, "vert_correction_deg": -6.8, "rot_correction_deg": 1.1, "vert_offset_m": 0.199, "horiz_offset_m": -0.026},
    {"id": 2, "vert_correction_deg": 2.0, "rot_correction_deg": 3.0, "vert_offset_m": 0.21, "horiz_offset_m": 0.026},
]


def velodyne_table(lasers=LASERS) -> dict:
    return {"name": "my-hdl64", "description": "three lasers", "source": "db.xml of unit 1234", "laser": lasers}


def test_velodyne_table_lasers_fire_from_where_velodynes_formula_puts_them(tmp_path):
    sensor = write_sensor_file(velodyne_table_spec(velodyne_table()), tmp_path / "v.toml")
    assert sensor.elevations_deg == (2.0, -6.8, -7.15)
    assert sensor.azimuth_offsets_deg == (3.0, 1.1, -4.2)
    assert sensor.azimuth_step_deg == load_sensor("hdl64").azimuth_step_deg
    directions, ring = sensor.ray_directions(0.0)
    origins = sensor.ray_origins(0.0)
    encoder = np.tile(sensor.column_azimuths(0.0), sensor.channels)
    for laser, row in zip(LASERS, (2, 1, 0), strict=True):
        for column in (0, 500, 1500):
            index = row * sensor.columns + column
            expected = velodyne_laser_point(laser, encoder[index], 12.0)
            np.testing.assert_allclose(origins[index] + 12.0 * directions[index], expected, atol=1e-12)
    assert tomllib.loads((tmp_path / "v.toml").read_text())["name"] == "my-hdl64"


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (velodyne_table([{"rot_correction_deg": 1.0}]), r"field 'laser\[0\].vert_correction_deg' must be a number"),
        (velodyne_table([{"vert_correction_deg": 1.0, "tilt": 2}]), r"laser\[0\] has unknown field 'tilt'"),
        (velodyne_table([]), r"needs one \[\[laser\]\] table per laser"),
        ({"laser": LASERS}, "missing field 'name'"),
        ({**velodyne_table(), "like": "nope"}, "t.toml: field 'like' must name a catalog sensor, got 'nope'"),
    ],
)
def test_bad_velodyne_tables_are_one_line_errors(table, message):
    with pytest.raises(SensorSpecError, match=message):
        velodyne_table_spec(table, label="t.toml")


def test_the_written_file_is_validated_first_and_nothing_is_left_on_error(tmp_path):
    twins = [{**LASERS[0]}, {**LASERS[0], "id": 1}]
    with pytest.raises(SensorSpecError, match="v.toml: field 'beams.elevation_deg' must run top to bottom"):
        write_sensor_file(velodyne_table_spec(velodyne_table(twins)), tmp_path / "v.toml")
    assert list(tmp_path.iterdir()) == []


def test_bad_ouster_metadata_names_the_field():
    with pytest.raises(SensorSpecError, match="meta.json: missing field 'beam_altitude_angles'"):
        ouster_spec({"lidar_mode": "1024x10"}, "x", label="meta.json")
    metadata = {"beam_altitude_angles": [1.0], "beam_azimuth_angles": [0.0], "lidar_origin_to_beam_origin_mm": 15.8}
    with pytest.raises(SensorSpecError, match="`like` must name a catalog sensor, got 'os9'"):
        ouster_spec({**metadata, "lidar_mode": "1024x10"}, "x", like="os9")
    with pytest.raises(SensorSpecError, match="lidar_mode must read COLUMNSxHZ"):
        ouster_spec({**metadata, "lidar_mode": "fast"}, "x", label="meta.json")
    with pytest.raises(SensorSpecError, match="must be lists of one length"):
        ouster_spec({**metadata, "beam_azimuth_angles": [0.0, 1.0], "lidar_mode": "512x20"}, "x", label="meta.json")


@pytest.mark.skipif(not OUSTER.is_file(), reason="needs ../shared/data/ouster/OS-1-128_v2.3.0_1024x10.json")
def test_sensors_import_commands_write_sensor_files(cli, tmp_path):
    code, out, err = cli("sensors", "import", "ouster", OUSTER, "--out", tmp_path / "unit.toml")
    assert code == 0, err
    assert "unit, 128 beams, 1024 columns" in out and load_sensor(str(tmp_path / "unit.toml")).channels == 128
    code, _, err = cli("sensors", "import", "ouster", tmp_path / "unit.toml", "--out", tmp_path / "x.toml")
    assert code == 1 and err.count("\n") == 1 and "cannot read it as JSON" in err
    table = tmp_path / "lasers.toml"
    table.write_text(
        'name = "mine"\ndescription = "one laser"\nsource = "hand"\n[[laser]]\nvert_correction_deg = -3.0\n'
        "vert_offset_m = 0.2\n"
    )
    code, out, err = cli("sensors", "import", "velodyne", table, "--out", tmp_path / "v.toml")
    assert code == 0, err
    sensor = load_sensor(str(tmp_path / "v.toml"))
    assert sensor.elevations_deg == (-3.0,) and sensor.laser_origins_m[0][2] == pytest.approx(
        0.2 * np.cos(np.deg2rad(3))
    )
    code, out, err = cli("sensors", "show", tmp_path / "v.toml")
    assert "per-laser origins (forward, left, up), up to 0.200 m" in out

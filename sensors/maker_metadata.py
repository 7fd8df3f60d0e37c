"""Sensor files from the maker's own per-unit figures: an Ouster sensor's metadata JSON,
or a Velodyne-style per-laser table (TOML, below). The beams come from the unit; range,
scan rate and return effects from a catalog preset (`like`). The result is a sensor file
that load_sensor reads, validated before it is written.

Ouster (metadata of firmware 2.x, or the SDK's newer nested layout): `beam_altitude_angles`
become the elevations; `beam_azimuth_angles` the azimuth offsets with their sign turned
(Ouster measures them clockwise, this catalog counter-clockwise: a beam fires at the
encoder angle minus its azimuth angle); `lidar_origin_to_beam_origin_mm` every laser's
forward origin (the beam origin sits that far from the axis along the encoder angle);
`lidar_mode` or `data_format` the columns and rate. Points are in Ouster's lidar frame
(not its sensor frame, 36.18 mm higher and turned 180 deg on an OS-1).

Velodyne-style table (what a db.xml or VeloView calibration lists), one `[[laser]]` per
laser in any order (they are sorted top to bottom):

    name = "my-hdl64"                 # the sensor's name
    description = "..."               # one line
    source = "..."                    # where the figures come from (unit serial, file)
    like = "hdl64"                    # catalog preset giving scan, range, returns, mount

    [[laser]]
    vert_correction_deg = -7.15       # elevation of the beam (db.xml vertCorrection)
    rot_correction_deg = -4.2         # azimuth offset, counter-clockwise seen from above (rotCorrection)
    vert_offset_m = 0.198             # origin offset perpendicular to the beam, upward (vertOffsetCorrection, m)
    horiz_offset_m = 0.026            # origin offset to the beam's left (horizOffsetCorrection, m)

A laser then fires from vert_offset (-sin v, 0, cos v) + horiz_offset (0, 1, 0) in its own
beam's frame (forward, left, up), which is the point Velodyne's drivers add to range x
direction; the file records it in the head's frame.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import tomllib

from .catalog import CATALOG_DIR, Sensor, SensorSpecError, sensor_from_dict

# Ouster product line ("OS-1-128", "OS1-64": dashes dropped, first three letters) -> preset.
OUSTER_PRESETS = {"OS0": "os0", "OS1": "os1", "OS2": "os2"}
_TABLE_ORDER = ("range", "scan", "beams", "returns", "published")
_LASER_FIELDS = {"vert_correction_deg", "rot_correction_deg", "vert_offset_m", "horiz_offset_m"}
# [beams] fields of an imported Velodyne table, in the order of _velodyne_laser's figures.
_LASER_COLUMNS = ("elevation_deg", "azimuth_offset_deg", "origin_forward_m", "origin_left_m", "origin_up_m")


def preset_spec(name: str) -> dict:
    """The parsed TOML of catalog preset `name` (a dict, as in the file)."""
    path = CATALOG_DIR / f"{name}.toml"
    if not path.is_file():
        raise SensorSpecError(f"`like` must name a catalog sensor, got {name!r}")
    return tomllib.loads(path.read_text())


def ouster_spec(metadata: dict, name: str, like: str | None = None, label: str = "Ouster metadata") -> dict:
    """A sensor file's dict from an Ouster metadata dict (see the module docstring);
    `like` defaults to the catalog preset of the product line (os0, os1 or os2); `label`
    names the metadata (a file name) in the sensor's source."""
    beams = _section(metadata, "beam_intrinsics", label)
    info = _section(metadata, "sensor_info", label)
    product = str(info.get("prod_line", "Ouster"))
    altitudes = _numbers(_required(beams, "beam_altitude_angles", label), "beam_altitude_angles", label)
    azimuths = _numbers(_required(beams, "beam_azimuth_angles", label), "beam_azimuth_angles", label)
    origin_mm = _numbers(
        [_required(beams, "lidar_origin_to_beam_origin_mm", label)], "lidar_origin_to_beam_origin_mm", label
    )[0]
    if len(altitudes) != len(azimuths):
        raise SensorSpecError(f"{label}: beam_altitude_angles and beam_azimuth_angles must be lists of one length")
    columns, rotation_hz, fov_deg = _ouster_scan(metadata, label)
    like = like or OUSTER_PRESETS.get(product.replace("-", "")[:3].upper(), "os1")
    spec = _base(preset_spec(like))
    serial = info.get("prod_sn", "")
    spec.update(
        name=name,
        description=f"Ouster {product} {serial}, {len(altitudes)} beams, {columns} columns, {rotation_hz:g} Hz "
        "(from its metadata)",
        source=f"{label}: {product} serial {serial}, firmware {info.get('build_rev', '?')}: per-beam altitude and "
        f"azimuth angles and lidar_origin_to_beam_origin_mm ({origin_mm} mm) of this unit. Range, returns and mount "
        f"as the catalog's {like}.",
    )
    spec["scan"] = {"columns": columns, "horizontal_fov_deg": fov_deg, "rotation_hz": rotation_hz}
    spec["beams"] = {
        "elevation_deg": altitudes,
        "azimuth_offset_deg": [-value for value in azimuths],
        "origin_forward_m": [origin_mm / 1000.0] * len(altitudes),
    }
    return spec


def velodyne_table_spec(table: dict, label: str = "Velodyne table") -> dict:
    """A sensor file's dict from a Velodyne-style per-laser table (see the module docstring)."""
    lasers = table.get("laser")
    if not isinstance(lasers, list) or not lasers or not all(isinstance(laser, dict) for laser in lasers):
        raise SensorSpecError(f"{label}: needs one [[laser]] table per laser")
    for key in ("name", "description", "source"):
        if not isinstance(table.get(key), str) or not table[key]:
            raise SensorSpecError(f"{label}: missing field '{key}' (a string)")
    like = table.get("like", "hdl64")
    if not isinstance(like, str) or not (CATALOG_DIR / f"{like}.toml").is_file():
        raise SensorSpecError(f"{label}: field 'like' must name a catalog sensor, got {like!r}")
    rows = [_velodyne_laser(laser, index, label) for index, laser in enumerate(lasers)]
    rows.sort(key=lambda row: -row[0])
    spec = _base(preset_spec(like))
    spec.update(name=table["name"], description=table["description"], source=table["source"])
    spec["beams"] = {key: list(column) for key, column in zip(_LASER_COLUMNS, zip(*rows, strict=True), strict=True)}
    return spec


def write_sensor_file(spec: dict, path: str | Path) -> Sensor:
    """Validate `spec` as a sensor file (SensorSpecError naming the field otherwise), then
    write it to `path` as TOML (whole or not at all); returns the sensor it describes."""
    path = Path(path)
    sensor_from_dict(spec, path)
    text = sensor_toml(spec)
    if tomllib.loads(text) != spec:
        raise SensorSpecError(f"{path}: the sensor cannot be written as TOML as given (nested or odd values)")
    return write_sensor_text(text, path)


def write_sensor_text(text: str, path: str | Path) -> Sensor:
    """Validate a sensor file's TOML text (SensorSpecError naming the field otherwise), then
    write it to `path` (whole or not at all); returns the sensor it describes."""
    path = Path(path)
    try:
        sensor = sensor_from_dict(tomllib.loads(text), path)
    except tomllib.TOMLDecodeError as error:
        raise SensorSpecError(f"{path}: not valid TOML ({error})") from None
    partial = path.with_name(path.name + ".tmp")
    try:
        partial.write_text(text)
        os.replace(partial, path)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise SensorSpecError(
            f"cannot write {path} ({error.strerror or error}); give a file in a folder that exists"
        ) from None
    return sensor


def sensor_toml(spec: dict) -> str:
    """TOML text of a sensor file's dict: top-level strings, then its tables of numbers,
    strings and lists of numbers (lists wrapped eight to a line)."""
    lines = [f"{key} = {_toml_value(value)}" for key, value in spec.items() if not isinstance(value, dict)]
    for table in sorted((key for key in spec if isinstance(spec[key], dict)), key=_table_rank):
        lines += ["", f"[{table}]"]
        lines += [f"{key} = {_toml_value(value)}" for key, value in spec[table].items()]
    return "\n".join(lines) + "\n"


def _toml_value(value) -> str:
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        items = [_toml_value(item) for item in value]
        rows = [", ".join(items[start : start + 8]) for start in range(0, len(items), 8)]
        return "[\n" + "".join(f"    {row},\n" for row in rows) + "]"
    return repr(value)


def _table_rank(name: str) -> int:
    return _TABLE_ORDER.index(name) if name in _TABLE_ORDER else len(_TABLE_ORDER)


def _base(preset: dict) -> dict:
    """What an imported sensor keeps of its `like` preset: kind, mount, range, scan, returns."""
    keep = ("kind", "default_mount", "range", "scan", "returns")
    return {"name": "", "description": "", "source": "", **{key: preset[key] for key in keep if key in preset}}


def _section(metadata: dict, key: str, label: str) -> dict:
    """metadata[key] of the SDK's nested layout, or the metadata itself (firmware 2.x's flat one)."""
    section = metadata.get(key, metadata)
    if not isinstance(section, dict):
        raise SensorSpecError(f"{label}: {key} must be an object, got {json.dumps(section)[:40]}")
    return section


def _numbers(values, key: str, label: str) -> list[float]:
    """`values` as finite floats, or SensorSpecError naming the field and the first bad value."""
    if not isinstance(values, list) or not values:
        raise SensorSpecError(f"{label}: {key} must be a list of numbers, got {json.dumps(values)[:40]}")
    numbers = []
    for index, value in enumerate(values):
        number = _finite(value)
        if number is None:
            raise SensorSpecError(f"{label}: {key}[{index}] must be a finite number, got {json.dumps(value)[:40]}")
        numbers.append(number)
    return numbers


def _finite(value) -> float | None:
    """A JSON number as a finite float (None for anything else, a 400-digit integer included)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _required(metadata: dict, key: str, label: str):
    if key not in metadata:
        raise SensorSpecError(f"{label}: missing field '{key}' (is this an Ouster sensor's metadata JSON?)")
    return metadata[key]


def _ouster_scan(metadata: dict, label: str) -> tuple[int, float, float]:
    """(columns in the window, rotation Hz, horizontal FOV deg) from lidar_mode / data_format."""
    mode = _section(metadata, "config_params", label).get("lidar_mode", "")
    data_format = metadata.get("lidar_data_format", metadata.get("data_format", {}))
    if not isinstance(data_format, dict):
        raise SensorSpecError(f"{label}: data_format must be an object, got {json.dumps(data_format)[:40]}")
    per_turn, _, rate = str(mode).partition("x")
    if not (per_turn.isdigit() and rate.isdigit() and int(per_turn) > 0 and int(rate) > 0):
        raise SensorSpecError(f"{label}: lidar_mode must read COLUMNSxHZ (e.g. 1024x10), got {mode!r}")
    window = data_format.get("column_window", [0, int(per_turn) - 1])
    if not (isinstance(window, list) and len(window) == 2 and all(type(end) is int for end in window)):
        raise SensorSpecError(
            f"{label}: column_window must be [first, last] column numbers, got {json.dumps(window)[:40]}"
        )
    first, last = window
    columns = last - first + 1
    if not (0 <= first and 0 < columns <= int(per_turn)):
        raise SensorSpecError(f"{label}: column_window {[first, last]} does not fit {per_turn} columns per turn")
    return columns, float(rate), 360.0 * columns / int(per_turn)


def _velodyne_laser(laser: dict, index: int, label: str) -> tuple[float, float, float, float, float]:
    """(elevation deg, azimuth offset deg, origin forward, left, up m) of one [[laser]]."""
    unknown = sorted(set(laser) - _LASER_FIELDS - {"id"})
    if unknown:
        raise SensorSpecError(f"{label}: laser[{index}] has unknown field '{unknown[0]}'")
    values = {}
    for key in _LASER_FIELDS:
        value = laser.get(key, 0.0 if key != "vert_correction_deg" else None)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise SensorSpecError(f"{label}: field 'laser[{index}].{key}' must be a number, got {value!r}")
        values[key] = float(value)
    elevation = math.radians(values["vert_correction_deg"])
    azimuth = math.radians(values["rot_correction_deg"])
    vertical, horizontal = values["vert_offset_m"], values["horiz_offset_m"]
    along_beam = -vertical * math.sin(elevation)
    forward = along_beam * math.cos(azimuth) - horizontal * math.sin(azimuth)
    left = along_beam * math.sin(azimuth) + horizontal * math.cos(azimuth)
    return (values["vert_correction_deg"], values["rot_correction_deg"], forward, left, vertical * math.cos(elevation))

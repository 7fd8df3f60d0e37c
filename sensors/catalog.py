"""The catalog of real sensors: one TOML file per sensor in `catalog/`, validated on load."""

from __future__ import annotations

import math
from pathlib import Path

import tomllib

from .mount import MOUNTS
from .spinning import SpinningLidar

CATALOG_DIR = Path(__file__).parent / "catalog"


class SensorSpecError(ValueError):
    """A sensor name that is not in the catalog, or a sensor file with a bad field."""


def available_sensors() -> list[str]:
    return sorted(path.stem for path in CATALOG_DIR.glob("*.toml"))


def load_sensor(name_or_path: str) -> SpinningLidar:
    """Load a sensor by catalog name (`hdl64`) or from a TOML file path."""
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = CATALOG_DIR / f"{name_or_path}.toml"
        if not path.is_file():
            known = ", ".join(available_sensors())
            raise SensorSpecError(
                f"unknown sensor {name_or_path!r}; known sensors: {known} (or a path to a .toml file)"
            )
    elif not path.is_file():
        raise SensorSpecError(f"sensor file {path} does not exist")
    try:
        spec = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise SensorSpecError(f"{path}: not valid TOML ({error})") from None
    return _spinning_from_dict(spec, path)


def _field(spec: dict, dotted: str, kind: type, path: Path):
    value = spec
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            raise SensorSpecError(f"{path}: missing field '{dotted}'")
        value = value[part]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise SensorSpecError(f"{path}: field '{dotted}' must be a {kind.__name__}, got {value!r}")
    if kind is float and not math.isfinite(value):
        raise SensorSpecError(f"{path}: field '{dotted}' must be finite, got {value!r}")
    return value


def _spinning_from_dict(spec: dict, path: Path) -> SpinningLidar:
    kind = _field(spec, "kind", str, path)
    if kind != "spinning":
        raise SensorSpecError(f"{path}: field 'kind' must be 'spinning', got {kind!r}")
    elevations = _field(spec, "beams.elevation_deg", list, path)
    if len(elevations) < 1:
        raise SensorSpecError(f"{path}: field 'beams.elevation_deg' is empty")
    for index, value in enumerate(elevations):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not -90.0 < value < 90.0:
            raise SensorSpecError(
                f"{path}: field 'beams.elevation_deg[{index}]' must be a number in (-90, 90), got {value!r}"
            )
    for index in range(1, len(elevations)):
        if elevations[index] >= elevations[index - 1]:
            raise SensorSpecError(
                f"{path}: field 'beams.elevation_deg' must run top to bottom (strictly decreasing); "
                f"entry {index} ({elevations[index]}) is not below entry {index - 1} ({elevations[index - 1]})"
            )
    azimuth_step = _field(spec, "scan.azimuth_step_deg", float, path)
    horizontal_fov = _field(spec, "scan.horizontal_fov_deg", float, path)
    min_range = _field(spec, "range.min_m", float, path)
    max_range = _field(spec, "range.max_m", float, path)
    if not 0.0 < azimuth_step <= 10.0:
        raise SensorSpecError(f"{path}: field 'scan.azimuth_step_deg' must be in (0, 10], got {azimuth_step}")
    if not 0.0 < horizontal_fov <= 360.0:
        raise SensorSpecError(f"{path}: field 'scan.horizontal_fov_deg' must be in (0, 360], got {horizontal_fov}")
    if min_range < 0.0:
        raise SensorSpecError(f"{path}: field 'range.min_m' must not be negative, got {min_range}")
    if max_range <= min_range:
        raise SensorSpecError(f"{path}: field 'range.max_m' ({max_range}) must exceed 'range.min_m' ({min_range})")
    mount = _field(spec, "default_mount", str, path)
    if mount not in MOUNTS:
        raise SensorSpecError(f"{path}: field 'default_mount' must be one of {', '.join(MOUNTS)}, got {mount!r}")
    return SpinningLidar(
        name=_field(spec, "name", str, path),
        description=_field(spec, "description", str, path),
        source=_field(spec, "source", str, path),
        elevations_deg=tuple(float(value) for value in elevations),
        azimuth_step_deg=azimuth_step,
        horizontal_fov_deg=horizontal_fov,
        min_range_m=min_range,
        max_range_m=max_range,
        default_mount=mount,
    )

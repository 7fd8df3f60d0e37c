"""The catalog of real sensors: one TOML file per sensor in `catalog/`, validated on load.

A file names its kind (`spinning` or `risley`), the figures of its rays, its range,
its return effects and, for the catalog's presets, the datasheet figures the model is
tested against (`[published]`). Any bad field is a one-line SensorSpecError that names
the file and the field.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import tomllib

from .effects import RETURN_MODES, ReturnEffects
from .files import read_text_file
from .mount import MOUNTS
from .ray_drop import FittedRayDrop
from .risley import RisleyLidar
from .spinning import SpinningLidar

CATALOG_DIR = Path(__file__).parent / "catalog"
# Per-laser origin offsets in a spinning sensor's [beams], metres in the head's frame
# (SpinningLidar.laser_origins_m); a laser origin farther than this from the LiDAR frame's
# origin is a typo (mm for m), not a sensor.
LASER_ORIGIN_FIELDS = ("origin_forward_m", "origin_left_m", "origin_up_m")
MAX_LASER_ORIGIN_M = 1.0
KINDS = ("spinning", "risley")
# One frame's rays (points x sub-rays) are cast at once: this bound keeps a frame's
# arrays (directions, origins, hits, returns) to a few GB; the catalog's largest is 230k.
MAX_RAYS_PER_FRAME = 16_000_000
Sensor = SpinningLidar | RisleyLidar

_COMMON = {"name", "kind", "description", "source", "default_mount", "range", "returns", "published", "ray_drop"}
_ALLOWED = {
    "spinning": {
        "": _COMMON | {"scan", "beams"},
        "scan": {"azimuth_step_deg", "columns", "horizontal_fov_deg", "rotation_hz"},
        "beams": {
            "elevation_deg",
            "top_deg",
            "bottom_deg",
            "channels",
            "azimuth_offset_deg",
            *LASER_ORIGIN_FIELDS,
        },
    },
    "risley": {
        "": _COMMON | {"scan", "prisms", "emitters"},
        "scan": {"point_rate_hz", "integration_time_s"},
        "prisms": {"rotor_rpm", "wedge_deg", "refractive_index"},
        "emitters": {"elevation_deg", "azimuth_deg"},
    },
}
_ALLOWED_COMMON = {
    "range": {"min_m", "max_m"},
    "returns": {
        "range_noise_m",
        "drop_rate",
        "detection_range_m",
        "divergence_mrad",
        "sub_rays",
        "mode",
        "echo_separation_m",
    },
    "ray_drop": {
        "source",
        "rays",
        "returns",
        "laser_logit",
        "range_coefficient",
        "incidence_coefficient",
        "luma_coefficient",
        "greenness_coefficient",
    },
    "published": {
        "channels",
        "top_deg",
        "bottom_deg",
        "points_per_frame",
        "horizontal_fov_deg",
        "vertical_fov_deg",
        "point_rate_hz",
    },
}


class SensorSpecError(ValueError):
    """A sensor name that is not in the catalog, or a sensor file with a bad field."""


def available_sensors() -> list[str]:
    return sorted(path.stem for path in CATALOG_DIR.glob("*.toml"))


def load_sensor(name_or_path: str) -> Sensor:
    """Load a sensor by catalog name (`hdl64`) or from a TOML file path."""
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = CATALOG_DIR / f"{name_or_path}.toml"
        if not path.is_file():
            known = ", ".join(available_sensors())
            raise SensorSpecError(
                f"unknown sensor {name_or_path!r}; known sensors: {known} (or a path to a .toml file)"
            )
    text = read_text_file(path, "sensor file", SensorSpecError)
    try:
        spec = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise SensorSpecError(f"{path}: not valid TOML ({error})") from None
    return sensor_from_dict(spec, path)


def configure_sensor(sensor: Sensor, integration_time_s: float | None = None, **effects) -> Sensor:
    """The sensor with some return effects (ReturnEffects field names) and, for a Risley
    scanner, the integration time replaced; None values keep the sensor file's figure."""
    given = {name: value for name, value in effects.items() if value is not None}
    unknown = sorted(set(given) - {f.name for f in dataclasses.fields(ReturnEffects)})
    if unknown:
        raise SensorSpecError(f"unknown return effects: {', '.join(unknown)}")
    new_effects = dataclasses.replace(sensor.effects, **given)
    problems = new_effects.problems()
    if problems:
        raise SensorSpecError(f"sensor {sensor.name}: {problems[0][1]}")
    changes = {"effects": new_effects}
    if integration_time_s is not None:
        if not isinstance(sensor, RisleyLidar):
            raise SensorSpecError(
                f"`integration_time_s` applies to non-repetitive (risley) sensors; {sensor.name} is {sensor.kind} "
                "and always integrates one revolution"
            )
        if not 0 < integration_time_s <= 10:
            raise SensorSpecError(f"`integration_time_s` must be in (0, 10] seconds, got {integration_time_s}")
        changes["integration_time_s"] = integration_time_s
    configured = dataclasses.replace(sensor, **changes)
    check_rays_per_frame(configured)
    return configured


def sensor_from_dict(spec: dict, path: Path) -> Sensor:
    """Validate a parsed sensor file (`path` only names it in errors) and build the sensor."""
    kind = _field(spec, "kind", str, path)
    if kind not in KINDS:
        raise SensorSpecError(f"{path}: field 'kind' must be one of {', '.join(KINDS)}, got {kind!r}")
    _reject_unknown_fields(spec, kind, path)
    min_range = _field(spec, "range.min_m", float, path)
    max_range = _field(spec, "range.max_m", float, path)
    if min_range < 0.0:
        raise SensorSpecError(f"{path}: field 'range.min_m' must not be negative, got {min_range}")
    if max_range <= min_range:
        raise SensorSpecError(f"{path}: field 'range.max_m' ({max_range}) must exceed 'range.min_m' ({min_range})")
    mount = _field(spec, "default_mount", str, path)
    if mount not in MOUNTS:
        raise SensorSpecError(f"{path}: field 'default_mount' must be one of {', '.join(MOUNTS)}, got {mount!r}")
    common = {
        "name": _field(spec, "name", str, path),
        "description": _field(spec, "description", str, path),
        "source": _field(spec, "source", str, path),
        "min_range_m": min_range,
        "max_range_m": max_range,
        "default_mount": mount,
        "effects": _effects(spec, path),
        "published": _published(spec, path),
    }
    sensor = _spinning(spec, path, common) if kind == "spinning" else _risley(spec, path, common)
    check_rays_per_frame(sensor, f"{path}: ")
    if _lookup(spec, "ray_drop") is not None:
        sensor = dataclasses.replace(sensor, ray_drop=_ray_drop(spec, path, sensor.channels))
    return sensor


def check_rays_per_frame(sensor: Sensor, where: str = "") -> None:
    """Refuse a sensor whose frame (points x sub-rays) would not fit in memory while cast."""
    rays = sensor.points_per_frame * sensor.effects.active_sub_rays
    if rays > MAX_RAYS_PER_FRAME:
        raise SensorSpecError(
            f"{where}sensor {sensor.name} casts {rays:,} rays per frame ({sensor.points_per_frame:,} points x "
            f"{sensor.effects.active_sub_rays} sub-rays); at most {MAX_RAYS_PER_FRAME:,} fit: use fewer columns or "
            "beams, a larger azimuth step, a shorter integration time or fewer sub-rays"
        )


def _reject_unknown_fields(spec: dict, kind: str, path: Path) -> None:
    allowed = {**_ALLOWED_COMMON, **_ALLOWED[kind]}
    for key in spec:
        if key not in allowed[""]:
            raise SensorSpecError(f"{path}: unknown field '{key}' for a {kind} sensor")
    for table, keys in allowed.items():
        if table and isinstance(spec.get(table), dict):
            for key in spec[table]:
                if key not in keys:
                    raise SensorSpecError(f"{path}: unknown field '{table}.{key}'; known: {', '.join(sorted(keys))}")


def _lookup(spec: dict, dotted: str):
    value = spec
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _field(spec: dict, dotted: str, kind: type, path: Path, default=None):
    value = _lookup(spec, dotted)
    if value is None:
        if default is not None:
            return default
        raise SensorSpecError(f"{path}: missing field '{dotted}'")
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise SensorSpecError(f"{path}: field '{dotted}' must be a {kind.__name__}, got {value!r}")
    if kind is float and not math.isfinite(value):
        raise SensorSpecError(f"{path}: field '{dotted}' must be finite, got {value!r}")
    return value


def _numbers(spec: dict, dotted: str, path: Path, low: float, high: float, length: int | None = None) -> list[float]:
    """A list of numbers each in the open interval (low, high), of `length` when given."""
    values = _field(spec, dotted, list, path)
    if not values:
        raise SensorSpecError(f"{path}: field '{dotted}' is empty")
    if length is not None and len(values) != length:
        raise SensorSpecError(f"{path}: field '{dotted}' must have {length} entries, got {len(values)}")
    for index, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low < value < high:
            raise SensorSpecError(
                f"{path}: field '{dotted}[{index}]' must be a number in ({low}, {high}), got {value!r}"
            )
    return [float(value) for value in values]


def _check(ok: bool, path: Path, dotted: str, message: str) -> None:
    if not ok:
        raise SensorSpecError(f"{path}: field '{dotted}' {message}")


def _effects(spec: dict, path: Path) -> ReturnEffects:
    defaults = ReturnEffects()
    mode = _field(spec, "returns.mode", str, path)
    _check(mode in RETURN_MODES, path, "returns.mode", f"must be one of {', '.join(RETURN_MODES)}, got {mode!r}")
    effects = ReturnEffects(
        range_noise_m=_field(spec, "returns.range_noise_m", float, path),
        drop_rate=_field(spec, "returns.drop_rate", float, path, defaults.drop_rate),
        detection_range_m=_field(spec, "returns.detection_range_m", float, path, defaults.detection_range_m),
        divergence_mrad=_field(spec, "returns.divergence_mrad", float, path),
        sub_rays=_field(spec, "returns.sub_rays", int, path, defaults.sub_rays),
        returns=mode,
        echo_separation_m=_field(spec, "returns.echo_separation_m", float, path, defaults.echo_separation_m),
    )
    problems = effects.problems()
    if problems:
        name, message = problems[0]
        field_name = "mode" if name == "returns" else name
        raise SensorSpecError(f"{path}: field 'returns.{field_name}' {message.split(' ', 1)[1]}")
    return effects


def _ray_drop(spec: dict, path: Path, channels: int) -> FittedRayDrop:
    """The [ray_drop] table (written by `simlidar sensors fit-drop`)."""
    _check(isinstance(_lookup(spec, "ray_drop"), dict), path, "ray_drop", "must be a table (see sensors fit-drop)")
    laser_logit = _numbers(spec, "ray_drop.laser_logit", path, -100.0, 100.0, channels)
    coefficients = {
        name: _field(spec, f"ray_drop.{name}", float, path)
        for name in ("range_coefficient", "incidence_coefficient", "luma_coefficient", "greenness_coefficient")
    }
    counts = {name: _field(spec, f"ray_drop.{name}", int, path, 0) for name in ("rays", "returns")}
    model = FittedRayDrop(
        tuple(laser_logit), **coefficients, source=_field(spec, "ray_drop.source", str, path), **counts
    )
    problems = model.problems(channels)
    _check(not problems, path, "ray_drop", problems[0] if problems else "")
    return model


def _published(spec: dict, path: Path) -> dict:
    published = _lookup(spec, "published")
    if published is None:
        return {}
    _check(isinstance(published, dict), path, "published", "must be a table of datasheet figures")
    return {key: _field(spec, f"published.{key}", float, path) for key in published}


def _spinning(spec: dict, path: Path, common: dict) -> SpinningLidar:
    if _lookup(spec, "beams.elevation_deg") is not None:
        elevations = _numbers(spec, "beams.elevation_deg", path, -90.0, 90.0)
        for index in range(1, len(elevations)):
            _check(
                elevations[index] < elevations[index - 1],
                path,
                "beams.elevation_deg",
                f"must run top to bottom (strictly decreasing); entry {index} ({elevations[index]}) is not below "
                f"entry {index - 1} ({elevations[index - 1]})",
            )
    else:
        top = _field(spec, "beams.top_deg", float, path)
        bottom = _field(spec, "beams.bottom_deg", float, path)
        channels = _field(spec, "beams.channels", int, path)
        _check(-90 < top < 90, path, "beams.top_deg", f"must be in (-90, 90), got {top}")
        _check(-90 < bottom < top, path, "beams.bottom_deg", f"must be in (-90, top_deg), got {bottom}")
        _check(2 <= channels <= 1024, path, "beams.channels", f"must be in 2..1024, got {channels}")
        elevations = [top + (bottom - top) * index / (channels - 1) for index in range(channels)]
    offsets: list[float] = []
    if _lookup(spec, "beams.azimuth_offset_deg") is not None:
        offsets = _numbers(spec, "beams.azimuth_offset_deg", path, -30.0, 30.0, len(elevations))
    origins = _laser_origins(spec, path, len(elevations))
    horizontal_fov = _field(spec, "scan.horizontal_fov_deg", float, path)
    _check(0.0 < horizontal_fov <= 360.0, path, "scan.horizontal_fov_deg", f"must be in (0, 360], got {horizontal_fov}")
    if _lookup(spec, "scan.columns") is not None:
        columns = _field(spec, "scan.columns", int, path)
        _check(1 <= columns <= 100_000, path, "scan.columns", f"must be in 1..100000, got {columns}")
        azimuth_step = horizontal_fov / columns
    else:
        azimuth_step = _field(spec, "scan.azimuth_step_deg", float, path)
    _check(0.0 < azimuth_step <= 10.0, path, "scan.azimuth_step_deg", f"must be in (0, 10], got {azimuth_step}")
    rotation_hz = _field(spec, "scan.rotation_hz", float, path, 10.0)
    _check(0.0 < rotation_hz <= 100.0, path, "scan.rotation_hz", f"must be in (0, 100], got {rotation_hz}")
    return SpinningLidar(
        elevations_deg=tuple(elevations),
        azimuth_step_deg=azimuth_step,
        horizontal_fov_deg=horizontal_fov,
        azimuth_offsets_deg=tuple(offsets),
        laser_origins_m=origins,
        rotation_hz=rotation_hz,
        **common,
    )


def _laser_origins(spec: dict, path: Path, channels: int) -> tuple[tuple[float, float, float], ...]:
    """Per-laser (forward, left, up) origins from [beams]; axes not given are 0; () when none is."""
    given = [name for name in LASER_ORIGIN_FIELDS if _lookup(spec, f"beams.{name}") is not None]
    if not given:
        return ()
    limit = MAX_LASER_ORIGIN_M
    axes = [
        _numbers(spec, f"beams.{name}", path, -limit, limit, channels) if name in given else [0.0] * channels
        for name in LASER_ORIGIN_FIELDS
    ]
    return tuple(zip(*axes, strict=True))


def _risley(spec: dict, path: Path, common: dict) -> RisleyLidar:
    rotor_rpm = _numbers(spec, "prisms.rotor_rpm", path, -100_000.0, 100_000.0, 2)
    _check(0 not in rotor_rpm, path, "prisms.rotor_rpm", "must not hold a stopped rotor (0 rpm)")
    _check(rotor_rpm[0] != rotor_rpm[1], path, "prisms.rotor_rpm", "must differ (equal speeds trace a single circle)")
    wedges = _numbers(spec, "prisms.wedge_deg", path, 0.0, 60.0, 2)
    index = _field(spec, "prisms.refractive_index", float, path)
    _check(1.0 < index < 4.0, path, "prisms.refractive_index", f"must be in (1, 4), got {index}")
    elevations = _numbers(spec, "emitters.elevation_deg", path, -30.0, 30.0)
    azimuths = [0.0] * len(elevations)
    if _lookup(spec, "emitters.azimuth_deg") is not None:
        azimuths = _numbers(spec, "emitters.azimuth_deg", path, -30.0, 30.0, len(elevations))
    rate = _field(spec, "scan.point_rate_hz", float, path)
    _check(0 < rate <= 1e7, path, "scan.point_rate_hz", f"must be in (0, 1e7], got {rate}")
    integration = _field(spec, "scan.integration_time_s", float, path)
    _check(0 < integration <= 10, path, "scan.integration_time_s", f"must be in (0, 10], got {integration}")
    sensor = RisleyLidar(
        rotor_rpm=(rotor_rpm[0], rotor_rpm[1]),
        wedge_deg=(wedges[0], wedges[1]),
        refractive_index=index,
        emitter_azimuth_deg=tuple(azimuths),
        emitter_elevation_deg=tuple(elevations),
        point_rate_hz=rate,
        integration_time_s=integration,
        **common,
    )
    _check(sensor.firings >= 1, path, "scan.integration_time_s", "is too short for one firing per emitter")
    _check(
        math.isfinite(sum(sensor.field_of_view_deg())),
        path,
        "prisms.wedge_deg",
        "makes some rays totally reflected inside the prisms; use smaller wedges or a lower refractive index",
    )
    return sensor

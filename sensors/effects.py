"""Return effects: what turns an ideal ray-mesh hit into what a real LiDAR reports.

Every effect is a figure in the sensor file (`[returns]`), can be overridden per run,
is switched off by 0, and draws its randomness only from the sample's generator:

- beam divergence: each beam is `sub_rays` rays, the centre and the rest on a circle at
  half the divergence (the footprint's edge), each carrying an equal share of the pulse.
  Sub-ray hits closer together in range than `echo_separation_m` merge into one echo
  at their signal-weighted mean range (a mixed return, as when a pulse straddles the
  edge of a kerb); farther apart they stay separate echoes;
- weak-return drop: an echo's signal is reflectance x cos(incidence) / range^2 (the
  intensity proxy). It is detected with probability 1 - 10^(-signal / threshold), where
  the threshold is the signal of a facing 10%-reflectance target at `detection_range_m`,
  the range datasheets quote for 10% targets at 90% detection probability: far,
  grazing and dark surfaces return less often;
- returns: of the detected echoes of a beam, `first` keeps the nearest, `last` the
  farthest, `strongest` the one with the most signal;
- general ray drop: each beam is lost with probability `drop_rate` (glass, spray, ...);
- range noise: the reported range gets Gaussian noise of sigma `range_noise_m`.

Reflectance comes from the photo: its luma (Rec. 709 weights on the gamma-encoded values)
sampled where the hit projects into the camera; a surface the camera cannot colour
(outside the image) gets UNIFORM_REFLECTANCE. Luma rather than linear luminance: a
photo's exposure and tone curve are arbitrary, and linear values put a mid-grey road at
about 0.05, darker than asphalt's near-infrared reflectance (0.1-0.2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

RETURN_MODES = ("strongest", "first", "last")
# Reflectance of the datasheet's reference target for `detection_range_m`.
REFERENCE_REFLECTANCE = 0.1
# Reflectance assumed where the photo gives none (no image, or a hit outside it).
UNIFORM_REFLECTANCE = 0.5
# The stored intensity is the signal relative to a facing white target at this range
# (clipped to 1), so it reads like reflectance at short range and decays beyond.
INTENSITY_REFERENCE_RANGE_M = 10.0


@dataclass(frozen=True)
class ReturnEffects:
    """The return-effect settings of one sensor (see the module docstring)."""

    range_noise_m: float = 0.0
    drop_rate: float = 0.0
    detection_range_m: float = 0.0
    divergence_mrad: float = 0.0
    sub_rays: int = 1
    returns: str = "strongest"
    echo_separation_m: float = 1.0

    def problems(self) -> list[tuple[str, str]]:
        """(field, what is wrong) for each bad setting; empty when all are valid."""
        checks = [
            ("range_noise_m", 0 <= self.range_noise_m < math.inf, "must be a finite number, 0 or more"),
            ("drop_rate", 0 <= self.drop_rate < 1, "must be in [0, 1)"),
            (
                "detection_range_m",
                0 <= self.detection_range_m < math.inf,
                "must be a finite number, 0 or more (0 = no weak-return drop)",
            ),
            ("divergence_mrad", 0 <= self.divergence_mrad <= 50, "must be in [0, 50]"),
            ("sub_rays", 1 <= self.sub_rays <= 32, "must be in 1..32"),
            ("returns", self.returns in RETURN_MODES, f"must be one of {', '.join(RETURN_MODES)}"),
            ("echo_separation_m", self.echo_separation_m > 0, "must be positive"),
        ]
        return [(name, f"{name} {message}, got {getattr(self, name)!r}") for name, ok, message in checks if not ok]

    @property
    def active_sub_rays(self) -> int:
        """Rays cast per beam: 1 when the beam has no divergence."""
        return self.sub_rays if self.divergence_mrad > 0 else 1


def sub_ray_directions(directions: np.ndarray, divergence_rad: float, sub_rays: int) -> np.ndarray:
    """Split each beam into `sub_rays` unit rays: its centre, then sub_rays - 1 rays evenly
    spaced on a cone of half-angle divergence_rad / 2 around it.

    Args:
        directions: (N, 3) unit beam directions, any frame.

    Returns:
        (N, sub_rays, 3) unit directions in the same frame.
    """
    if sub_rays == 1 or divergence_rad <= 0:
        return directions[:, None, :]
    # Two unit vectors perpendicular to each beam.
    helper = np.where(np.abs(directions[:, 2:3]) < 0.9, [[0.0, 0.0, 1.0]], [[1.0, 0.0, 0.0]])
    side = np.cross(directions, helper)
    side /= np.linalg.norm(side, axis=1, keepdims=True)
    other = np.cross(directions, side)
    angles = 2 * np.pi * np.arange(sub_rays - 1) / (sub_rays - 1)
    radius = np.tan(divergence_rad / 2)
    offsets = np.cos(angles)[None, :, None] * side[:, None, :] + np.sin(angles)[None, :, None] * other[:, None, :]
    ring = directions[:, None, :] + radius * offsets
    ring /= np.linalg.norm(ring, axis=2, keepdims=True)
    return np.concatenate([directions[:, None, :], ring], axis=1)


def signal_strength(reflectance: np.ndarray, cos_incidence: np.ndarray, range_m: np.ndarray) -> np.ndarray:
    """Received-signal proxy reflectance x cos(incidence) / range^2 (1/m^2); arrays of one shape."""
    return reflectance * np.clip(cos_incidence, 0.0, 1.0) / np.maximum(range_m, 1e-6) ** 2


def intensity_from_signal(signal: np.ndarray) -> np.ndarray:
    """The stored intensity in [0, 1]: signal relative to a facing white target at
    INTENSITY_REFERENCE_RANGE_M."""
    return np.clip(signal * INTENSITY_REFERENCE_RANGE_M**2, 0.0, 1.0)


def detection_probability(signal: np.ndarray, detection_range_m: float) -> np.ndarray:
    """P(an echo of this signal is detected) = 1 - 10^(-signal / threshold): 0.9 for a
    facing 10% target at detection_range_m; 1 everywhere when detection_range_m is 0."""
    if detection_range_m <= 0:
        return np.ones_like(signal)
    threshold = REFERENCE_REFLECTANCE / detection_range_m**2
    return -np.expm1(-np.log(10.0) * signal / threshold)


@dataclass
class Returns:
    """The return of each beam: range_m (N,) (inf where none), signal (N,) (0 where none)."""

    range_m: np.ndarray
    signal: np.ndarray


def resolve_returns(
    range_m: np.ndarray, signal: np.ndarray, effects: ReturnEffects, rng: np.random.Generator
) -> Returns:
    """Combine each beam's sub-ray hits into echoes, detect them, pick one per beam by
    the return mode, then apply the general drop and range noise.

    Args:
        range_m: (N, K) sub-ray hit ranges (m), inf for a miss or a hit out of range.
        signal: (N, K) sub-ray signal (signal_strength), any value where range is inf.

    Returns:
        Returns for the N beams.
    """
    beams, sub_rays = range_m.shape
    hit = np.isfinite(range_m)
    # Each sub-ray carries 1/K of the pulse's energy.
    energy = np.where(hit, signal, 0.0) / sub_rays
    order = np.argsort(range_m, axis=1)
    sorted_range = np.take_along_axis(range_m, order, axis=1)
    sorted_energy = np.take_along_axis(energy, order, axis=1)
    sorted_hit = np.isfinite(sorted_range)
    with np.errstate(invalid="ignore"):
        gaps = np.diff(sorted_range, axis=1)
    starts_echo = np.concatenate([np.ones((beams, 1), bool), ~(gaps <= effects.echo_separation_m)], axis=1)
    echo = np.cumsum(starts_echo, axis=1) - 1
    # One-hot (N, K sub-rays, K echoes) sums: K is small.
    member = (echo[:, :, None] == np.arange(sub_rays)[None, None, :]) & sorted_hit[:, :, None]
    echo_energy = np.einsum("nk,nke->ne", sorted_energy, member)
    echo_weight = np.einsum("nk,nke->ne", np.maximum(sorted_energy, 1e-30), member)
    safe_range = np.where(sorted_hit, sorted_range, 0.0)
    echo_range = np.einsum("nk,nke->ne", safe_range * np.maximum(sorted_energy, 1e-30), member) / np.maximum(
        echo_weight, 1e-300
    )
    exists = member.any(axis=1)
    detected = exists & (rng.random((beams, sub_rays)) < detection_probability(echo_energy, effects.detection_range_m))
    if effects.returns == "first":
        score = np.where(detected, -echo_range, -np.inf)
    elif effects.returns == "last":
        score = np.where(detected, echo_range, -np.inf)
    else:
        score = np.where(detected, echo_energy, -np.inf)
    best = np.argmax(score, axis=1)[:, None]
    chosen = np.take_along_axis(detected, best, axis=1)[:, 0]
    chosen &= rng.random(beams) >= effects.drop_rate
    noise = rng.standard_normal(beams) * effects.range_noise_m
    chosen_range = np.take_along_axis(echo_range, best, axis=1)[:, 0] + noise
    chosen &= chosen_range > 0
    return Returns(
        range_m=np.where(chosen, chosen_range, np.inf),
        signal=np.where(chosen, np.take_along_axis(echo_energy, best, axis=1)[:, 0], 0.0),
    )


def luma(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (H, W) float32 luma in [0, 1] (Rec. 709 weights, gamma-encoded values)."""
    return (rgb.astype(np.float32) / 255.0) @ np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)

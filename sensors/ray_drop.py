"""Which rays come back, fitted to real scans.

The weak-return drop of effects.py predicts a return from the photo's luma, a visible-light
figure, while a LiDAR sees near infrared: leaves are dark in a photo and bright to a LiDAR.
A `FittedRayDrop` instead gives a beam that hit a surface the probability of a return

    p = sigmoid(laser_logit[laser] + range_coefficient * ln(range / 10 m)
                + incidence_coefficient * cos(incidence) + luma_coefficient * luma
                + greenness_coefficient * greenness)

with its figures fitted to real scans (`simlidar sensors fit-drop`): the real scan says which
(laser, azimuth) cells returned, a simulation into the scene's geometry says which beams hit
something and with what range, incidence and colour. luma is the photo's (Rec. 709, gamma
values) where the beam lands; greenness = max(0, G - max(R, B)) there, a near-infrared cue
(vegetation reflects strongly in the near infrared and is green in a photo).

`fit_ray_drop` maximises the Bernoulli likelihood with Newton's method (a convex problem of a
few dozen parameters), with a ridge penalty that pulls each laser's logit toward the shared
one, so a laser seen on few rays keeps the shared value instead of a noisy one, and with the
geometric weights held to their physical signs (WEIGHT_SIGNS): at a fixed material the received
signal grows with cos(incidence) and falls with range, so a more grazing view or a longer range
never makes a return likelier. A few real frames cannot tell geometry from material by
themselves: on KITTI's the road, seen at grazing angles, returns 99% of its beams while car
bodies, glass and foliage, mostly seen head-on, drop; an unbounded fit learnt that as "grazing
returns better", which would make a teacher's smeared edges (sloped sheets seen edge-on) return
more. The bounded optimum is found exactly (`_bounded_fit`).
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass

import numpy as np

# ln(range / RANGE_REFERENCE_M) is the range feature: 0 at 10 m.
RANGE_REFERENCE_M = 10.0
FEATURES = ("range", "incidence", "luma", "greenness")
# Pull of each laser's logit toward the shared one (in log-likelihood units per logit^2):
# strong enough that a laser's logit fitted on one KITTI frame is no worse than the shared
# one on the other (a weaker pull fits each frame's own lasers and transfers worse).
LASER_RIDGE = 10.0
# Keeps the weights finite where a feature does not vary (e.g. uniform reflectance).
WEIGHT_RIDGE = 1e-6
NEWTON_STEPS = 50
# The sign each weight must keep, in FEATURES order (0: either): a return never gets likelier
# with range (<= 0) nor toward grazing incidence (cos(incidence) >= 0); see the module docstring.
WEIGHT_SIGNS = (-1, 1, 0, 0)


def greenness(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (H, W) float32 max(0, G - max(R, B)) in [0, 1]."""
    scaled = rgb.astype(np.float32) / 255.0
    return np.clip(scaled[..., 1] - np.maximum(scaled[..., 0], scaled[..., 2]), 0.0, 1.0)


@dataclass(frozen=True)
class HitFeatures:
    """What decides whether the beams of N hits return: ring (N,) int laser index, range_m
    (N,) m, cos_incidence (N,) in [0, 1], luma (N,) and greenness (N,) in [0, 1] (0.5 and 0
    where no photo colours the hit)."""

    ring: np.ndarray
    range_m: np.ndarray
    cos_incidence: np.ndarray
    luma: np.ndarray
    greenness: np.ndarray

    def __post_init__(self) -> None:
        count = len(self.ring)
        for name in ("range_m", "cos_incidence", "luma", "greenness"):
            if getattr(self, name).shape != (count,):
                raise ValueError(f"HitFeatures.{name} must have shape ({count},), got {getattr(self, name).shape}")

    def __len__(self) -> int:
        return len(self.ring)

    def subset(self, selection: np.ndarray) -> HitFeatures:
        """The features of the hits `selection` (a boolean mask or indices) picks."""
        return HitFeatures(*(getattr(self, name)[selection] for name in _FIELDS))

    def matrix(self) -> np.ndarray:
        """(N, len(FEATURES)) float64 columns: ln(range / 10 m), cos(incidence), luma, greenness."""
        return np.column_stack(
            [
                np.log(np.maximum(self.range_m, 1e-3) / RANGE_REFERENCE_M),
                self.cos_incidence,
                self.luma,
                self.greenness,
            ]
        ).astype(np.float64)

    @staticmethod
    def concatenate(parts: list[HitFeatures]) -> HitFeatures:
        return HitFeatures(*(np.concatenate([getattr(part, name) for part in parts]) for name in _FIELDS))


_FIELDS = ("ring", "range_m", "cos_incidence", "luma", "greenness")


@dataclass(frozen=True)
class FittedRayDrop:
    """A fitted return model (see the module docstring): laser_logit per laser (ring order),
    the coefficients of ln(range / 10 m), cos(incidence), luma and greenness; source: what
    it was fitted on; rays and returns: the beams it was fitted on and how many returned."""

    laser_logit: tuple[float, ...]
    range_coefficient: float
    incidence_coefficient: float
    luma_coefficient: float
    greenness_coefficient: float
    source: str = ""
    rays: int = 0
    returns: int = 0

    @property
    def weights(self) -> np.ndarray:
        """(len(FEATURES),) the feature coefficients in FEATURES order."""
        return np.array(
            [self.range_coefficient, self.incidence_coefficient, self.luma_coefficient, self.greenness_coefficient]
        )

    def return_probability(self, hits: HitFeatures) -> np.ndarray:
        """(N,) probability that each hit's beam returns."""
        logit = np.asarray(self.laser_logit)[hits.ring] + hits.matrix() @ self.weights
        return 1.0 / (1.0 + np.exp(-logit))

    def matching_count(self, hits: HitFeatures, count: float) -> FittedRayDrop:
        """This model with every laser's logit shifted alike so that the expected number of
        returns among `hits` is `count` (0 < count < len(hits))."""
        logit = np.asarray(self.laser_logit)[hits.ring] + hits.matrix() @ self.weights
        low, high = -50.0, 50.0
        for _ in range(100):
            shift = 0.5 * (low + high)
            expected = np.sum(1.0 / (1.0 + np.exp(-(logit + shift))))
            low, high = (shift, high) if expected < count else (low, shift)
        return dataclasses.replace(self, laser_logit=tuple(float(value + shift) for value in self.laser_logit))

    def problems(self, channels: int) -> list[str]:
        """What is wrong with these figures for a sensor of `channels` lasers; empty when nothing."""
        figures = [*self.laser_logit, *self.weights.tolist()]
        problems = []
        if len(self.laser_logit) != channels:
            problems.append(f"laser_logit must have one entry per laser ({channels}), got {len(self.laser_logit)}")
        if not all(np.isfinite(figures)) or max(abs(value) for value in figures) > 100:
            problems.append("every figure must be a finite number within +-100")
        if not 0 <= self.returns <= self.rays:
            problems.append(f"returns ({self.returns}) must be between 0 and rays ({self.rays})")
        for name, sign, weight in zip(FEATURES, WEIGHT_SIGNS, self.weights, strict=True):
            if sign * weight < 0:
                problems.append(
                    f"{name}_coefficient must be {'>= 0' if sign > 0 else '<= 0'}, got {weight:g}: a return may not "
                    f"get likelier {'toward grazing incidence' if sign > 0 else 'with range'} (refit with fit-drop)"
                )
        return problems


def fit_ray_drop(hits: HitFeatures, returned: np.ndarray, channels: int, source: str = "") -> FittedRayDrop:
    """The FittedRayDrop of largest penalised likelihood, with each weight of its WEIGHT_SIGNS
    sign, for N hits (`hits`) of a sensor with `channels` lasers of which `returned` (N,) bool
    came back in the real scan. A laser without hits gets the shared logit."""
    if len(hits) == 0:
        raise ValueError("no hits to fit a ray-drop model on")
    ring_columns = np.eye(channels)[hits.ring]
    design = np.column_stack([np.ones(len(hits)), ring_columns, hits.matrix()])
    penalty = np.diag([0.0] + [LASER_RIDGE] * channels + [WEIGHT_RIDGE] * len(FEATURES))
    signs = np.concatenate([np.zeros(1 + channels), WEIGHT_SIGNS])
    theta = _bounded_fit(design, penalty, returned.astype(np.float64), signs)
    shared, laser, weights = theta[0], theta[1 : 1 + channels], theta[1 + channels :]
    return FittedRayDrop(
        tuple(float(value) for value in shared + laser),
        *(float(value) for value in weights),
        source=source,
        rays=int(len(hits)),
        returns=int(returned.sum()),
    )


def _bounded_fit(design: np.ndarray, penalty: np.ndarray, target: np.ndarray, signs: np.ndarray) -> np.ndarray:
    """(P,) parameters of least penalised negative log-likelihood (_penalised_loss) with
    signs (P,) * parameters >= 0. design: (N, P) logit = design @ parameters; penalty: (P, P);
    target: (N,) 1 = returned.

    The loss is convex, so the bounded optimum is the unbounded optimum of one face of the
    bounds: some bounded parameters held at their bound 0, the others free. Each face's optimum
    is fitted (a handful: one per subset of the bounded parameters); the bounded optimum is one
    of those that keep every sign, and none of them can beat it, so it is their best."""
    bounded = np.flatnonzero(signs)
    best, best_loss = None, np.inf
    # Every bounded parameter held first: that face's optimum keeps every sign by construction.
    for held_count in range(len(bounded), -1, -1):
        for held in itertools.combinations(bounded, held_count):
            free = np.setdiff1d(np.arange(design.shape[1]), held)
            theta = np.zeros(design.shape[1])
            theta[free] = _newton(design[:, free], penalty[np.ix_(free, free)], target)
            loss = _penalised_loss(design, penalty, target, theta)
            if best is None or (np.all(signs * theta >= 0) and loss < best_loss):
                best, best_loss = theta, loss
    return best


def _penalised_loss(design: np.ndarray, penalty: np.ndarray, target: np.ndarray, theta: np.ndarray) -> float:
    """Negative Bernoulli log-likelihood of target (N,) under logits design (N, P) @ theta (P,),
    plus theta' penalty (P, P) theta / 2."""
    logit = design @ theta
    return float(np.sum(np.logaddexp(0.0, logit) - target * logit) + 0.5 * theta @ penalty @ theta)


def _newton(design: np.ndarray, penalty: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(P,) unbounded minimiser of _penalised_loss, column 0 of design (N, P) the intercept."""
    theta = np.zeros(design.shape[1])
    theta[0] = np.log((target.sum() + 1.0) / (len(target) - target.sum() + 1.0))
    for _ in range(NEWTON_STEPS):
        probability = 1.0 / (1.0 + np.exp(-(design @ theta)))
        gradient = design.T @ (probability - target) + penalty @ theta
        hessian = (design * (probability * (1.0 - probability))[:, None]).T @ design + penalty
        step = np.linalg.solve(hessian, gradient)
        theta -= step
        if np.abs(step).max() < 1e-10:
            break
    return theta

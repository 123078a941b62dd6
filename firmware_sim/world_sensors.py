"""How each kind of station's sensors misread the world, and what the central service's
fused hourly means still carry after calibration.

Per station and quantity, fixed for the station's life (drawn from a hash of the seed,
station and quantity): a slope, a bias, a slow drift, and for optical particle sensors a
hygroscopic growth ``kappa`` (kappa-Koehler: reading x ``1 + (kappa / 1.65) / (100 / RH - 1)``,
RH capped at 95 %). Per reading: white noise keyed on the reading's second. Nothing here
keeps state, so a value depends only on (seed, station, quantity, t).

``KIND_QUANTITIES`` says what each kind of station measures by default.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from firmware_sim.world_fields import key, normal, normals, uniforms
from protocols.quantities import QUANTITIES

KIND_QUANTITIES: dict[str, tuple[str, ...]] = {
    "reference": ("pm25", "pm10", "no2", "so2", "co", "o3", "co2", "temp", "rh", "pressure"),
    "micro": ("pm25", "pm10", "no2", "so2", "co", "o3", "temp", "rh", "pressure"),
    "dust": ("pm25", "pm10", "tsp", "noise", "temp", "rh", "pressure", "wind_speed", "wind_dir"),
    "met": ("temp", "rh", "pressure", "wind_speed", "wind_dir"),
}
STATION_KINDS = tuple(KIND_QUANTITIES)
# quantities whose errors grow with the reading (concentrations); the rest have fixed errors
_CONCENTRATIONS = frozenset(
    ("pm1", "pm25", "pm10", "tsp", "no2", "no", "nox", "so2", "co", "o3", "voc", "co2"))


@dataclass(frozen=True)
class KindSpec:
    """Raw sensor error scales of a station kind (fractions are of the reading)."""

    slope_sd: float
    bias_sd: float  # in units of the quantity's typical scale (see _SCALE)
    noise_abs: float
    noise_rel: float
    kappa: tuple[float, float]  # hygroscopic growth range, optical PM only
    drift_per_30d: float
    # what survives calibration and fusion in an hourly mean
    fused_slope_sd: float
    fused_bias_sd: float
    fused_noise_abs: float
    fused_noise_rel: float


SPECS: dict[str, KindSpec] = {
    "reference": KindSpec(0.03, 0.5, 1.0, 0.02, (0.0, 0.0), 0.01, 0.02, 1.0, 1.5, 0.03),
    "micro": KindSpec(0.15, 2.0, 3.0, 0.08, (0.15, 0.45), 0.05, 0.06, 3.0, 4.0, 0.08),
    "dust": KindSpec(0.10, 2.5, 4.0, 0.08, (0.05, 0.15), 0.04, 0.08, 4.0, 5.0, 0.10),
    "met": KindSpec(0.02, 0.5, 0.5, 0.01, (0.0, 0.0), 0.005, 0.02, 0.5, 0.5, 0.02),
}
# the scale of a quantity's absolute errors (multiplies bias_sd and noise_abs)
_SCALE = {
    "pm1": 1.0, "pm25": 1.0, "pm10": 1.0, "tsp": 1.5, "no2": 1.5, "no": 1.0, "nox": 2.0,
    "so2": 1.0, "co": 0.03, "o3": 2.0, "voc": 10.0, "co2": 4.0, "temp": 0.15, "rh": 1.0,
    "pressure": 0.3, "wind_speed": 0.1, "wind_dir": 2.0, "noise": 0.5, "dustfall": 0.5,
}


class SensorModel:
    """Sensor readings and fused hourly values for one world (seeded, stateless)."""

    def __init__(self, seed: int, start: int) -> None:
        self.seed = seed
        self.start = start
        self._params: dict[tuple[str, str], tuple[float, float, float, float]] = {}
        self._keys: dict[tuple[str, str], int] = {}

    def _noise_key(self, station: str, quantity: str) -> int:
        k = (station, quantity)
        if k not in self._keys:
            self._keys[k] = key(self.seed, "noise", station, quantity)
        return self._keys[k]

    def params(self, station: str, kind: str, quantity: str) -> tuple[float, float, float, float]:
        """(slope, bias, drift per 30 days, kappa) of a station's sensor for a quantity."""
        k = (station, quantity)
        if k not in self._params:
            spec, scale = SPECS[kind], _SCALE.get(quantity, 1.0)
            z = normals(key(self.seed, "sensor", station, quantity), np.arange(3))
            u = float(uniforms(key(self.seed, "kappa", station, quantity), 0))
            kappa = 0.0
            if QUANTITIES[quantity].particulate:
                lo, hi = spec.kappa
                kappa = lo + (hi - lo) * u
            slope = 1.0 + spec.slope_sd * float(z[0])
            if quantity in ("wind_dir", "rh", "temp", "pressure"):
                slope = 1.0  # these drift in offset, not gain
            self._params[k] = (
                slope,
                spec.bias_sd * scale * float(z[1]),
                spec.drift_per_30d * float(z[2]),
                kappa,
            )
        return self._params[k]

    def reading(
        self, station: str, kind: str, quantity: str, t: float, true: float, rh: float
    ) -> float:
        """What the station's sensor reads at ``t`` when the truth at its inlet is ``true``."""
        slope, bias, drift, kappa = self.params(station, kind, quantity)
        spec = SPECS[kind]
        months = max(0.0, (t - self.start) / (30 * 86400.0))
        v = true
        if kappa > 0:
            a_w = min(rh, 95.0) / 100.0
            v *= 1.0 + (kappa / 1.65) / (1.0 / a_w - 1.0)
        if quantity == "wind_dir":
            noise = normal(self._noise_key(station, quantity), int(t))
            return float((v + bias + 2.0 * drift * months + 3.0 * noise) % 360.0)
        if quantity in _CONCENTRATIONS:
            v = v * (slope + drift * months) + bias
        else:  # gauges drift in offset, by up to a few error scales a month
            v = v * slope + bias + 20.0 * drift * months * _SCALE.get(quantity, 1.0)
        rel = spec.noise_rel * v if quantity in _CONCENTRATIONS else 0.0
        sd = math.hypot(spec.noise_abs * _SCALE.get(quantity, 1.0), rel)
        noise = normal(self._noise_key(station, quantity), int(t))
        q = QUANTITIES[quantity]
        return float(min(max(v + sd * noise, q.low), q.high))

    def fused_hourly(
        self, station: str, kind: str, quantity: str, hour_index: int, true_mean: float
    ) -> tuple[float, float]:
        """(value, declared sigma) of a calibrated, fused hourly mean."""
        spec = SPECS[kind]
        scale = _SCALE.get(quantity, 1.0)
        z = normals(key(self.seed, "fused", station, quantity), np.arange(2))
        slope = 1.0 + spec.fused_slope_sd * float(z[0])
        bias = spec.fused_bias_sd * scale * float(z[1])
        noise = normal(key(self.seed, "fused-hour", station, quantity), hour_index)
        rel = 1.0 if quantity in _CONCENTRATIONS else 0.0
        sd = math.hypot(spec.fused_noise_abs * scale, rel * spec.fused_noise_rel * true_mean)
        value = true_mean * slope + bias + sd * noise
        if quantity in _CONCENTRATIONS:
            value = max(0.0, value)
        declared = math.sqrt(
            (spec.fused_noise_abs * scale) ** 2
            + (spec.fused_bias_sd * scale) ** 2
            + (rel * (spec.fused_noise_rel + spec.fused_slope_sd) * value) ** 2
        )
        return value, declared

"""What every quantity of ``protocols.quantities.QUANTITIES`` truly is at each station.

Particulates: background + station-local term + source plumes (PM10 rates scaled by
per-kind fractions). Gases: diurnal patterns by local solar hour (NO2 and CO rush hours,
afternoon O3 with titration near NO2 plumes, night CO2 build-up) plus what industrial,
traffic and restaurant sources add. Met quantities: the district's weather, temperature
and pressure corrected for inlet height, wind speed by a log profile (z0 = 0.5 m).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from firmware_sim.world_fields import Wave, key

if TYPE_CHECKING:
    from firmware_sim.world import World

_BG = {"pm1": 0.4, "pm25": 0.55, "pm10": 1.0, "tsp": 1.6}
_LOCAL = {"pm1": 0.35, "pm25": 0.5, "pm10": 1.0, "tsp": 1.5}
_GAS_BG_WAVES: dict[tuple[int, str], Wave] = {}


def _wave(world: World, name: str) -> Wave:
    k = (world.seed, name)
    if k not in _GAS_BG_WAVES:
        _GAS_BG_WAVES[k] = Wave(key(world.seed, "gas", name), 2 * 3600.0, 36 * 3600.0)
    return _GAS_BG_WAVES[k]


def _source_factors(world: World, quantity: str) -> np.ndarray:
    from firmware_sim.world import _GAS, _PM25, _TSP

    kinds = [s.kind for s in world.sources]
    if quantity == "pm10":
        return np.ones(len(kinds))
    if quantity == "pm25":
        return np.array([_PM25[k] for k in kinds])
    if quantity == "pm1":
        return np.array([0.6 * _PM25[k] for k in kinds])
    if quantity == "tsp":
        return np.array([_TSP[k] for k in kinds])
    table = _GAS.get("no2" if quantity in ("no", "nox") else quantity, {})
    scale = {"no": 0.4, "nox": 1.6}.get(quantity, 1.0)
    return np.array([scale * table.get(k, 0.0) for k in kinds])


def _rush(solar: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * ((solar - 8.0) / 1.3) ** 2) + np.exp(-0.5 * ((solar - 18.5) / 1.6) ** 2)


class _Ctx:
    """What the quantity functions share for one batch of minutes."""

    def __init__(self, world: World, minutes: np.ndarray) -> None:
        self.world = world
        self.minutes = np.asarray(minutes, dtype=np.int64)
        self.t = self.minutes * 60.0 + 30.0
        self.n = len(world.stations)
        self.z = np.array([s.z_m for s in world.stations])
        self.solar = world.weather.solar_hour(self.t)
        self.ones = np.ones((1, self.n))
        self._plumes: np.ndarray | None = None

    def plumes(self) -> np.ndarray:
        if self._plumes is None:
            self._plumes = (self.world._plumes(self.minutes) if self.world.sources
                            else np.zeros((len(self.t), self.n, 0)))
        return self._plumes

    def added(self, quantity: str) -> np.ndarray:
        out: np.ndarray = self.plumes() @ _source_factors(self.world, quantity)
        return out

    def wave(self, quantity: str) -> np.ndarray:
        return _wave(self.world, quantity)(self.t)[:, None] * self.ones

    def row(self, v: np.ndarray) -> np.ndarray:
        return v[:, None] * self.ones


def _particulate(c: _Ctx, q: str) -> np.ndarray:
    out: np.ndarray = (_BG[q] * c.world._background(c.minutes)
                       + _LOCAL[q] * c.world._local(c.minutes) + c.added(q))
    return out


def _wind(c: _Ctx, q: str) -> np.ndarray:
    speed, direction = c.world.weather.minute_wind(c.minutes)
    if q == "wind_dir":
        return c.row(direction)
    profile = np.log(np.maximum(c.z, 1.0) / 0.5) / math.log(10.0 / 0.5)
    out: np.ndarray = speed[:, None] * profile[None, :]
    return out


def _noise(c: _Ctx, q: str) -> np.ndarray:
    day = np.clip(np.sin(math.pi * (c.solar - 6.0) / 16.0), 0.0, 1.0)
    dust = np.array([1.0 if s.kind == "dust" else 0.0 for s in c.world.stations])
    works = np.clip(np.minimum(c.solar - 6.5, 19.5 - c.solar), 0.0, 1.0)
    out: np.ndarray = (c.row(48.0 + 8.0 * day + 4.0 * _rush(c.solar))
                       + 12.0 * works[:, None] * dust)
    return out


def _ozone(c: _Ctx, q: str) -> np.ndarray:
    """Afternoon photochemistry, titrated where NO2 plumes are."""
    sun = np.clip(np.sin(math.pi * (c.solar - 7.0) / 14.0), 0.0, 1.0) ** 1.5
    return np.maximum(c.row(25.0 + 110.0 * sun) + 8.0 * c.wave(q) - 0.3 * c.added("no2"), 2.0)


_FIELDS = {
    "temp": lambda c, q: c.world.weather.temp_c(c.t)[:, None] - 0.0065 * c.z[None, :],
    "rh": lambda c, q: c.row(c.world.weather.rh_pct(c.t)),
    "pressure": lambda c, q: c.world.weather.pressure_hpa(c.t)[:, None] - 0.12 * c.z[None, :],
    "wind_speed": _wind,
    "wind_dir": _wind,
    "noise": _noise,
    "dustfall": lambda c, q: 6.0 + 0.05 * c.world._background(c.minutes),
    "no2": lambda c, q: c.row(28.0 + 25.0 * _rush(c.solar)) + 5.0 * c.wave(q) + c.added(q),
    "no": lambda c, q: c.row(4.0 + 20.0 * _rush(c.solar)) + 2.0 * c.wave(q) + c.added(q),
    "nox": lambda c, q: c.row(34.0 + 56.0 * _rush(c.solar)) + 6.0 * c.wave(q) + c.added(q),
    "so2": lambda c, q: 9.0 + 3.0 * c.wave(q) + c.added(q),
    "co": lambda c, q: (c.row(0.55 + 0.4 * _rush(c.solar)) + 0.08 * c.wave(q)
                        + c.added(q) / 1000.0),
    "voc": lambda c, q: 180.0 + 40.0 * c.wave(q) + c.added(q),
    "co2": lambda c, q: (c.row(425.0 + 20.0 * np.cos(2.0 * math.pi * (c.solar - 4.0) / 24.0))
                         + 6.0 * c.wave(q)),
    "o3": _ozone,
}


def fields(world: World, minutes: np.ndarray, quantity: str) -> np.ndarray:
    """True values, shape (len(minutes), n_stations)."""
    c = _Ctx(world, minutes)
    if quantity in _BG:
        return _particulate(c, quantity)
    fn = _FIELDS.get(quantity)
    if fn is None:
        raise ValueError(f"no model for quantity {quantity!r}")  # pragma: no cover
    return np.asarray(fn(c, quantity), dtype=float) * np.ones((len(c.t), c.n))

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


def fields(world: World, minutes: np.ndarray, quantity: str) -> np.ndarray:
    """True values, shape (len(minutes), n_stations)."""
    minutes = np.asarray(minutes, dtype=np.int64)
    t = minutes * 60.0 + 30.0
    n = len(world.stations)
    z = np.array([s.z_m for s in world.stations])
    w = world.weather
    solar = w.solar_hour(t)
    ones = np.ones((1, n))
    if quantity in _BG:
        plumes = world._plumes(minutes) @ _source_factors(world, quantity)
        return (_BG[quantity] * world._background(minutes)
                + _LOCAL[quantity] * world._local(minutes) + plumes)
    if quantity == "temp":
        return w.temp_c(t)[:, None] - 0.0065 * z[None, :]
    if quantity == "rh":
        return w.rh_pct(t)[:, None] * ones
    if quantity == "pressure":
        return w.pressure_hpa(t)[:, None] - 0.12 * z[None, :]
    if quantity in ("wind_speed", "wind_dir"):
        speed, direction = w.minute_wind(minutes)
        if quantity == "wind_dir":
            return direction[:, None] * ones
        profile = np.log(np.maximum(z, 1.0) / 0.5) / math.log(10.0 / 0.5)
        return speed[:, None] * profile[None, :]
    if quantity == "noise":
        day = np.clip(np.sin(math.pi * (solar - 6.0) / 16.0), 0.0, 1.0)
        dust = np.array([1.0 if s.kind == "dust" else 0.0 for s in world.stations])
        works = np.clip(np.minimum(solar - 6.5, 19.5 - solar), 0.0, 1.0)
        return (48.0 + 8.0 * day + 4.0 * _rush(solar))[:, None] + 12.0 * works[:, None] * dust
    if quantity == "dustfall":
        return 6.0 + 0.05 * world._background(minutes)
    gases = {"no2", "no", "nox", "so2", "co", "o3", "voc", "co2"}
    if quantity not in gases:
        raise ValueError(f"no model for quantity {quantity!r}")  # pragma: no cover
    plumes = world._plumes(minutes) if world.sources else np.zeros((len(t), n, 0))
    add = plumes @ _source_factors(world, quantity) if quantity != "o3" else 0.0
    wave = _wave(world, quantity)(t)[:, None] * ones
    if quantity == "no2":
        base = 28.0 + 25.0 * _rush(solar)
        return base[:, None] * ones + 5.0 * wave + add
    if quantity == "no":
        return (4.0 + 20.0 * _rush(solar))[:, None] * ones + 2.0 * wave + add
    if quantity == "nox":
        return (34.0 + 56.0 * _rush(solar))[:, None] * ones + 6.0 * wave + add
    if quantity == "so2":
        return 9.0 + 3.0 * wave + add
    if quantity == "co":
        return (0.55 + 0.4 * _rush(solar))[:, None] * ones + 0.08 * wave + add / 1000.0
    if quantity == "voc":
        return 180.0 + 40.0 * wave + add
    if quantity == "co2":
        night = np.cos(2.0 * math.pi * (solar - 4.0) / 24.0)
        return (425.0 + 20.0 * night)[:, None] * ones + 6.0 * wave
    # ozone: afternoon photochemistry, titrated where NO2 plumes are
    sun = np.clip(np.sin(math.pi * (solar - 7.0) / 14.0), 0.0, 1.0) ** 1.5
    titration = 0.3 * (plumes @ _source_factors(world, "no2"))
    return np.maximum((25.0 + 110.0 * sun)[:, None] * ones + 8.0 * wave - titration, 2.0)

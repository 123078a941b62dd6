"""Stateless randomness and the synthetic weather of the world.

Everything random in the world is a pure function of (seed, what, where, when): a hash
(BLAKE2b for keys, SplitMix64 for vectors of indices) instead of a shared RNG stream, so
any value can be asked for at any time in any order and comes out the same. Smooth random
processes (wind turning over a day, minute meander, background level) are sums of a few
sinusoids with seeded periods and phases: stationary, evaluable at any t, no state.

``Weather`` gives minute winds (mean flow + meander), an hourly Pasquill class from wind and
sun (the world's own rule, not ``cloud.met``), temperature, humidity, pressure and mixing
height. Time is epoch seconds, UTC; local solar time comes from the longitude.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np

Array = np.ndarray
_M64 = 0xFFFFFFFFFFFFFFFF


def key(*parts: object) -> int:
    """A 64-bit key from any parts (their repr), stable across runs and platforms."""
    h = hashlib.blake2b(repr(parts).encode(), digest_size=8)
    return int.from_bytes(h.digest(), "little")


def _splitmix(x: Array) -> Array:
    z = x + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _splitmix_int(x: int) -> int:
    """SplitMix64 on one Python int: the same numbers as ``_splitmix``, without numpy."""
    z = (x + 0x9E3779B97F4A7C15) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def uniform(base: int, i: int) -> float:
    """One uniform (0, 1) number; equal to ``uniforms(base, i)``."""
    bits = _splitmix_int((i & _M64) ^ (base & _M64))
    return ((bits >> 11) + 0.5) * 2.0**-53


def normal(base: int, i: int) -> float:
    """One standard normal number; equal to ``normals(base, i)``."""
    u1 = uniform(base, i)
    u2 = uniform(key(base, "second"), i)
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


def uniforms(base: int, idx: Array | int) -> Array:
    """Uniform (0, 1) numbers, one per integer index, for a key ``base``."""
    arr = np.asarray(idx, dtype=np.int64)
    i = np.atleast_1d(arr).astype(np.uint64)  # arrays wrap silently; 0-d scalars would warn
    bits = _splitmix(i ^ np.uint64(base & _M64))
    out = ((bits >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53
    return out.reshape(arr.shape)


def normals(base: int, idx: Array | int) -> Array:
    """Standard normal numbers, one per integer index (Box-Muller on two hashed uniforms)."""
    u1 = uniforms(base, idx)
    u2 = uniforms(key(base, "second"), idx)
    out: Array = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * math.pi * u2)
    return out


class Wave:
    """A stationary random signal with unit variance and periods in [lo, hi] seconds."""

    def __init__(self, base: int, lo_s: float, hi_s: float, n: int = 8) -> None:
        rng = np.random.default_rng(base)
        self.omega = 2.0 * math.pi / np.exp(rng.uniform(math.log(lo_s), math.log(hi_s), n))
        self.phase = rng.uniform(0.0, 2.0 * math.pi, n)
        self.amp = math.sqrt(2.0 / n)

    def __call__(self, t: Array | float) -> Array:
        tt = np.asarray(t, dtype=float)[..., None]
        out: Array = self.amp * np.sum(np.sin(tt * self.omega + self.phase), axis=-1)
        return out


def solar_elevation(t: Array | float, lat: float, lon: float) -> Array:
    """Sun elevation (deg): Cooper's declination, solar time from longitude."""
    tt = np.asarray(t, dtype=float)
    doy = np.floor(tt / 86400.0) % 365.25 + 1.0  # good to a day or so: enough for a class
    decl = math.radians(23.44) * np.sin(2.0 * math.pi * (284.0 + doy) / 365.0)
    solar_h = (tt / 3600.0 + lon / 15.0) % 24.0
    ha = np.radians(15.0 * (solar_h - 12.0))
    phi = math.radians(lat)
    s = math.sin(phi) * np.sin(decl) + math.cos(phi) * np.cos(decl) * np.cos(ha)
    return np.degrees(np.arcsin(np.clip(s, -1.0, 1.0)))


# sigma_theta (deg) that a class's own turbulence gives within a minute, and the scale of the
# meander of the minute-mean direction about the hour's flow
TURBULENCE_DEG = {"A": 25.0, "B": 20.0, "C": 15.0, "D": 10.0, "E": 5.6, "F": 2.5}
MEANDER_DEG = {"A": 22.0, "B": 16.0, "C": 11.0, "D": 7.0, "E": 5.0, "F": 4.0}


def pasquill(u: float, elevation: float, cloud_okta: int) -> str:
    """The world's class rule: Pasquill's table from wind, sun height and cloud."""
    if cloud_okta >= 8:
        return "D"
    if elevation <= 0.0:
        column = 3 if cloud_okta >= 4 else 4
    elif elevation <= 15.0:  # the sun just up or about to set: near neutral (Turner)
        return "D"
    else:
        strength = 2 if elevation > 60 else 1 if elevation > 35 else 0
        if cloud_okta > 4:
            strength = max(0, strength - 1)
        column = 2 - strength
    table = {2.0: "ABBEF", 3.0: "BBCEF", 5.0: "BCCDE", 6.0: "CDDDD"}
    for top, row in table.items():
        if u < top:
            return row[column]
    return "CDDDD"[column]


@dataclass(frozen=True)
class FixedWind:
    """Constant weather (no turning, no meander), for hand-checkable worlds."""

    speed_ms: float
    from_deg: float
    stability: str
    mixing_height_m: float = 1000.0


class Weather:
    """Minute winds and hourly conditions over the district (spatially uniform)."""

    def __init__(
        self,
        seed: int,
        lat: float,
        lon: float,
        *,
        mean_speed_ms: float = 3.0,
        turning_deg: float = 80.0,
        meander: float = 1.0,
        fixed: FixedWind | None = None,
    ) -> None:
        self.seed, self.lat, self.lon = seed, lat, lon
        self.mean_speed, self.turning, self.meander, self.fixed = (
            mean_speed_ms, turning_deg, meander, fixed)
        rng = np.random.default_rng(key(seed, "weather"))
        self.dir0 = float(rng.uniform(0.0, 360.0))
        self.turn_wave = Wave(key(seed, "turn"), 4 * 3600.0, 40 * 3600.0)
        self.speed_wave = Wave(key(seed, "speed"), 2 * 3600.0, 30 * 3600.0)
        self.meander_wave = Wave(key(seed, "meander"), 180.0, 2400.0, n=12)
        self.gust_wave = Wave(key(seed, "gust"), 120.0, 1800.0)
        self.temp_wave = Wave(key(seed, "temp"), 6 * 3600.0, 72 * 3600.0)
        self.rh_wave = Wave(key(seed, "rh"), 3 * 3600.0, 48 * 3600.0)
        self.p_wave = Wave(key(seed, "p"), 12 * 3600.0, 96 * 3600.0)

    def solar_hour(self, t: Array | float) -> Array:
        return (np.asarray(t, dtype=float) / 3600.0 + self.lon / 15.0) % 24.0

    def flow(self, t: Array | float) -> tuple[Array, Array]:
        """The hour-scale flow: speed (m/s) and direction it blows from (deg) at time t."""
        tt = np.asarray(t, dtype=float)
        if self.fixed:
            return np.full(tt.shape, self.fixed.speed_ms), np.full(tt.shape, self.fixed.from_deg)
        diurnal = np.sin(2.0 * math.pi * (self.solar_hour(tt) - 9.0) / 24.0)
        speed = self.mean_speed * (1.0 + 0.3 * diurnal) * np.exp(0.3 * self.speed_wave(tt))
        direction = self.dir0 + self.turning * self.turn_wave(tt) + 25.0 * diurnal
        return np.clip(speed, 0.3, 15.0), direction % 360.0

    def hour_class(self, hour_start: int) -> str:
        if self.fixed:
            return self.fixed.stability
        mid = hour_start + 1800.0
        speed, _ = self.flow(mid)
        cloud = int(8.0 * uniforms(key(self.seed, "cloud"), int(hour_start // (3 * 3600)))[()])
        return pasquill(float(speed), float(solar_elevation(mid, self.lat, self.lon)), cloud)

    def minute_wind(self, minutes: Array) -> tuple[Array, Array]:
        """Speed and from-direction of each absolute minute index (epoch // 60)."""
        m = np.asarray(minutes, dtype=np.int64)
        mid = m * 60.0 + 30.0
        speed, direction = self.flow(mid)
        if self.fixed or self.meander <= 0:
            return speed, direction
        hours = (m // 60) * 3600
        scale = np.array([MEANDER_DEG[self.hour_class(int(h))] for h in np.unique(hours)])
        amp = scale[np.searchsorted(np.unique(hours), hours)]
        amp = amp * self.meander * (1.0 + 1.0 / np.maximum(speed, 0.5)) / (1.0 + 1.0 / 3.0)
        speed = np.maximum(speed * (1.0 + 0.15 * self.gust_wave(mid)), 0.2)
        return speed, (direction + amp * self.meander_wave(mid)) % 360.0

    def temp_c(self, t: Array | float) -> Array:
        tt = np.asarray(t, dtype=float)
        season = -np.cos(2.0 * math.pi * ((tt / 86400.0) % 365.25 - 15.0) / 365.25)
        day = np.cos(2.0 * math.pi * (self.solar_hour(tt) - 15.0) / 24.0)
        return 15.0 + 13.0 * season + 5.0 * day + 2.0 * self.temp_wave(tt)

    def rh_pct(self, t: Array | float) -> Array:
        tt = np.asarray(t, dtype=float)
        day = np.cos(2.0 * math.pi * (self.solar_hour(tt) - 15.0) / 24.0)
        return np.clip(62.0 - 22.0 * day + 12.0 * self.rh_wave(tt), 12.0, 99.0)

    def pressure_hpa(self, t: Array | float) -> Array:
        return 1010.0 + 6.0 * self.p_wave(np.asarray(t, dtype=float))

    def mixing_height_m(self, t: Array | float) -> Array:
        tt = np.asarray(t, dtype=float)
        if self.fixed:
            return np.full(tt.shape, self.fixed.mixing_height_m)
        elev = solar_elevation(tt, self.lat, self.lon)
        out: Array = 300.0 + 1300.0 * np.clip(np.sin(np.radians(elev)), 0.0, 1.0)
        return out

"""The synthetic city district whose truth is known: stations, registered sites, hidden
sources, weather, background, and what every station's sensors read.

``World.generate(seed, ...)`` builds a district; the same seed and arguments give the same
world, byte for byte. Time is always passed in (epoch seconds, UTC); nothing reads a clock.
Concentrations are computed minute by minute with the world's own dispersion physics
(``firmware_sim.truth``, independent of the inversion's model): each minute's plume follows
that minute's wind, so an hour's mean carries the meander of a real hour.

Coordinates: metres east (x) and north (y) of ``origin_lat_lon`` in the platform's one
local frame, ``protocols.geo`` (a tangent plane on a sphere of the mean Earth radius:
``x = R cos(lat0) (lon - lon0)``, ``y = R (lat - lat0)``, angles in radians), so stations,
sites and inversion results land where the registry and the map put them.

What each quantity is made of: particulates are a background (hourly varying, with a
gradient across the district) + a small station-local term (unmodelled traffic) + the
plumes of the hidden sources (rates in g/s of PM10; PM2.5, PM1 and TSP by per-kind
fractions); gases follow diurnal patterns (NO2 rush hours, afternoon O3, night CO2) plus
industrial SO2/NO2; met quantities come from ``Weather``.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from firmware_sim import truth as physics
from firmware_sim.world_fields import (
    TURBULENCE_DEG,
    FixedWind,
    Wave,
    Weather,
    key,
    normal,
    normals,
)
from firmware_sim.world_layout import Layout, build_layout
from firmware_sim.world_sensors import KIND_QUANTITIES, SensorModel
from protocols import geo
from protocols.errors import InputError
from protocols.quantities import QUANTITIES
from protocols.timefmt import to_iso

DEFAULT_START = 1748822400  # 2025-06-02T00:00:00Z
# fractions of a source's PM10 rate emitted as other quantities, by source kind
_PM25 = {"construction": 0.15, "industrial": 0.55, "restaurant": 0.85, "traffic": 0.5, "other": 0.4}
_TSP = {"construction": 2.5, "industrial": 1.4, "restaurant": 1.1, "traffic": 1.8, "other": 1.5}
_GAS = {"so2": {"industrial": 0.8}, "no2": {"industrial": 0.6, "traffic": 1.0},
        "co": {"industrial": 2.0, "traffic": 4.0}, "voc": {"restaurant": 2.0}}
_PUFF_MAX_AGE_MIN = 90


@dataclass(frozen=True)
class Station:
    id: str
    kind: str  # reference | micro | dust | met
    x_m: float
    y_m: float
    z_m: float  # inlet height above ground
    lat: float
    lon: float


@dataclass(frozen=True)
class Site:
    id: str
    kind: str  # construction | industrial | restaurant | traffic | other
    x_m: float
    y_m: float
    h_m: float


@dataclass(frozen=True)
class Source:
    """A hidden emitter: PM10 ``rate_g_s`` at profile 1.0, shaped by ``profile``."""

    x_m: float
    y_m: float
    h_m: float
    rate_g_s: float
    profile: str  # constant | workday | meals | traffic
    site: str | None
    kind: str = "other"
    variability: float = 0.15  # slow random modulation of the rate (fraction, 0 = none)


@dataclass(frozen=True)
class Met:
    wind_speed_ms: float
    wind_dir_deg: float  # the direction the wind blows from, clockwise from north
    stability: str
    sigma_theta_deg: float
    temp_c: float
    rh_pct: float
    pressure_hpa: float
    mixing_height_m: float


@dataclass(frozen=True)
class TrueSource:
    """A source as the truth for scoring: position and mean PM10 rate over a window."""

    x_m: float
    y_m: float
    h_m: float
    rate_g_s: float
    site: str | None
    kind: str


def profile_factor(profile: str, solar_hour: np.ndarray) -> np.ndarray:
    """Relative emission by local solar hour for a time profile."""
    h = np.asarray(solar_hour, dtype=float)
    if profile == "workday":  # site works 07-19 with ramps; stockpiles still lose dust
        ramp = np.clip(np.minimum(h - 6.5, 19.5 - h), 0.0, 1.0)
        return 0.2 + 0.8 * ramp
    if profile == "meals":
        peaks = np.exp(-0.5 * ((h - 12.0) / 1.0) ** 2) + np.exp(-0.5 * ((h - 18.5) / 1.2) ** 2)
        meals: np.ndarray = 0.15 + 0.85 * np.clip(peaks, 0.0, 1.0)
        return meals
    if profile == "traffic":
        peaks = np.exp(-0.5 * ((h - 8.0) / 1.3) ** 2) + np.exp(-0.5 * ((h - 18.0) / 1.5) ** 2)
        traffic: np.ndarray = 0.3 + 0.7 * np.clip(peaks, 0.0, 1.0)
        return traffic
    return np.ones_like(h)


def iso_hour(t: int) -> str:
    return to_iso(t, ms=False)


@dataclass
class World:
    """A generated district. Build with ``World.generate``; query with time passed in."""

    seed: int
    start: int
    origin_lat_lon: tuple[float, float]
    domain: tuple[float, float, float, float]
    stations: tuple[Station, ...]
    sites: tuple[Site, ...]
    sources: tuple[Source, ...]
    weather: Weather
    truth_model: str = "plume"
    sigma_set: str = "briggs-urban"
    background_ug_m3: float = 60.0
    gradient_ug_m3_per_km: float = 4.0
    local_ug_m3: float = 3.0
    met_error_deg: float = 3.0
    _cache: OrderedDict[int, dict[str, np.ndarray]] = field(default_factory=OrderedDict, repr=False)
    _hours: dict[int, tuple[float, float, str, float]] = field(default_factory=dict, repr=False)

    # ----------------------------------------------------------------- building
    @classmethod
    def generate(
        cls,
        seed: int,
        *,
        n_stations: int | None = None,
        spacing_m: float = 550.0,
        domain: tuple[float, float, float, float] | None = None,
        kinds: dict[str, float] | None = None,
        dust_at_sites: bool = True,
        sites_per_km2: float = 6.0,
        site_kinds: dict[str, float] | None = None,
        n_sources: int = 1,
        source_kinds: tuple[str, ...] = ("construction",),
        off_registry: int = 0,
        source_margin_m: float | None = None,
        rate_range_g_s: tuple[float, float] | None = None,
        stations: list[dict[str, Any]] | None = None,
        sources: list[dict[str, Any]] | None = None,
        start: int = DEFAULT_START,
        origin_lat_lon: tuple[float, float] = (34.8, 113.55),
        truth_model: str = "plume",
        sigma_set: str = "briggs-urban",
        background_ug_m3: float = 60.0,
        gradient_ug_m3_per_km: float = 4.0,
        local_ug_m3: float = 3.0,
        mean_wind_ms: float = 3.0,
        turning_deg: float = 80.0,
        meander: float = 1.0,
        met_error_deg: float = 3.0,
        fixed_wind: FixedWind | None = None,
    ) -> World:
        """A district from a seed.

        Layout (``firmware_sim.world_layout.build_layout``): ``n_stations`` on a jittered
        grid at ``spacing_m`` (or filling ``domain``), kinds mixed by ``kinds`` (fractions
        of reference | micro | dust | met; dust monitors stand at construction sites when
        ``dust_at_sites``), ``sites_per_km2`` registered sites mixed by ``site_kinds``,
        ``n_sources`` hidden sources of ``source_kinds`` (cycled), the last
        ``off_registry`` of them on no register, ``source_margin_m`` inside the edge,
        PM10 rates drawn from ``rate_range_g_s`` (default: by kind); ``stations`` and
        ``sources`` as dicts replace the generated ones.
        World: ``start`` (epoch s), ``origin_lat_lon``, ``truth_model`` ("plume" | "puff"),
        ``sigma_set`` ("briggs-urban" | "briggs-rural" | "pg-martin"), PM10
        ``background_ug_m3`` with ``gradient_ug_m3_per_km``, ``local_ug_m3`` (unmodelled
        traffic near stations), weather (``mean_wind_ms``, ``turning_deg``, ``meander``
        scale, 0 = none, or ``fixed_wind``), ``met_error_deg`` (error of the reported
        hourly wind direction).
        """
        if truth_model not in ("plume", "puff"):
            raise InputError(f"truth_model {truth_model!r} is not 'plume' or 'puff'")
        if sigma_set not in physics.SIGMA_SETS:
            raise InputError(f"sigma_set {sigma_set!r} is not one of {physics.SIGMA_SETS}")
        if fixed_wind is not None and not isinstance(fixed_wind, FixedWind):
            raise InputError("fixed_wind must be a firmware_sim.world_fields.FixedWind")
        lat0, lon0 = float(origin_lat_lon[0]), float(origin_lat_lon[1])
        weather = Weather(seed, lat0, lon0, mean_speed_ms=mean_wind_ms, turning_deg=turning_deg,
                          meander=meander, fixed=fixed_wind)
        layout: Layout = build_layout(
            seed, n_stations=n_stations, spacing_m=spacing_m, domain=domain, kinds=kinds,
            dust_at_sites=dust_at_sites, sites_per_km2=sites_per_km2, site_kinds=site_kinds,
            n_sources=n_sources, source_kinds=source_kinds, off_registry=off_registry,
            source_margin_m=source_margin_m, rate_range_g_s=rate_range_g_s, stations=stations,
            sources=sources)
        placed = tuple(
            Station(s.id, s.kind, s.x_m, s.y_m, s.z_m, *_to_lat_lon(lat0, lon0, s.x_m, s.y_m))
            for s in layout.stations
        )
        return cls(
            seed=seed,
            start=int(start),
            origin_lat_lon=(lat0, lon0),
            domain=layout.domain,
            stations=placed,
            sites=tuple(Site(*s) for s in layout.sites),
            sources=tuple(Source(**s) for s in layout.sources),
            weather=weather,
            truth_model=truth_model,
            sigma_set=sigma_set,
            background_ug_m3=float(background_ug_m3),
            gradient_ug_m3_per_km=float(gradient_ug_m3_per_km),
            local_ug_m3=float(local_ug_m3),
            met_error_deg=float(met_error_deg),
        )

    def __post_init__(self) -> None:
        self._index = {s.id: i for i, s in enumerate(self.stations)}
        self._rec = np.array([[s.x_m, s.y_m, s.z_m] for s in self.stations], dtype=float)
        self._src_xy = np.array([[s.x_m, s.y_m] for s in self.sources], dtype=float).reshape(-1, 2)
        self._src_h = np.array([s.h_m for s in self.sources], dtype=float)
        self._sensors = SensorModel(self.seed, self.start)
        self._bg_wave = Wave(key(self.seed, "bg"), 3 * 3600.0, 48 * 3600.0)
        self._grad_wave = Wave(key(self.seed, "grad"), 12 * 3600.0, 96 * 3600.0)
        self._rate_waves = [Wave(key(self.seed, "rate", i), 1800.0, 6 * 3600.0)
                            for i in range(len(self.sources))]
        local = normals(key(self.seed, "local"), np.arange(len(self.stations)))
        self._local_amp = self.local_ug_m3 * np.abs(local)

    # --------------------------------------------------------------- geometry
    def to_lat_lon(self, x_m: float, y_m: float) -> tuple[float, float]:
        """Local metres -> (lat, lon) degrees (``protocols.geo``)."""
        return _to_lat_lon(*self.origin_lat_lon, x_m, y_m)

    def from_lat_lon(self, lat: float, lon: float) -> tuple[float, float]:
        """(lat, lon) degrees -> local metres east and north of the origin."""
        return geo.to_local(lat, lon, geo.Origin(*self.origin_lat_lon))

    def station(self, station_id: str) -> Station:
        if station_id not in self._index:
            raise InputError(f"no station {station_id!r} in this world", station=station_id)
        return self.stations[self._index[station_id]]

    def quantities(self, station_id: str) -> tuple[str, ...]:
        """What a station of this kind measures."""
        return KIND_QUANTITIES[self.station(station_id).kind]

    # ------------------------------------------------------------- weather
    def _hour(self, hour_start: int) -> tuple[float, float, str, float]:
        """(mean speed, vector-mean direction, class, sigma_theta) of an hour (true)."""
        if hour_start not in self._hours:
            minutes = np.arange(hour_start // 60, hour_start // 60 + 60)
            sp, dr = self.weather.minute_wind(minutes)
            rad = np.radians(dr)
            sa, ca = float(np.mean(np.sin(rad))), float(np.mean(np.cos(rad)))
            eps = math.sqrt(max(0.0, 1.0 - (sa * sa + ca * ca)))
            meander = math.degrees(math.asin(min(1.0, eps)) * (1.0 + 0.1547 * eps**3))
            cls_ = self.weather.hour_class(hour_start)
            sig = math.hypot(TURBULENCE_DEG[cls_], meander)
            self._hours[hour_start] = (
                float(np.mean(sp)), math.degrees(math.atan2(sa, ca)) % 360.0, cls_, sig)
        return self._hours[hour_start]

    def met(self, t: float) -> Met:
        """Conditions in the minute containing ``t`` (its wind, the hour's class and
        sigma_theta)."""
        minute = int(t // 60)
        sp, dr = self.weather.minute_wind(np.array([minute]))
        _, _, cls_, sig = self._hour(minute // 60 * 3600)
        tm = minute * 60 + 30.0
        return Met(
            wind_speed_ms=float(sp[0]),
            wind_dir_deg=float(dr[0]),
            stability=cls_,
            sigma_theta_deg=sig,
            temp_c=float(self.weather.temp_c(tm)),
            rh_pct=float(self.weather.rh_pct(tm)),
            pressure_hpa=float(self.weather.pressure_hpa(tm)),
            mixing_height_m=float(self.weather.mixing_height_m(tm)),
        )

    # ----------------------------------------------------------- the physics
    def source_rates(self, minutes: np.ndarray) -> np.ndarray:
        """PM10 rate (g/s) of each source at each minute: (len(minutes), n_sources)."""
        t = np.asarray(minutes, dtype=float) * 60.0 + 30.0
        solar = self.weather.solar_hour(t)
        cols = [
            s.rate_g_s * profile_factor(s.profile, solar) * (1.0 + s.variability * w(t))
            for s, w in zip(self.sources, self._rate_waves, strict=True)
        ]
        return np.stack(cols, axis=1) if cols else np.zeros((len(t), 0))

    def _plumes(self, minutes: np.ndarray) -> np.ndarray:
        """PM10 contributions (ug/m3), shape (len(minutes), n_stations, n_sources)."""
        out = np.zeros((len(minutes), len(self.stations), len(self.sources)))
        if not self.sources:
            return out
        rates = self.source_rates(minutes)
        if self.truth_model == "puff":
            return self._puffs(minutes, rates)
        sp, dr = self.weather.minute_wind(minutes)
        for i, m in enumerate(minutes):
            hour = int(m) // 60 * 3600
            out[i] = physics.plume_minute(
                rates[i], self._src_xy, self._src_h, self._rec,
                wind_speed=float(sp[i]), wind_from_deg=float(dr[i]),
                stability=self._hour(hour)[2], sigma_set=self.sigma_set,
                mixing_height=float(self.weather.mixing_height_m(m * 60.0)),
            )
        return out

    def _puffs(self, minutes: np.ndarray, rates: np.ndarray) -> np.ndarray:
        age = _PUFF_MAX_AGE_MIN
        lo, hi = int(minutes.min()) - age, int(minutes.max())
        span = np.arange(lo, hi + 1)
        sp, dr = self.weather.minute_wind(span)
        to = np.radians(dr + 180.0)
        steps = np.stack([np.sin(to), np.cos(to)], axis=1) * (sp * 60.0)[:, None]
        cum = np.vstack([np.zeros((1, 2)), np.cumsum(steps, axis=0)])
        dist = np.concatenate([[0.0], np.cumsum(sp * 60.0)])
        span_rates = self.source_rates(span)
        out = np.zeros((len(minutes), len(self.stations), len(self.sources)))
        for i, m in enumerate(minutes):
            j = int(m) - lo  # index of minute m in span
            rel = np.arange(j - age, j + 1)
            disp = cum[j] - cum[rel]
            travel = dist[j] - dist[rel]
            hour = int(m) // 60 * 3600
            for k in range(len(self.sources)):
                out[i, :, k] = physics.puff_minute(
                    span_rates[rel, k] * 60.0, self._src_xy[k] + disp, travel,
                    np.full(len(rel), self._src_h[k]), self._rec,
                    step_vec=(float(steps[j, 0]), float(steps[j, 1])),
                    stability=self._hour(hour)[2], sigma_set=self.sigma_set,
                    mixing_height=float(self.weather.mixing_height_m(m * 60.0)),
                )
        del rates
        return out

    def _background(self, minutes: np.ndarray) -> np.ndarray:
        """PM10 background (ug/m3) at each station: (len(minutes), n_stations)."""
        t = np.asarray(minutes, dtype=float) * 60.0 + 30.0
        night = np.cos(2.0 * math.pi * (self.weather.solar_hour(t) - 3.0) / 24.0)
        level = self.background_ug_m3 * (1.0 + 0.2 * night) * np.exp(0.25 * self._bg_wave(t))
        ang = key(self.seed, "grad-dir") % 360 + 40.0 * self._grad_wave(t)
        gx = self.gradient_ug_m3_per_km * np.sin(np.radians(ang)) / 1000.0
        gy = self.gradient_ug_m3_per_km * np.cos(np.radians(ang)) / 1000.0
        cx = 0.5 * (self.domain[0] + self.domain[2])
        cy = 0.5 * (self.domain[1] + self.domain[3])
        return (level[:, None] + gx[:, None] * (self._rec[None, :, 0] - cx)
                + gy[:, None] * (self._rec[None, :, 1] - cy))

    def _local(self, minutes: np.ndarray) -> np.ndarray:
        t = np.asarray(minutes, dtype=float) * 60.0 + 30.0
        shape = profile_factor("traffic", self.weather.solar_hour(t))
        out: np.ndarray = shape[:, None] * self._local_amp[None, :]
        return out

    def _fields(self, minutes: np.ndarray, quantity: str) -> np.ndarray:
        """True values of a quantity at every station for each minute: (len, n_stations)."""
        from firmware_sim.world_quantities import fields

        return fields(self, minutes, quantity)

    def _minute(self, minute: int, quantity: str) -> np.ndarray:
        entry = self._cache.get(minute)
        if entry is None:
            entry = {}
            self._cache[minute] = entry
            while len(self._cache) > 8:
                self._cache.popitem(last=False)
        if quantity not in entry:
            entry[quantity] = self._fields(np.array([minute]), quantity)[0]
        return entry[quantity]

    def concentration(self, station_id: str, quantity: str, t: float) -> float:
        """The true value at a station's inlet, averaged over the minute containing ``t``."""
        i = self._index.get(station_id)
        if i is None:
            raise InputError(f"no station {station_id!r} in this world", station=station_id)
        if quantity not in QUANTITIES:
            raise InputError(f"unknown quantity {quantity!r}", quantity=quantity)
        return float(self._minute(int(t // 60), quantity)[i])

    def sensor_value(self, station_id: str, quantity: str, t: float) -> float:
        """What the station's own sensor reads at ``t`` (raw, before any calibration)."""
        true = self.concentration(station_id, quantity, t)
        if quantity == "wind_dir" and not self.weather.fixed:
            # a vane reads the instant wind: the minute's mean + the class's own turbulence
            spread = TURBULENCE_DEG[self._hour(int(t) // 3600 * 3600)[2]]
            gust = normal(self._sensors._noise_key(station_id, "vane"), int(t))
            true = (true + spread * gust) % 360.0
        rh = self.concentration(station_id, "rh", t)
        st = self.stations[self._index[station_id]]
        return self._sensors.reading(station_id, st.kind, quantity, t, true, rh)

    def sensor_params(self, station_id: str, quantity: str) -> tuple[float, float, float, float]:
        """(slope, bias, drift per 30 days, kappa) of the station's sensor for ``quantity``:
        what a co-location campaign would find (the demo calibrates gateways with it)."""
        st = self.stations[self._index[station_id]]
        return self._sensors.params(station_id, st.kind, quantity)

    # ---------------------------------------------------------- hourly files
    def hour_starts(self, hours: int | list[int] | tuple[int, ...]) -> list[int]:
        """``hours`` as hour starts: an int n means the first n hours from ``start``."""
        if isinstance(hours, int):
            first = self.start // 3600 * 3600
            return [first + 3600 * i for i in range(hours)]
        return [int(h) // 3600 * 3600 for h in hours]

    def hourly_obs(
        self,
        hours: int | list[int] | tuple[int, ...],
        quantity: str = "pm10",
        *,
        fused: bool = True,
    ) -> list[dict[str, object]]:
        """Rows of OBS.csv (time, station, x_m, y_m, z_m, value, sigma) for the stations
        that measure ``quantity``. ``fused`` (default): calibrated, fused hourly means as the
        central service makes them (residual slope, bias and noise by station kind);
        ``fused=False``: plain hourly means of the raw sensor readings, one a minute."""
        measuring = [i for i, s in enumerate(self.stations) if quantity in KIND_QUANTITIES[s.kind]]
        rows: list[dict[str, object]] = []
        for h in self.hour_starts(hours):
            minutes = np.arange(h // 60, h // 60 + 60)
            true = self._fields(minutes, quantity)
            rh = self._fields(minutes, "rh") if not fused else None
            for i in measuring:
                st = self.stations[i]
                if fused:
                    value, sigma = self._sensors.fused_hourly(
                        st.id, st.kind, quantity, h // 3600, float(np.mean(true[:, i])))
                else:
                    assert rh is not None
                    reads = [self._sensors.reading(st.id, st.kind, quantity, int(m) * 60,
                                                   float(true[j, i]), float(rh[j, i]))
                             for j, m in enumerate(minutes)]
                    value, sigma = float(np.mean(reads)), float(np.std(reads) / math.sqrt(60))
                rows.append({"time": iso_hour(h), "station": st.id, "x_m": round(st.x_m, 1),
                             "y_m": round(st.y_m, 1), "z_m": round(st.z_m, 1),
                             "value": round(value, 2), "sigma": round(sigma, 2)})
        return rows

    def hourly_met(
        self, hours: int | list[int] | tuple[int, ...], *, stability: bool = True
    ) -> list[dict[str, object]]:
        """Rows of MET.csv: time, wind_speed_ms, wind_dir_deg (from), and unless
        ``stability=False`` the class; always sigma_theta_deg (an extra column the
        inversion uses for meander). The reported direction carries the met mast's error
        (``met_error_deg``, one draw per hour)."""
        rows: list[dict[str, object]] = []
        for h in self.hour_starts(hours):
            speed, direction, cls_, sig = self._hour(h)
            err = self.met_error_deg * float(normals(key(self.seed, "met-err"), h // 3600)[()])
            row: dict[str, object] = {"time": iso_hour(h), "wind_speed_ms": round(speed, 2),
                                      "wind_dir_deg": round((direction + err) % 360.0, 1)}
            if stability:
                row["stability"] = cls_
            row["sigma_theta_deg"] = round(sig, 1)
            rows.append(row)
        return rows

    def truth(self, hours: int | list[int] | tuple[int, ...] = 24) -> tuple[TrueSource, ...]:
        """The hidden sources with their mean PM10 rates over the given hours."""
        starts = self.hour_starts(hours)
        minutes = np.concatenate([np.arange(h // 60, h // 60 + 60) for h in starts])
        mean = self.source_rates(minutes).mean(axis=0) if len(minutes) else []
        return tuple(TrueSource(s.x_m, s.y_m, s.h_m, float(r), s.site, s.kind)
                     for s, r in zip(self.sources, mean, strict=True))

    def sites_csv_rows(self) -> list[dict[str, object]]:
        """Rows of SITES.csv: site, x_m, y_m, h_m, kind."""
        return [{"site": s.id, "x_m": round(s.x_m, 1), "y_m": round(s.y_m, 1),
                 "h_m": round(s.h_m, 1), "kind": s.kind} for s in self.sites]


def _to_lat_lon(lat0: float, lon0: float, x_m: float, y_m: float) -> tuple[float, float]:
    return geo.to_latlon(x_m, y_m, geo.Origin(lat0, lon0))


def rows_to_csv(rows: list[dict[str, object]]) -> str:
    """Rows (all with the same keys) as CSV text with a header, ``\\n`` line ends."""
    if not rows:
        return ""
    cols = list(rows[0])
    lines = [",".join(cols)]
    lines += [",".join(str(r[c]) for c in cols) for r in rows]
    return "\n".join(lines) + "\n"

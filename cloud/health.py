"""Station health: offline (the retained status / last will), stale (no data), stuck (a
flat line), drift (hourly means drifting away from the neighbours').

``assess(now)`` judges every registered station and returns ``Health`` values, worst
first in ``status``: offline > stale > stuck > drift > ok (``unknown`` for a station that
never sent data). Stuck: over the last ``stuck_minutes`` a quantity's valid values are all
equal (at least 5 readings; pollutants and wind speed only). Drift: over the last
``drift_hours`` the median ratio of the station's valid hourly means to the median of its
neighbours' (stations within ``neighbour_radius_m``, at least two, or one reference) is off
1 by more than ``drift_ratio``; judged for the quantities ``colocation_quantities`` names
(PM by default).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from cloud.config import DomainConfig, FusionConfig
from cloud.fusion import HOUR, Fusion, station_xy
from cloud.store import Store
from cloud.store.types import Health, Station
from protocols.telemetry import VALID_FLAGS

STUCK_MIN_READINGS = 5
#: what is judged for a flat line: pollutants and wind speed vary minute to minute; a
#: temperature or humidity may sit still for an hour at the sensor's resolution
STUCK_QUANTITIES = frozenset(
    {
        "pm1",
        "pm25",
        "pm10",
        "tsp",
        "no2",
        "no",
        "nox",
        "so2",
        "co",
        "o3",
        "voc",
        "co2",
        "wind_speed",
    }
)
DRIFT_MIN_HOURS = 6


class HealthJudge:
    def __init__(
        self,
        store: Store,
        cfg: FusionConfig | None = None,
        domain: DomainConfig | None = None,
    ) -> None:
        self.store = store
        self.cfg = cfg or FusionConfig()
        self.domain = domain or DomainConfig()
        self.fusion = Fusion(store, self.cfg, self.domain)

    def assess(self, now: float, *, drift: bool = True) -> list[Health]:
        stations = self.store.stations()
        streams = self.store.streams()
        last: dict[str, float] = {}
        by_station: dict[str, list[str]] = {}
        for station, quantity, _unit, _ts, arrived in streams:
            last[station] = max(last.get(station, 0.0), arrived)
            by_station.setdefault(station, []).append(quantity)
        drifting = self._drift(stations, now) if drift else {}
        out = []
        for st in stations:
            if st.status == "retired":
                continue
            reasons: list[str] = []
            status = "ok"
            received = last.get(st.id)
            if st.state == "offline":
                status = "offline"
                reasons.append("gateway offline (status / last will)")
            if received is None:
                if status == "ok":
                    status = "unknown"
                reasons.append("no data yet")
            elif now - received > self.cfg.offline_after_s:
                if status == "ok":
                    status = "stale"
                reasons.append(f"no data for {int((now - received) // 60)} min")
            for quantity in by_station.get(st.id, []):
                if quantity in STUCK_QUANTITIES and self._stuck(st.id, quantity, now):
                    if status == "ok":
                        status = "stuck"
                    reasons.append(f"{quantity} flat for {self.cfg.stuck_minutes:g} min")
            for why in drifting.get(st.id, []):
                if status == "ok":
                    status = "drift"
                reasons.append(why)
            out.append(Health(st.id, status, tuple(reasons), now, received))
        return out

    def _stuck(self, station: str, quantity: str, now: float) -> bool:
        since = now - self.cfg.stuck_minutes * 60
        values = [
            r[1]
            for r in self.store.series(station, quantity, since, now + 1)
            if r[1] is not None and r[3] in VALID_FLAGS
        ]
        return len(values) >= STUCK_MIN_READINGS and max(values) == min(values)

    def _drift(self, stations: Sequence[Station], now: float) -> dict[str, list[str]]:
        if not self.domain.has_origin:
            return {}
        origin = self.fusion.origin
        placed = [
            (st, xy)
            for st in stations
            if st.status == "confirmed" and (xy := station_xy(st, origin)) is not None
        ]
        end = math.floor(now / HOUR) * HOUR
        since = end - self.cfg.drift_hours * HOUR
        out: dict[str, list[str]] = {}
        for quantity in self.cfg.colocation_quantities:
            hourly: dict[str, dict[float, float]] = {}
            for st, _ in placed:
                hourly[st.id] = {
                    m.start: m.value
                    for m in self.fusion.means(st.id, quantity, since, end)
                    if m.valid and m.value is not None
                }
            for st, xy in placed:
                mine = hourly.get(st.id)
                if not mine:
                    continue
                near = [
                    other
                    for other, oxy in placed
                    if other.id != st.id
                    and hourly.get(other.id)
                    and _dist(xy, oxy) <= self.cfg.neighbour_radius_m
                ]
                if len(near) < 2 and not any(o.kind == "reference" for o in near):
                    continue
                ratio = _median_ratio(mine, [hourly[o.id] for o in near])
                if ratio is not None and abs(ratio - 1.0) > self.cfg.drift_ratio:
                    out.setdefault(st.id, []).append(
                        f"{quantity} reads {ratio:.2f}x its {len(near)} neighbours "
                        f"over {self.cfg.drift_hours} h"
                    )
        return out


def _dist(a: tuple[float, float], b: tuple[float, float]) -> float:
    return math.hypot(a[0] - b[0], a[1] - b[1])


def _median_ratio(mine: dict[float, float], others: list[dict[float, float]]) -> float | None:
    ratios = []
    for hour, value in mine.items():
        vals = [o[hour] for o in others if hour in o]
        if not vals:
            continue
        ref = statistics.median(vals)
        if ref > 0:
            ratios.append(value / ref)
    if len(ratios) < DRIFT_MIN_HOURS:
        return None
    return statistics.median(ratios)

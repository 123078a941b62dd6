"""Data-driven verification of a rectification: the emission at the event's place before
and after the rectification was reported, and the concentrations at the stations nearby.

Rates come hour by hour from the hourly inversion (``event_rates``): a located source at
the place gives its rate and sigma; an hour where the inversion found nothing there counts
as ``0 +- detection_limit_g_s``. "Before" takes the hours that ended by the rectification,
"after" the hours that began after it; the hour it falls in counts on neither side (and
the alerts engine records no "after" hour whose inversion window reaches back before it).
Each side is the inverse-variance weighted mean of its hours, its sigma the larger of the
formal one and the hours' scatter / sqrt(n) (the rate of a real source moves from hour to
hour).

Verdict, with ``r`` = ``min_reduction`` and ``z`` = ``z_min``:

* ``pending`` — fewer than ``after_hours`` hours since the rectification;
* ``reduced`` — the rate fell by at least ``r`` and the fall is ``z`` sigma clear of zero;
* ``not_reduced`` — the rate after is ``z`` sigma above ``(1 - r)`` x the rate before;
* ``inconclusive`` — anything else (or no rate before): the verifier decides on the
  station data and a site visit.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Final

from cloud.events_store import Event, RateRow

HOUR: Final = 3600.0


@dataclass(frozen=True)
class VerificationConfig:
    before_hours: int = 6
    after_hours: int = 3
    min_reduction: float = 0.5
    z_min: float = 2.0
    detection_limit_g_s: float = 0.05
    station_radius_m: float = 1000.0
    auto: bool = False  # close / rework by the verdict without a person


@dataclass(frozen=True)
class RateSummary:
    rate_g_s: float
    sigma_g_s: float
    hours: int
    detected_hours: int


@dataclass(frozen=True)
class StationChange:
    station: str
    distance_m: float
    before_ug_m3: float | None
    before_se: float | None
    after_ug_m3: float | None
    after_se: float | None
    hours_before: int
    hours_after: int


@dataclass(frozen=True)
class Evidence:
    event: str
    since: float | None
    before: RateSummary | None
    after: RateSummary | None
    reduction: float | None
    z: float | None
    verdict: str
    stations: tuple[StationChange, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def summarise(rows: Sequence[RateRow], detection_limit: float) -> RateSummary | None:
    if not rows:
        return None
    rates = [r.rate if r.detected else 0.0 for r in rows]
    sigmas = [
        max(r.sigma or 0.0, 1e-9) if r.detected else max(r.sigma or 0.0, detection_limit)
        for r in rows
    ]
    w = [1.0 / s**2 for s in sigmas]
    mean = sum(wi * ri for wi, ri in zip(w, rates, strict=True)) / sum(w)
    formal = math.sqrt(1.0 / sum(w))
    scatter = statistics.stdev(rates) / math.sqrt(len(rates)) if len(rates) > 1 else 0.0
    return RateSummary(
        rate_g_s=mean,
        sigma_g_s=max(formal, scatter),
        hours=len(rows),
        detected_hours=sum(1 for r in rows if r.detected),
    )


def _mean_se(values: Sequence[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else None
    return statistics.fmean(values), se


StationHours = Callable[[str, str, float, float], list[float]]
Nearby = Callable[[tuple[float, float], float], list[tuple[str, float]]]


def evidence(
    ev: Event,
    rates: Sequence[RateRow],
    cfg: VerificationConfig,
    now: float,
    *,
    nearby: Nearby | None = None,
    station_hours: StationHours | None = None,
) -> Evidence:
    """What the verifier sees for ``ev`` at ``now``."""
    since = ev.rectified_at
    quantity = ev.quantity
    if quantity:
        rates = [r for r in rates if r.quantity == quantity]
    if since is None:
        return Evidence(
            ev.id, None, summarise(rates, cfg.detection_limit_g_s), None, None, None, "pending"
        )
    # the hour the rectification falls in holds emission from both sides: it counts on
    # neither (before: hours that ended by then; after: hours that began after it)
    before_rows = [
        r for r in rates if since - cfg.before_hours * HOUR <= r.hour and r.hour + HOUR <= since
    ]
    if not before_rows:  # the hits that opened the event may be older than the window
        before_rows = [r for r in rates if r.hour + HOUR <= since][-cfg.before_hours :]
    after_rows = [r for r in rates if r.hour >= since]
    before = summarise(before_rows, cfg.detection_limit_g_s)
    after = summarise(after_rows, cfg.detection_limit_g_s)
    reduction = z = None
    if after is None or after.hours < cfg.after_hours:
        verdict = "pending"
    elif before is None or before.rate_g_s <= 0:
        verdict = "inconclusive"
    else:
        sigma = math.hypot(before.sigma_g_s, after.sigma_g_s)
        reduction = 1.0 - after.rate_g_s / before.rate_g_s
        z = (before.rate_g_s - after.rate_g_s) / sigma if sigma > 0 else math.inf
        target = (1.0 - cfg.min_reduction) * before.rate_g_s
        over = math.hypot(after.sigma_g_s, (1.0 - cfg.min_reduction) * before.sigma_g_s)
        if reduction >= cfg.min_reduction and z >= cfg.z_min:
            verdict = "reduced"
        elif over > 0 and (after.rate_g_s - target) / over >= cfg.z_min:
            verdict = "not_reduced"
        else:
            verdict = "inconclusive"
    stations: list[StationChange] = []
    if (
        nearby is not None
        and station_hours is not None
        and quantity
        and ev.x_m is not None
        and ev.y_m is not None
    ):
        start = since - cfg.before_hours * HOUR
        end = max(now, since)
        for sid, dist in nearby((ev.x_m, ev.y_m), cfg.station_radius_m):
            b = station_hours(sid, quantity, start, since)
            a = station_hours(sid, quantity, since, end)
            bm, bse = _mean_se(b)
            am, ase = _mean_se(a)
            stations.append(StationChange(sid, round(dist, 1), bm, bse, am, ase, len(b), len(a)))
    return Evidence(ev.id, since, before, after, reduction, z, verdict, tuple(stations))


def inventory_at(inventory: Any, x: float, y: float) -> tuple[float, float] | None:
    """(mean, sigma) of the inventory's cell holding (x, y), if there is one."""
    if inventory is None:
        return None
    try:
        ix = math.floor((x - inventory.x0) / inventory.cell)
        iy = math.floor((y - inventory.y0) / inventory.cell)
        if 0 <= ix < inventory.nx and 0 <= iy < inventory.ny:
            return float(inventory.mean[iy, ix]), float(inventory.sigma[iy, ix])
    except (AttributeError, TypeError, IndexError):
        return None
    return None

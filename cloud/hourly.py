"""The hourly inversion job: once an hour, the last ``window_hours`` of fused hourly means
and met go through the inversion; the result, its inventory and a SHA-256 of the
canonicalised inputs are handed to the store, and source hits to the alerts.

Nothing here knows the store, the broker or the clock: ``run_hour`` is a pure function of
its inputs (re-run it on the same inputs and the hash and the result come out the same;
``verify`` does exactly that), and ``HourlyJob`` drives it with callables it is given --
``clock() -> epoch seconds``, ``fetch_inputs(first_hour, last_hour) -> (obs, met, sites)``,
``save_result(HourResult)``, ``on_sources(HourResult)`` -- so the central service wires in
its store and alerts and a test wires in a fake clock and lists.

Hour ``H`` (its start, epoch seconds) is due once the clock passes ``H + 3600 + lag_s``
(the lag lets late readings in). Missed hours are caught up in order, at most
``max_catch_up`` of them; an hour whose inputs are bad or whose run fails is logged,
counted and retried on the next tick up to ``retries`` times, then skipped -- the loop
itself never dies of it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cloud.inversion import invert
from cloud.inversion_matrix import MatrixCache
from cloud.inversion_types import InversionConfig, InversionResult, MetRow, ObsRow, SiteRow
from cloud.invert_io import met_from_dicts, obs_from_dicts, result_json, sites_from_dicts
from protocols.errors import AirtraceError, InputError

log = logging.getLogger("airtrace.cloud.hourly")
METHOD_VERSION = "airtrace-inversion/1"

Rows = Sequence[Any]
Inputs = tuple[Rows, Rows, Rows]


@dataclass(frozen=True)
class HourResult:
    """One hour's inversion: what the store keeps and the alerts read."""

    hour_start: int
    window: tuple[int, int]  # first and last hour start of the window
    inputs_sha256: str
    result: InversionResult

    def to_json(self) -> dict[str, Any]:
        return result_json(self.result, hour_start=self.hour_start,
                           window=list(self.window), inputs_sha256=self.inputs_sha256,
                           method_version=METHOD_VERSION)


def _as_rows(obs: Rows, met: Rows, sites: Rows) -> tuple[list[ObsRow], list[MetRow], list[SiteRow]]:
    o = obs_from_dicts(obs) if obs and isinstance(obs[0], Mapping) else list(obs)
    m = met_from_dicts(met) if met and isinstance(met[0], Mapping) else list(met)
    s = sites_from_dicts(sites) if sites and isinstance(sites[0], Mapping) else list(sites)
    return o, m, s


def _num(v: float | None) -> float | None:
    return None if v is None else float(v)


def canonical_inputs(
    hour_start: int,
    obs: Sequence[ObsRow],
    met: Sequence[MetRow],
    sites: Sequence[SiteRow],
    config: InversionConfig,
    domain: tuple[float, float, float, float],
) -> bytes:
    """The inputs as canonical JSON bytes: rows sorted, floats in their shortest exact
    form, the config and the method version included."""
    doc = {
        "method": METHOD_VERSION,
        "hour_start": int(hour_start),
        "domain": [float(v) for v in domain],
        "config": json.loads(json.dumps(dataclasses.asdict(config))),
        "obs": [[r.time, r.station, float(r.x_m), float(r.y_m), float(r.z_m), float(r.value),
                 _num(r.sigma), r.kind] for r in sorted(obs, key=lambda r: (r.time, r.station))],
        "met": [[m.time, float(m.wind_speed_ms), float(m.wind_dir_deg), m.stability,
                 _num(m.sigma_theta_deg), _num(m.mixing_height_m), _num(m.obukhov_m),
                 _num(m.cloud_okta)] for m in sorted(met, key=lambda m: m.time)],
        "sites": [[s.site, float(s.x_m), float(s.y_m), _num(s.h_m), s.kind]
                  for s in sorted(sites, key=lambda s: s.site)],
    }
    return json.dumps(doc, separators=(",", ":"), sort_keys=True, allow_nan=False).encode()


def window_of(hour_start: int, config: InversionConfig) -> tuple[int, int]:
    h = int(hour_start) // 3600 * 3600
    return h - (config.window_hours - 1) * 3600, h


def run_hour(
    hour_start: int,
    obs_rows: Rows,
    met_rows: Rows,
    sites: Rows = (),
    *,
    config: InversionConfig,
    domain: tuple[float, float, float, float],
    cache: MatrixCache | None = None,
) -> HourResult:
    """Invert the window ending with hour ``hour_start`` (rows outside it are ignored).

    Rows may be ``ObsRow``/``MetRow``/``SiteRow`` or dicts shaped like the CSV files
    (validated the same way; bad rows raise ``InputError``)."""
    if hour_start % 3600:
        raise InputError(f"hour_start {hour_start} is not the start of an hour")
    first, last = window_of(hour_start, config)
    obs, met, site_rows = _as_rows(obs_rows, met_rows, sites)
    obs = [r for r in obs if first <= r.time <= last]
    met = [m for m in met if first <= m.time <= last]
    digest = hashlib.sha256(canonical_inputs(hour_start, obs, met, site_rows, config,
                                             domain)).hexdigest()
    if obs:
        result = invert(obs, met, domain, sites=site_rows, config=config, cache=cache)
    else:
        result = InversionResult((), 0.0, 0.0,
                                 warnings=("no observations in the window",))
    return HourResult(hour_start, (first, last), digest, result)


def verify(stored: HourResult | Mapping[str, Any], obs_rows: Rows, met_rows: Rows,
           sites: Rows = (), *, config: InversionConfig,
           domain: tuple[float, float, float, float]) -> bool:
    """Re-run an hour and say whether inputs (by hash) and sources match what was stored."""
    doc = stored.to_json() if isinstance(stored, HourResult) else dict(stored)
    again = run_hour(int(doc["hour_start"]), obs_rows, met_rows, sites, config=config,
                     domain=domain).to_json()
    return bool(again["inputs_sha256"] == doc["inputs_sha256"]
                and again["sources"] == doc["sources"])


@dataclass
class HourlyJob:
    """Runs ``run_hour`` for every hour that falls due on the injected clock."""

    clock: Callable[[], float]
    fetch_inputs: Callable[[int, int], Inputs]
    save_result: Callable[[HourResult], None]
    on_sources: Callable[[HourResult], None]
    config: InversionConfig
    domain: tuple[float, float, float, float]
    lag_s: float = 300.0
    max_catch_up: int = 24
    retries: int = 2
    last_done: int | None = None  # the last hour handled (run or given up)
    runs: int = 0
    failures: int = 0
    cache: MatrixCache = field(default_factory=MatrixCache)
    _tries: dict[int, int] = field(default_factory=dict)

    def latest_due(self) -> int:
        """The start of the newest hour whose results may be computed now."""
        return int((self.clock() - self.lag_s) // 3600) * 3600 - 3600

    def pending(self) -> list[int]:
        newest = self.latest_due()
        if self.last_done is None:
            self.last_done = newest - 3600
        first = max(self.last_done + 3600, newest - (self.max_catch_up - 1) * 3600)
        return list(range(first, newest + 1, 3600))

    def tick(self) -> list[HourResult]:
        """Run every due hour in order; never raises for a bad hour."""
        done: list[HourResult] = []
        for hour in self.pending():
            try:
                first, last = window_of(hour, self.config)
                obs, met, sites = self.fetch_inputs(first, last)
                res = run_hour(hour, obs, met, sites, config=self.config, domain=self.domain,
                               cache=self.cache)
                self.save_result(res)
                if res.result.sources:
                    self.on_sources(res)
            except Exception as exc:  # one bad hour must not stop the service
                self.failures += 1
                tries = self._tries.get(hour, 0) + 1
                self._tries[hour] = tries
                kind = "bad input" if isinstance(exc, AirtraceError) else "failed"
                log.error("inversion for hour %s %s (try %d): %s", hour, kind, tries, exc,
                          exc_info=not isinstance(exc, AirtraceError))
                if tries <= self.retries:
                    break  # try this hour again on the next tick, keep the order
                self.last_done = hour
                continue
            self.runs += 1
            self.last_done = hour
            self._tries.pop(hour, None)
            done.append(res)
        return done

    def seconds_to_next(self) -> float:
        """How long until the next hour falls due (0 when one is due now)."""
        if self.pending():
            return 0.0
        assert self.last_done is not None
        due_at = self.last_done + 2 * 3600 + self.lag_s
        return max(0.0, due_at - self.clock())

    def run(self, sleep: Callable[[float], None], stop: Callable[[], bool],
            max_sleep_s: float = 60.0) -> None:
        """Tick, sleep until the next hour is due (in slices of ``max_sleep_s`` so ``stop``
        is seen), until ``stop()`` says so."""
        while not stop():
            self.tick()
            sleep(min(max_sleep_s, max(1.0, self.seconds_to_next())))

"""The hourly inversion job: once an hour, the last ``window_hours`` of fused hourly means
and met go through the inversion; the result, its inventory and a SHA-256 of the
canonicalised inputs are handed to the store, and source hits to the alerts.

Nothing here knows the store, the broker or the clock: ``run_hour`` is a pure function of
its inputs (re-run it on the same inputs and the hash and the result come out the same;
``verify`` does exactly that), and ``HourlyJob`` drives it with callables it is given --
``clock() -> epoch seconds``, ``fetch_inputs(first_hour, last_hour) -> (obs, met, sites)``,
``save_result(HourResult)``, ``on_sources(HourResult)`` (every hour, sources or none) -- so
the central service wires in its store and alerts (``make_part(service)``, in
``cloud.hourly_part``) and a test wires in a fake clock and lists.

Hour ``H`` (its start, epoch seconds) is due once the clock passes ``H + 3600 + lag_s``
(the lag lets late readings in). Missed hours are caught up in order, at most
``max_catch_up`` of them; an hour whose inputs are bad or whose run fails is logged,
counted and retried on the next tick up to ``retries`` times, then skipped -- the loop
itself never dies of it. Each time new hours have run, the ``rerun_hours`` before them are
checked again: an hour whose inputs hash changed since it ran (readings that came late) is
re-run and its stored result replaced; the alerts are not told again.
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
    first, last = window_of(hour_start, config)
    obs, met, site_rows, digest = _window_inputs(hour_start, obs_rows, met_rows, sites,
                                                 config, domain)
    if obs:
        result = invert(obs, met, domain, sites=site_rows, config=config, cache=cache)
    else:
        result = InversionResult((), 0.0, 0.0,
                                 warnings=("no observations in the window",))
    return HourResult(hour_start, (first, last), digest, result)


def _window_inputs(
    hour_start: int, obs_rows: Rows, met_rows: Rows, sites: Rows, config: InversionConfig,
    domain: tuple[float, float, float, float],
) -> tuple[list[ObsRow], list[MetRow], list[SiteRow], str]:
    """The rows of the hour's window, checked, and the SHA-256 of their canonical form."""
    if hour_start % 3600:
        raise InputError(f"hour_start {hour_start} is not the start of an hour")
    first, last = window_of(hour_start, config)
    obs, met, site_rows = _as_rows(obs_rows, met_rows, sites)
    obs = [r for r in obs if first <= r.time <= last]
    met = [m for m in met if first <= m.time <= last]
    digest = hashlib.sha256(canonical_inputs(hour_start, obs, met, site_rows, config,
                                             domain)).hexdigest()
    return obs, met, site_rows, digest


def inputs_sha256(hour_start: int, obs_rows: Rows, met_rows: Rows, sites: Rows = (), *,
                  config: InversionConfig, domain: tuple[float, float, float, float]) -> str:
    """What ``run_hour`` would record as the hour's ``inputs_sha256``, without inverting."""
    return _window_inputs(hour_start, obs_rows, met_rows, sites, config, domain)[3]


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
    domain: tuple[float, float, float, float] | None = None  # None: around the stations
    lag_s: float = 300.0
    max_catch_up: int = 24
    retries: int = 2
    rerun_hours: int = 6  # once an hour, re-run those of the last N whose inputs changed
    last_done: int | None = None  # the last hour handled (run or given up)
    runs: int = 0
    reruns: int = 0
    failures: int = 0
    cache: MatrixCache | None = None  # default: room for one window and a spare hour
    _tries: dict[int, int] = field(default_factory=dict)
    _digests: dict[int, str] = field(default_factory=dict)  # hour -> inputs it ran on

    def __post_init__(self) -> None:
        if self.cache is None:
            self.cache = MatrixCache(max_blocks=self.config.window_hours + 2)

    def latest_due(self) -> int:
        """The start of the newest hour whose results may be computed now."""
        return int((self.clock() - self.lag_s) // 3600) * 3600 - 3600

    def pending(self) -> list[int]:
        newest = self.latest_due()
        if self.last_done is None:
            self.last_done = newest - 3600
        first = max(self.last_done + 3600, newest - (self.max_catch_up - 1) * 3600)
        return list(range(first, newest + 1, 3600))

    def tick(self, now: float | None = None) -> list[HourResult]:
        """Run every due hour in order; never raises for a bad hour. (``now`` is accepted
        for drivers that pass it; the job reads its own injected clock.)"""
        done: list[HourResult] = []
        for hour in self.pending():
            try:
                obs, met, sites, domain = self._inputs(hour)
                res = run_hour(hour, obs, met, sites, config=self.config, domain=domain,
                               cache=self.cache)
                self.save_result(res)
                self._digests[hour] = res.inputs_sha256
                self.on_sources(res)  # sources or none: a source that went away is news too
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
        if done:
            self.rerun_changed(before=done[0].hour_start)
        return done

    def ran_on(self, hour: int, inputs_sha256: str) -> None:
        """Record that ``hour`` was inverted on these inputs (a restarted service passes
        the stored results' hashes, so their hours are re-checked like its own)."""
        self._digests[int(hour)] = inputs_sha256

    def _inputs(self, hour: int) -> tuple[Rows, Rows, Rows, tuple[float, float, float, float]]:
        first, last = window_of(hour, self.config)
        obs, met, sites = self.fetch_inputs(first, last)
        return obs, met, sites, self._domain_for(obs)

    def _domain_for(self, obs: Rows) -> tuple[float, float, float, float]:
        if self.domain is not None:
            return self.domain
        from cloud.hourly_part import auto_domain

        return auto_domain(obs, self.config.cell_m)

    def rerun_changed(self, before: int) -> list[HourResult]:
        """Re-run the hours of the last ``rerun_hours`` before ``before`` (that this job
        ran) whose inputs changed since -- readings that came late, a gateway's backlog
        after an outage -- and replace their stored results. One fetch spans all their
        windows. The alerts are not told again: the late readings are in the windows of
        the hours still to come, which are."""
        for old in [h for h in self._digests if h < before - self.rerun_hours * 3600]:
            del self._digests[old]
        hours = [h for h in range(before - self.rerun_hours * 3600, before, 3600)
                 if h in self._digests]
        if not hours:
            return []
        try:
            span = self.fetch_inputs(window_of(hours[0], self.config)[0], hours[-1])
            obs, met, sites = _as_rows(*span)
        except Exception as exc:  # the stored results stay; tried again next hour
            self.failures += 1
            log.error("inversion re-check of hours %s-%s failed: %s", hours[0], hours[-1],
                      exc, exc_info=not isinstance(exc, AirtraceError))
            return []
        again: list[HourResult] = []
        for hour in hours:
            first, last = window_of(hour, self.config)
            o = [r for r in obs if first <= r.time <= last]
            m = [r for r in met if first <= r.time <= last]
            try:
                domain = self._domain_for(o)
                if inputs_sha256(hour, o, m, sites, config=self.config,
                                 domain=domain) == self._digests[hour]:
                    continue
                res = run_hour(hour, o, m, sites, config=self.config, domain=domain,
                               cache=self.cache)
                self.save_result(res)
            except Exception as exc:  # the stored result stays; the hour is not re-tried
                self.failures += 1
                log.error("inversion re-run for hour %s failed: %s", hour, exc,
                          exc_info=not isinstance(exc, AirtraceError))
                del self._digests[hour]
                continue
            self._digests[hour] = res.inputs_sha256
            self.reruns += 1
            log.info("inversion for hour %s re-run: its inputs changed since (late readings)",
                     hour)
            again.append(res)
        return again

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


def make_part(service: Any) -> Any:
    """The hook ``cloud.service`` looks for: the job as a part of ``cloud run``
    (``cloud.hourly_part``)."""
    from cloud.hourly_part import make_part as build

    return build(service)

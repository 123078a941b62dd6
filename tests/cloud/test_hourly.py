"""The hourly job with a fake clock and in-memory callables: what falls due when, hashes
that make any hour re-runnable, and a bad hour that does not stop the loop."""

from __future__ import annotations

import dataclasses
import logging

import pytest

from cloud.hourly import HourlyJob, HourResult, canonical_inputs, run_hour, verify
from cloud.inversion_types import InversionConfig
from protocols.errors import InputError
from tests.cloud._synthetic import DOMAIN, T0, make

CFG = InversionConfig(inventory=False, window_hours=6)


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture(scope="module")
def data() -> tuple[list, list]:
    return make([(1450.0, 1550.0, 2.0)], noise=0.5, hours=12)


def test_run_hour_uses_its_window_and_hashes_its_inputs(data) -> None:
    obs, met = data
    res = run_hour(T0 + 7 * 3600, obs, met, config=CFG, domain=DOMAIN)
    assert res.window == (T0 + 2 * 3600, T0 + 7 * 3600)
    assert res.result.hours_used == tuple(T0 + 3600 * k for k in range(2, 8))
    assert len(res.inputs_sha256) == 64
    # the same inputs in another order give the same hash; a changed value does not
    again = run_hour(T0 + 7 * 3600, list(reversed(obs)), met, config=CFG, domain=DOMAIN)
    assert again.inputs_sha256 == res.inputs_sha256
    k = 3 * 36 + 5  # a station in hour 03, inside the window
    changed = [dataclasses.replace(obs[k], value=obs[k].value + 0.01), *obs[:k], *obs[k + 1:]]
    assert run_hour(T0 + 7 * 3600, changed, met, config=CFG,
                    domain=DOMAIN).inputs_sha256 != res.inputs_sha256
    other = dataclasses.replace(CFG, model_error=0.4)
    assert run_hour(T0 + 7 * 3600, obs, met, config=other,
                    domain=DOMAIN).inputs_sha256 != res.inputs_sha256
    doc = res.to_json()
    assert doc["inputs_sha256"] == res.inputs_sha256
    assert doc["sources"]
    assert verify(doc, obs, met, config=CFG, domain=DOMAIN)
    assert not verify(doc, changed, met, config=CFG, domain=DOMAIN)


def test_canonical_inputs_are_plain_sorted_json(data) -> None:
    obs, met = data
    a = canonical_inputs(T0, obs[:5], met[:1], [], CFG, DOMAIN)
    b = canonical_inputs(T0, obs[:5][::-1], met[:1], [], CFG, DOMAIN)
    assert a == b
    assert a.startswith(b'{"config":')


def test_rows_may_come_as_csv_shaped_dicts(data) -> None:
    obs, met = data
    as_dicts = [{"time": f"2025-06-02T{(r.time - T0) // 3600:02d}:00:00Z",
                 "station": r.station, "x_m": r.x_m, "y_m": r.y_m, "z_m": r.z_m,
                 "value": r.value, "sigma": r.sigma} for r in obs]
    met_d = [{"time": f"2025-06-02T{(m.time - T0) // 3600:02d}:00:00Z",
              "wind_speed_ms": m.wind_speed_ms, "wind_dir_deg": m.wind_dir_deg,
              "stability": m.stability} for m in met]
    a = run_hour(T0 + 7 * 3600, as_dicts, met_d, config=CFG, domain=DOMAIN)
    b = run_hour(T0 + 7 * 3600, obs, met, config=CFG, domain=DOMAIN)
    assert a.inputs_sha256 == b.inputs_sha256
    with pytest.raises(InputError, match="obs:2: column 'value'"):
        run_hour(T0 + 7 * 3600, [{**as_dicts[0], "value": "x"}], met_d, config=CFG,
                 domain=DOMAIN)


def _job(clock: Clock, data, saved: list[HourResult], hits: list[HourResult],
         fetched: list[tuple[int, int]], **kw: object) -> HourlyJob:
    obs, met = data

    def fetch(first: int, last: int):
        fetched.append((first, last))
        return ([r for r in obs if first <= r.time <= last],
                [m for m in met if first <= m.time <= last], [])

    return HourlyJob(clock=clock, fetch_inputs=fetch, save_result=saved.append,
                     on_sources=hits.append, config=CFG, domain=DOMAIN, **kw)  # type: ignore[arg-type]


def test_hours_fall_due_after_the_lag_and_each_runs_once(data) -> None:
    clock = Clock(T0 + 8 * 3600 + 60)  # 08:01: hour 07 is complete but within the lag
    saved: list[HourResult] = []
    hits: list[HourResult] = []
    fetched: list[tuple[int, int]] = []
    job = _job(clock, data, saved, hits, fetched, lag_s=300)
    # on start, the newest hour already due (06) runs; no deeper backfill
    assert [r.hour_start for r in job.tick()] == [T0 + 6 * 3600]
    assert job.tick() == []
    clock.t = T0 + 8 * 3600 + 301
    done = job.tick()
    assert [r.hour_start for r in done] == [T0 + 7 * 3600]
    # hour 07's window, then hour 06's again: did its inputs change since it ran? (no)
    assert fetched[-2:] == [(T0 + 2 * 3600, T0 + 7 * 3600), (T0 + 3600, T0 + 6 * 3600)]
    assert [r.hour_start for r in saved] == [T0 + 6 * 3600, T0 + 7 * 3600]
    assert hits == saved  # the alerts hear of every hour, sources or none
    assert job.tick() == []  # nothing new until the next hour is due
    assert job.seconds_to_next() == pytest.approx(3600 - 1)
    clock.t = T0 + 11 * 3600 + 400  # three hours later: catch up in order
    assert [r.hour_start for r in job.tick()] == [T0 + 8 * 3600, T0 + 9 * 3600, T0 + 10 * 3600]
    assert job.runs == 5
    assert job.cache is not None
    assert job.cache.reused > 0  # windows share hours, blocks are built once


def test_a_bad_hour_is_retried_then_skipped_and_the_loop_goes_on(data, caplog) -> None:
    clock = Clock(T0 + 8 * 3600 + 400)
    saved: list[HourResult] = []
    calls = {"n": 0}
    obs, met = data

    def fetch(first: int, last: int):
        calls["n"] += 1
        if last == T0 + 7 * 3600:
            raise InputError("store returned garbage for this hour")
        return ([r for r in obs if first <= r.time <= last],
                [m for m in met if first <= m.time <= last], [])

    job = HourlyJob(clock=clock, fetch_inputs=fetch, save_result=saved.append,
                    on_sources=lambda r: None, config=CFG, domain=DOMAIN, retries=1,
                    last_done=T0 + 6 * 3600)
    with caplog.at_level(logging.ERROR, logger="airtrace.cloud.hourly"):
        assert job.tick() == []  # first try fails: kept for the next tick
        assert job.failures == 1
        clock.t += 3600  # hour 08 is due as well now
        done = job.tick()  # second try fails: given up; hour 08 runs
    assert [r.hour_start for r in done] == [T0 + 8 * 3600]
    assert job.failures == 2
    assert "store returned garbage" in caplog.text


def test_run_sleeps_between_ticks_until_stopped(data) -> None:
    clock = Clock(T0 + 8 * 3600 + 400)
    saved: list[HourResult] = []
    job = _job(clock, data, saved, [], [], last_done=T0 + 6 * 3600)
    sleeps: list[float] = []

    def sleep(s: float) -> None:
        sleeps.append(s)
        clock.t += s

    job.run(sleep, stop=lambda: len(sleeps) >= 70, max_sleep_s=60.0)
    assert [r.hour_start for r in saved] == [T0 + 7 * 3600, T0 + 8 * 3600]
    assert max(sleeps) <= 60.0


def test_hours_whose_inputs_changed_later_are_re_run_once_and_not_re_alerted(data) -> None:
    """A gateway's backlog arrives after the hours it belongs to were inverted: at the next
    hour, the hours whose windows it falls in are re-run and their results replaced (the
    same result ``run_hour`` gives on all the data); the alerts hear only of the new hour."""
    obs, met = data
    late_hour = T0 + 5 * 3600
    arrived = {"late": False}

    behind = set(sorted({r.station for r in obs})[::2])  # half the stations, in hour 05

    def fetch(first: int, last: int):
        rows = [r for r in obs if first <= r.time <= last
                and (arrived["late"] or r.time != late_hour or r.station not in behind)]
        return rows, [m for m in met if first <= m.time <= last], []

    clock = Clock(T0 + 8 * 3600 + 400)
    saved: list[HourResult] = []
    hits: list[HourResult] = []
    job = HourlyJob(clock=clock, fetch_inputs=fetch, save_result=saved.append,
                    on_sources=hits.append, config=CFG, domain=DOMAIN,
                    last_done=T0 + 5 * 3600)
    assert [r.hour_start for r in job.tick()] == [T0 + 6 * 3600, T0 + 7 * 3600]
    first_06 = saved[0].inputs_sha256
    arrived["late"] = True  # the backlog is in the store now
    assert job.tick() == []  # nothing is re-checked before the next hour falls due
    clock.t += 3600
    assert [r.hour_start for r in job.tick()] == [T0 + 8 * 3600]
    assert [r.hour_start for r in saved] == [T0 + 6 * 3600, T0 + 7 * 3600, T0 + 8 * 3600,
                                             T0 + 6 * 3600, T0 + 7 * 3600]
    assert [r.hour_start for r in hits] == [T0 + 6 * 3600, T0 + 7 * 3600, T0 + 8 * 3600]
    assert job.reruns == 2
    whole = run_hour(T0 + 6 * 3600, obs, met, config=CFG, domain=DOMAIN)
    assert saved[3].inputs_sha256 == whole.inputs_sha256 != first_06
    assert saved[3].result.sources == whole.result.sources
    clock.t += 3600  # nothing changed since: nothing re-run
    assert [r.hour_start for r in job.tick()] == [T0 + 9 * 3600]
    assert job.reruns == 2 and len(saved) == 6

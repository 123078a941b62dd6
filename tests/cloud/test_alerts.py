"""The alert engine from its inputs (means, health, inversion hits) through events and
orders to a real webhook server, on a fake clock."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cloud.alert_rules import parse_rules
from cloud.alerts import AlertEngine
from cloud.fusion import Mean
from cloud.store import Store, open_store
from cloud.store.types import Health
from protocols.geo import Origin
from tests.cloud.alerting import ORIGIN, Clock, Recorder, WebhookServer, rules_text, world


@dataclass(frozen=True)
class Source:
    x_m: float
    y_m: float
    rate_g_s: float
    rate_sigma_g_s: float
    confidence: float
    site: str | None = None


@dataclass(frozen=True)
class Result:
    sources: tuple[Source, ...]
    hours_used: tuple[int, ...] = ()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(f"sqlite:///{tmp_path}/c.db")
    yield s
    s.close()


@pytest.fixture
def hook() -> Iterator[WebhookServer]:
    srv = WebhookServer("centre-secret").start()
    yield srv
    srv.stop()


@pytest.fixture
def env(store: Store, hook: WebhookServer) -> Iterator[tuple[AlertEngine, Clock, Recorder]]:
    world(store, officer_hook=hook.url("/wang"))
    clock = Clock()
    rec = Recorder(store, clock)
    extra = """
[[rule]]
name = "health"
kind = "health"
statuses = ["offline", "calibration_overdue"]
calibration_days = 30
level = "yellow"

[[receiver]]
name = "assignee"
type = "person"
to = "assignee"
secret = "centre-secret"
fallback = "centre"

[events]
notify = "assignee"
"""
    cfg = parse_rules(rules_text(hook.url("/centre"), extra=extra), source="t.toml")
    eng = AlertEngine(store, cfg, clock=clock, commander=rec, origin=Origin(*ORIGIN))
    yield eng, clock, rec
    eng.close()


def mean(station: str, start: float, value: float, period: int = 300) -> Mean:
    return Mean(station, "pm10", start, period, value, value, 60, float(period), "ug/m3", True)


def test_a_site_exceedance_becomes_an_orange_alert_an_event_a_spray_and_a_webhook(
    env: tuple[AlertEngine, Clock, Recorder], hook: WebhookServer
) -> None:
    eng, clock, rec = env
    t = clock.t - clock.t % 300
    eng.on_means([mean("DUST-1", t - 600, 300.0)])
    assert eng.db.alerts() == []  # one period is not enough: for = 2
    eng.on_means([mean("DUST-1", t - 600, 300.0), mean("DUST-1", t - 300, 280.0)])
    (a,) = eng.db.alerts()
    assert a.level == "orange" and a.value == 280.0
    assert {k: a.labels[k] for k in ("site", "source_type", "station_kind", "cell", "kind")} == {
        "site": "SITE-1", "source_type": "construction", "station_kind": "dust",
        "cell": "g0_0", "kind": "threshold",
    }  # fmt: skip
    ev = eng.events_db.get(a.event_id or "")
    assert ev is not None and ev.state == "dispatched" and ev.assignee == "Wang"
    assert rec.sent == [("DUST-1", "actuate", {"actuator": "spray", "state": "on",
                                               "duration_s": 1800.0})]  # fmt: skip
    eng.tick(clock.t)
    (order,) = hook.bodies("/wang")  # the work order: dispatched to Wang; the alert waits
    assert order["kind"] == "event" and order["event"]["id"] == ev.id
    assert order["to"]["name"] == "Wang" and order["event"]["ack_due"] == clock.t + 3600
    eng.tick(clock.advance(30))
    (got,) = [b for b in hook.bodies("/wang") if b.get("kind") != "event"]
    assert got["status"] == "firing" and got["to"]["name"] == "Wang"
    assert got["alerts"][0]["event"] == ev.id and got["common_labels"]["level"] == "orange"
    assert (
        "DUST-1 pm10 280.0 ug/m3 (5min mean) reached orange"
        in (got["alerts"][0]["annotations"]["summary"])
    )
    eng.on_means([mean("DUST-1", t, 100.0)])
    eng.tick(clock.advance(300))
    resolved = hook.bodies("/wang")[-1]
    assert resolved["status"] == "resolved"


def test_an_inversion_hit_joins_the_sites_event_orders_burst_sampling_and_dedupes(
    env: tuple[AlertEngine, Clock, Recorder],
) -> None:
    eng, clock, rec = env
    hour = clock.t - clock.t % 3600
    res = Result(
        (Source(510.0, 490.0, 0.8, 0.1, 0.9, "SITE-1"), Source(4000, 4000, 0.05, 0.02, 0.5))
    )
    eng.on_sources(hour, res)
    (a,) = eng.db.alerts()
    assert (a.rule, a.level, a.labels["site"]) == ("source", "orange", "SITE-1")
    bursts = sorted(s for s, cmd, _ in rec.sent if cmd == "set_interval")
    assert bursts == ["DUST-1", "MICRO-1"]  # within 1000 m; MICRO-FAR is not
    assert ("DUST-1", "actuate") in {(s, c) for s, c, _ in rec.sent}
    ev_id = a.event_id or ""
    log_before, sent_before = len(eng.events_db.log(ev_id)), len(rec.sent)
    eng.on_sources(hour, res)  # the same hour again: a duplicate
    eng.on_sources(
        hour,
        {
            "sources": [
                {
                    "x_m": 510.0,
                    "y_m": 490.0,
                    "rate_g_s": 0.8,
                    "rate_sigma_g_s": 0.1,
                    "confidence": 0.9,
                    "site": "SITE-1",
                }
            ]
        },
    )  # as RESULT.json: the same again
    assert len(eng.events_db.log(ev_id)) == log_before and len(rec.sent) == sent_before
    assert [(r.rate, r.source) for r in eng.events_db.rates(ev_id)] == [(0.8, "inversion")]
    eng.on_sources(hour, [{"x_m": None, "y_m": 1.0}, {"rate_g_s": "lots"}])  # logged, skipped
    eng.on_sources(hour + 3600, Result(()))  # nothing found there the next hour
    assert [(r.rate, r.detected) for r in eng.events_db.rates(ev_id)][-1] == (0.0, False)
    eng.tick(clock.advance(3 * 3600))
    assert eng.db.get_alert(a.fingerprint).state == "resolved"  # type: ignore[union-attr]
    assert len(eng.events_db.events()) == 1


def test_no_after_hour_whose_inversion_window_reaches_back_before_the_rectification(
    env: tuple[AlertEngine, Clock, Recorder],
) -> None:
    """With a two-hour window, the first hour after a rectification still holds the hour
    before it: its estimate (here: the source, still located) must not count as "after"."""
    eng, clock, _ = env
    hour = int(clock.t - clock.t % 3600)
    site = Source(510.0, 490.0, 0.8, 0.1, 0.9, "SITE-1")
    eng.on_sources(hour, Result((site,), (hour - 3600, hour)))
    (a,) = eng.db.alerts()
    ev_id = a.event_id or ""
    eng.on_sources(hour + 3600, Result((site,), (hour, hour + 3600)))
    clock.t = hour + 2 * 3600 + 300
    eng.workflow.act(ev_id, "acknowledge", _wang())
    eng.workflow.act(ev_id, "rectify", _wang(), note="heap covered")
    since = clock.t
    clock.t = hour + 4 * 3600 + 120
    straddling = Result((site,), (hour + 2 * 3600, hour + 3 * 3600))  # holds since's hour
    eng.on_sources(hour + 3 * 3600, straddling)
    as_json = {"sources": [], "hours_used": ["2026-01-01T00:00:00Z"]}  # RESULT.json's ISO
    eng.on_sources(hour + 3 * 3600, as_json)  # reaches back before it too: skipped
    assert [r.hour for r in eng.events_db.rates(ev_id)] == [hour, hour + 3600]
    clock.t = hour + 5 * 3600 + 120
    eng.on_sources(hour + 4 * 3600, Result((), (hour + 3 * 3600, hour + 4 * 3600)))
    rows = eng.events_db.rates(ev_id)
    assert [(r.hour, r.detected) for r in rows][-1] == (hour + 4 * 3600, False)
    got = eng.workflow.evidence(ev_id)
    assert got.since == since and got.verdict == "pending"  # 1 of the 3 hours it needs
    assert got.before is not None and got.before.hours == 2
    assert got.after is not None and (got.after.hours, got.after.detected_hours) == (1, 0)


def test_health_alerts_and_escalation_alerts_are_routed(
    env: tuple[AlertEngine, Clock, Recorder], hook: WebhookServer, store: Store
) -> None:
    eng, clock, _ = env
    eng.on_health([Health("MICRO-1", "offline", ("gateway offline",), clock.t)])
    (a,) = [x for x in eng.db.alerts() if x.rule == "health"]
    assert a.level == "yellow" and "offline" in a.annotations["summary"]
    ev = eng.events_db.get(a.event_id or "")
    assert ev is not None and ev.key == "station:MICRO-1" and ev.state == "filed"  # nobody
    eng.on_means([mean("DUST-1", clock.t - 900, 600.0), mean("DUST-1", clock.t - 600, 600.0)])
    eng.tick(clock.advance(30))
    eng.tick(clock.advance(1800))  # red: ack within 30 min, missed
    esc = [x for x in eng.db.alerts() if x.rule == "EventEscalated"]
    assert len(esc) == 1 and esc[0].labels["deadline"] == "ack"
    eng.tick(clock.advance(30))
    told = [b["alerts"][0]["rule"] for b in hook.bodies("/wang") if b["alerts"]]
    assert "EventEscalated" in told  # the site's officer hears of it (the tree says so here)
    eng.workflow.act(esc[0].event_id or "", "acknowledge", _wang())
    eng.tick(clock.advance(1))
    assert eng.db.get_alert(esc[0].fingerprint).state == "resolved"  # type: ignore[union-attr]


def test_calibration_overdue(env: tuple[AlertEngine, Clock, Recorder], store: Store) -> None:
    eng, clock, _ = env
    from dataclasses import replace

    st = store.get_station("MICRO-1")
    assert st is not None
    store.put_station(replace(st, first_seen=clock.t - 40 * 86400))
    eng.places.refresh()
    eng.on_health([Health("MICRO-1", "ok", (), clock.t)])
    (a,) = eng.db.alerts()
    assert a.annotations["status"] == "calibration_overdue"
    assert "never calibrated" in a.annotations["reasons"]


def _wang() -> Any:
    from cloud.alerts_store import Actor

    return Actor("Wang", "officer", site="SITE-1")


def test_cloud_run_builds_the_part_which_polls_fusion_and_health(
    tmp_path: Path, hook: WebhookServer
) -> None:
    from cloud.config import load_config
    from cloud.service import Service
    from cloud.store.types import PackRows
    from tests.cloud.conftest import make_pack

    rules = tmp_path / "alerts.toml"
    rules.write_text(rules_text(hook.url("/centre")))
    conf = tmp_path / "cloud.toml"
    conf.write_text(
        f'[store]\nurl = "sqlite:///{tmp_path}/c.db"\n[ingest]\nenabled = false\n'
        f"[domain]\norigin_lat = {ORIGIN[0]}\norigin_lon = {ORIGIN[1]}\n"
        '[alerts]\nenabled = true\nrules = "alerts.toml"\ninterval_s = 3600\n'
    )
    clock = Clock()
    service = Service(load_config(conf), clock=clock)
    world(service.store, officer_hook=hook.url("/wang"))
    t0 = clock.t - clock.t % 300 - 900  # three whole 5-minute periods, readings every 10 s
    pack = make_pack("DUST-1", range(1, 91), quantity="pm10", t0=t0 - 10, value=lambda i: 320.0)
    service.store.add_readings(PackRows.from_pack(pack), clock.t)
    service.start()
    try:
        (part,) = [p for p in service.parts if p.name == "alerts"]
        assert service.alerts_engine is part.engine  # type: ignore[attr-defined]
        assert part.engine.on_sources in service.source_listeners  # type: ignore[attr-defined]
        part.round(clock.t)  # type: ignore[attr-defined]
        (a,) = part.engine.db.alerts()  # type: ignore[attr-defined]
        assert (a.labels["station"], a.level, a.value) == ("DUST-1", "orange", 320.0)
        part.round(clock.advance(30))  # type: ignore[attr-defined]
        assert hook.bodies("/wang")[0]["alerts"][0]["fingerprint"] == a.fingerprint
    finally:
        service.stop()

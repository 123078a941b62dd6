"""Receivers against a real local HTTP server that checks the HMAC and fails on demand;
the outbox keeps every notification until it is delivered or escalated."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud.alerts_store import AlertsDb
from cloud.places import Places
from cloud.receivers import Deliverer, ReceiverConfig, sign, verify_signature
from cloud.store import Store, open_store
from tests.cloud.alerting import T0, Clock, Recorder, WebhookServer, world

SECRET = "s3cret-for-tests"
BODY = {
    "status": "firing",
    "common_labels": {"site": "SITE-1", "level": "orange"},
    "alerts": [{"rule": "site-pm10", "annotations": {"summary": "PM10 high"}}],
}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(f"sqlite:///{tmp_path}/c.db")
    yield s
    s.close()


@pytest.fixture
def hook() -> Iterator[WebhookServer]:
    srv = WebhookServer(SECRET).start()
    yield srv
    srv.stop()


def deliverer(store: Store, *receivers: ReceiverConfig, commander: object = None) -> Deliverer:
    db = AlertsDb(store)
    return Deliverer(
        {r.name: r for r in receivers},
        db,
        Places(store, None),
        commander=commander,
        rng=lambda: 0.5,
    )  # type: ignore[arg-type]


def webhook(name: str, url: str, **kw: object) -> ReceiverConfig:
    return ReceiverConfig(name, "webhook", url=url, secret=SECRET, backoff_s=10, **kw)  # type: ignore[arg-type]


def test_signature_round_trip() -> None:
    assert verify_signature("k", b"{}", sign("k", b"{}"))
    assert not verify_signature("k", b"{} ", sign("k", b"{}"))
    assert not verify_signature("other", b"{}", sign("k", b"{}"))


def test_retries_with_backoff_then_delivers_once_with_a_stable_idempotency_key(
    store: Store, hook: WebhookServer
) -> None:
    hook.fail = 2
    d = deliverer(store, webhook("centre", hook.url(), max_attempts=5))
    (nid,) = d.enqueue("centre", BODY, BODY["common_labels"], T0)
    assert d.run(T0) == 0  # 503
    assert d.run(T0 + 9) == 0 and hook.fail == 1  # backing off: not tried
    assert d.run(T0 + 10) == 0 and hook.fail == 0  # second 503; next wait 20 s
    assert d.run(T0 + 29) == 0
    assert d.run(T0 + 30) == 1
    (got,) = hook.received
    assert got.signed and got.headers["Idempotency-Key"] == nid and got.body["id"] == nid
    assert got.headers["X-Airtrace-Attempt"] == "3"
    (row,) = AlertsDb(store).notifications()
    assert row["status"] == "sent" and row["attempts"] == 3
    assert d.run(T0 + 1000) == 0 and len(hook.received) == 1


def test_a_receiver_that_stays_down_escalates_and_nothing_is_lost(
    store: Store, hook: WebhookServer
) -> None:
    backup = WebhookServer(SECRET).start()
    try:
        hook.down = True
        d = deliverer(
            store,
            webhook("officer", hook.url(), max_attempts=3, escalate_to="centre"),
            webhook("centre", backup.url("/centre")),
        )
        d.enqueue("officer", BODY, BODY["common_labels"], T0)
        clock = Clock()
        for _ in range(6):
            d.run(clock.advance(60))
        rows = {r["receiver"]: r for r in AlertsDb(store).notifications()}
        assert rows["officer"]["status"] == "escalated" and rows["officer"]["attempts"] == 3
        assert "HTTP 503" in rows["officer"]["last_error"]
        assert rows["centre"]["status"] == "sent"
        (got,) = backup.received
        assert got.signed and "officer" in got.body["escalated_from"]
        assert got.body["alerts"] == BODY["alerts"]
    finally:
        backup.stop()


def test_without_escalation_it_keeps_trying(store: Store, hook: WebhookServer) -> None:
    hook.down = True
    d = deliverer(store, webhook("centre", hook.url(), max_attempts=2, max_backoff_s=300))
    d.enqueue("centre", BODY, {}, T0)
    for t in (0, 10, 400, 800):
        d.run(T0 + t)
    (row,) = AlertsDb(store).notifications()
    assert row["status"] == "pending" and row["attempts"] == 4
    hook.down = False
    d.run(T0 + 1200)
    assert AlertsDb(store).notifications()[0]["status"] == "sent"


def test_a_4xx_is_not_retried_but_escalated_at_once(store: Store, hook: WebhookServer) -> None:
    hook.fail, hook.fail_status = 1, 400
    d = deliverer(
        store,
        webhook("a", hook.url("/a"), max_attempts=5, escalate_to="b"),
        webhook("b", hook.url("/b")),
    )
    d.enqueue("a", BODY, {}, T0)
    d.run(T0)
    d.run(T0)
    assert [h.path for h in hook.received] == ["/b"]


def test_person_receiver_goes_point_to_point_or_falls_back(
    store: Store, hook: WebhookServer
) -> None:
    world(store, officer_hook=hook.url("/wang"))
    person = ReceiverConfig(
        "officer", "person", to="site_officer", secret=SECRET, fallback="centre"
    )
    d = deliverer(store, person, webhook("centre", hook.url("/centre")))
    d.enqueue("officer", BODY, {"site": "SITE-1"}, T0)
    d.enqueue("officer", BODY, {"site": "NO-SUCH-SITE"}, T0)
    d.run(T0)
    got = {h.path: h.body for h in hook.received}
    assert got["/wang"]["to"] == {"name": "Wang", "role": "officer"}
    assert "nobody responsible" in got["/centre"]["escalated_from"]


def test_downlink_sends_an_alert_command_to_the_sites_gateway(store: Store) -> None:
    world(store)
    rec = Recorder(store, Clock())
    d = deliverer(store, ReceiverConfig("gw", "downlink"), commander=rec)
    d.enqueue("gw", BODY, {"site": "SITE-1"}, T0)
    assert d.run(T0) == 1
    ((station, cmd, args),) = rec.sent
    assert (station, cmd, args["level"]) == ("DUST-1", "alert", "critical")
    assert "PM10 high" in args["message"]


def test_log_receiver_never_fails(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    d = deliverer(store, ReceiverConfig("log", "log"))
    d.enqueue("log", BODY, {}, T0)
    with caplog.at_level(logging.WARNING, logger="cloud.receivers"):
        assert d.run(T0) == 1
    assert "PM10 high" in caplog.text


def test_a_bad_person_url_goes_to_the_fallback_chain(store: Store, hook: WebhookServer) -> None:
    world(store, officer_hook="http://[::1")
    person = ReceiverConfig(
        "officer", "person", to="site_officer", secret=SECRET, escalate_to="centre"
    )
    d = deliverer(store, person, webhook("centre", hook.url("/centre")))
    d.enqueue("officer", BODY, {"site": "SITE-1"}, T0)
    d.run(T0)
    d.run(T0)
    assert [h.path for h in hook.received] == ["/centre"]
    assert "bad URL" in hook.received[0].body["escalated_from"]


def test_a_dead_target_is_tried_once_per_run(store: Store, hook: WebhookServer) -> None:
    hook.down = True
    d = deliverer(store, webhook("centre", hook.url()))
    for _ in range(3):
        d.enqueue("centre", BODY, {}, T0)
    d.run(T0)
    assert sorted(r["attempts"] for r in AlertsDb(store).notifications()) == [0, 0, 1]

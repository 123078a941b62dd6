"""Roles through the real API app (FastAPI over httpx's ASGI transport): an officer sees
and acts on their own site's events only; refusals are 403 and logged."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cloud import auth
from cloud.alert_types import Alert, fingerprint
from cloud.alerts_store import Actor, AlertsDb
from cloud.api import ApiContext, create_app
from cloud.events import Workflow
from cloud.events_store import EventsDb
from cloud.fusion import Fusion
from cloud.places import Places
from cloud.registry import Registry
from cloud.store import Store, open_store
from tests.cloud.alerting import T0, world
from tests.cloud.test_api import DOMAIN, ApiClient

SERVICE = "operator-token-0123456789"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with open_store(f"sqlite:///{tmp_path}/a.db") as s:
        yield s


@pytest.fixture
def setup(store: Store) -> Iterator[tuple[ApiClient, dict[str, Any]]]:
    world(store)
    db = AlertsDb(store)
    tokens = {
        "wang": auth.add_actor(db, Actor("Wang", "officer", site="SITE-1"), T0),
        "li": auth.add_actor(db, Actor("Li", "officer", site="SITE-2"), T0),
        "zhao": auth.add_actor(db, Actor("Zhao", "inspector", cells=("g0_0",)), T0),
        "ma": auth.add_actor(db, Actor("Ma", "maintainer"), T0),
    }
    flow = Workflow(EventsDb(store), clock=lambda: T0, assignee=Places(store, None).assignee)
    events = {}
    for site in ("SITE-1", "SITE-2"):
        labels = {"alertname": "pm10", "site": site, "cell": "g0_0" if site == "SITE-1" else "g9_9"}
        a = Alert(fingerprint(labels), "pm10", "threshold", {**labels, "level": "orange"}, "orange")
        db.put_alert(a)
        ev = flow.on_alert(a, (500.0, 500.0))
        assert ev is not None
        events[site] = ev.id
    ctx = ApiContext(
        store=store,
        registry=Registry(store, DOMAIN),
        fusion=Fusion(store, domain=DOMAIN),
        tokens=(SERVICE,),
        clock=lambda: T0,
    )
    client = ApiClient(create_app(ctx))
    yield client, {"tokens": tokens, "events": events}
    client.close()


def test_an_officer_sees_and_acts_on_their_own_site_only(
    setup: tuple[ApiClient, dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    client, w = setup
    wang, mine, theirs = bearer(w["tokens"]["wang"]), w["events"]["SITE-1"], w["events"]["SITE-2"]
    assert client.get("/api/v1/me", headers=wang).json()["site"] == "SITE-1"
    listed = client.get("/api/v1/events", headers=wang).json()
    assert [e["id"] for e in listed] == [mine]
    assert client.get(f"/api/v1/events/{theirs}", headers=wang).status_code == 403
    with caplog.at_level(logging.WARNING, logger="cloud.auth"):
        r = client.post(f"/api/v1/events/{theirs}/acknowledge", headers=wang)
    assert r.status_code == 403 and "refused Wang (officer) to acknowledge" in caplog.text
    ok = client.post(f"/api/v1/events/{mine}/acknowledge", headers=wang)
    assert ok.status_code == 200 and ok.json()["state"] == "acknowledged"
    again = client.post(f"/api/v1/events/{mine}/acknowledge", headers=wang)
    assert again.status_code == 409
    no_note = client.post(f"/api/v1/events/{mine}/rectify", headers=wang, json={})
    assert no_note.status_code == 400
    done = client.post(f"/api/v1/events/{mine}/rectify", headers=wang, json={"note": "covered"})
    assert done.json()["state"] == "verifying"
    assert (
        client.post(
            f"/api/v1/events/{mine}/verify", headers=wang, json={"passed": True}
        ).status_code
        == 403
    )
    alerts = client.get("/api/v1/alerts", headers=wang).json()
    assert [a["labels"]["site"] for a in alerts] == ["SITE-1"]


def test_inspector_verifies_centre_cancels_and_the_detail_shows_the_trail(
    setup: tuple[ApiClient, dict[str, Any]],
) -> None:
    client, w = setup
    mine, theirs = w["events"]["SITE-1"], w["events"]["SITE-2"]
    zhao, centre = bearer(w["tokens"]["zhao"]), bearer(SERVICE)
    wang = bearer(w["tokens"]["wang"])
    assert [e["id"] for e in client.get("/api/v1/events", headers=zhao).json()] == [mine]
    client.post(f"/api/v1/events/{mine}/acknowledge", headers=wang)
    client.post(f"/api/v1/events/{mine}/rectify", headers=wang, json={"note": "covered"})
    r = client.post(
        f"/api/v1/events/{mine}/verify",
        headers=zhao,
        json={"passed": True, "note": "checked on site"},
    )
    assert r.status_code == 200 and r.json()["state"] == "closed"
    detail = client.get(f"/api/v1/events/{mine}", headers=zhao).json()
    assert [e["action"] for e in detail["log"]][-1] == "verify"
    assert detail["log"][-1]["actor"] == "Zhao" and "evidence" in detail
    assert (
        client.post(f"/api/v1/events/{theirs}/cancel", headers=zhao, json={"note": "x"}).status_code
        == 403
    )
    r = client.post(f"/api/v1/events/{theirs}/cancel", headers=centre, json={"note": "duplicate"})
    assert r.json()["state"] == "cancelled"
    assert client.get("/api/v1/events").status_code == 401  # people have tokens: no open door
    assert client.get("/api/v1/events", headers=bearer("x" * 20)).status_code == 401
    assert client.get("/api/v1/notifications", headers=zhao).status_code == 403
    assert client.get("/api/v1/notifications", headers=centre).status_code == 200


def test_silences_by_role(setup: tuple[ApiClient, dict[str, Any]]) -> None:
    client, w = setup
    centre = bearer(SERVICE)
    ma, wang = bearer(w["tokens"]["ma"]), bearer(w["tokens"]["wang"])
    body = {"matchers": ['station="MICRO-1"'], "comment": "filter change", "duration": "2h"}
    r = client.post("/api/v1/silences", headers=ma, json=body)
    assert r.status_code == 201 and r.json()["state"] == "active"
    wide = {**body, "matchers": ['kind="health"']}
    assert client.post("/api/v1/silences", headers=ma, json=wide).status_code == 403
    assert client.post("/api/v1/silences", headers=wang, json=body).status_code == 403
    site = {"matchers": ['site="SITE-1"'], "comment": "night works permit", "duration": "1h"}
    sid = client.post("/api/v1/silences", headers=centre, json=site).json()["id"]
    alerts = client.get("/api/v1/alerts", headers=centre).json()
    muted = {a["labels"]["site"]: a["muted_by"] for a in alerts}
    assert muted == {"SITE-1": f"silence:{sid}", "SITE-2": None}
    assert client.delete(f"/api/v1/silences/{sid}", headers=centre).json()["expired"]
    states = {s["id"]: s["state"] for s in client.get("/api/v1/silences", headers=ma).json()}
    assert states[sid] == "expired"
    bad = {"matchers": ["site"], "comment": "x", "duration": "1h"}
    assert client.post("/api/v1/silences", headers=centre, json=bad).status_code == 400

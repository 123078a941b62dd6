"""The event workflow through every transition, rework, escalation, merging and the
verification evidence, on SQLite and PostgreSQL, with a fake clock."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud.alert_types import Alert, fingerprint
from cloud.alerts_store import Actor
from cloud.auth import Forbidden
from cloud.events import EventsConfig, Workflow
from cloud.events_store import Conflict, EventsDb, RateRow
from cloud.places import Places
from cloud.store import Store, open_store
from cloud.verification import VerificationConfig
from protocols.errors import InputError
from tests.cloud.alerting import Clock, world

WANG = Actor("Wang", "officer", site="SITE-1")
LI = Actor("Li", "officer", site="SITE-2")
ZHAO = Actor("Zhao", "inspector", cells=("g0_0",))
CENTRE = Actor("desk", "centre")


def alert(level: str = "orange", site: str = "SITE-1", rule: str = "site-pm10") -> Alert:
    labels = {"alertname": rule, "site": site, "cell": "g0_0", "quantity": "pm10"}
    return Alert(
        fingerprint(labels),
        rule,
        "threshold",
        {**labels, "level": level},
        level,
        value=300.0,
        annotations={"summary": "PM10 300"},
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def lite(tmp_path: Path) -> Iterator[Store]:
    """SQLite only, for the tests that exercise logic rather than the database."""
    s = open_store(f"sqlite:///{tmp_path}/c.db")
    yield s
    s.close()


def make_flow(store: Store, clock: Clock, cfg: EventsConfig | None = None) -> Workflow:
    world(store)
    return Workflow(
        EventsDb(store), cfg or EventsConfig(), clock=clock, assignee=Places(store, None).assignee
    )


@pytest.fixture
def flow(lite: Store, clock: Clock) -> Workflow:
    return make_flow(lite, clock)


@pytest.fixture
def both(store: Store, clock: Clock) -> Workflow:
    """On SQLite and on PostgreSQL."""
    return make_flow(store, clock)


def trail(flow: Workflow, ev_id: str) -> list[tuple[str, str, str | None, str | None]]:
    return [(e.actor, e.action, e.from_state, e.to_state) for e in flow.db.log(ev_id)]


def test_every_transition_with_rework_and_an_audit_trail(both: Workflow, clock: Clock) -> None:
    flow = both
    ev = flow.on_alert(alert(), (500.0, 500.0))
    assert ev is not None and ev.state == "dispatched" and ev.assignee == "Wang"
    assert ev.ack_due == clock.t + 3600 and ev.rectify_due == clock.t + 12 * 3600
    clock.advance(600)
    flow.act(ev.id, "acknowledge", WANG)
    flow.act(ev.id, "progress", WANG, note="covering the spoil heap")
    with pytest.raises(InputError, match="note"):
        flow.act(ev.id, "rectify", WANG)
    flow.act(ev.id, "rectify", WANG, note="heap covered, fog cannon on")
    with pytest.raises(InputError, match="note"):
        flow.act(ev.id, "verify", ZHAO, passed=False)
    clock.advance(3600)
    back = flow.act(ev.id, "verify", ZHAO, passed=False, note="still dusty at the gate")
    assert back.state == "dispatched" and back.rework == 1 and back.rectified_at is None
    assert back.ack_due == clock.t + 3600  # the clock starts again
    flow.act(ev.id, "acknowledge", WANG)
    flow.act(ev.id, "rectify", WANG, note="gate washed")
    done = flow.act(ev.id, "verify", CENTRE, passed=True)
    assert done.state == "closed" and done.closed_at == clock.t
    assert trail(flow, ev.id) == [
        ("system", "open", None, "new"),
        ("system", "file", "new", "filed"),
        ("system", "dispatch", "filed", "dispatched"),
        ("Wang", "acknowledge", "dispatched", "acknowledged"),
        ("Wang", "progress", "acknowledged", "in_progress"),
        ("Wang", "rectify", "in_progress", "verifying"),
        ("Zhao", "verify", "verifying", "dispatched"),
        ("Wang", "acknowledge", "dispatched", "acknowledged"),
        ("Wang", "rectify", "acknowledged", "verifying"),
        ("desk", "verify", "verifying", "closed"),
    ]
    with pytest.raises(Conflict, match="closed"):
        flow.act(ev.id, "acknowledge", WANG)


def test_missed_deadlines_escalate_once_each_and_keep_the_state(
    both: Workflow, clock: Clock
) -> None:
    flow = both
    ev = flow.on_alert(alert("red"), None)
    assert ev is not None
    assert flow.tick(clock.advance(1799)) == []
    ((esc, which),) = flow.tick(clock.advance(1))
    assert (which, esc.escalation, esc.state, esc.ack_escalated) == ("ack", 1, "dispatched", True)
    assert flow.tick(clock.advance(60)) == []
    flow.act(ev.id, "acknowledge", WANG)
    ((esc, which),) = flow.tick(clock.advance(4 * 3600))
    assert (which, esc.escalation, esc.state) == ("rectify", 2, "acknowledged")
    assert [e.action for e in flow.db.log(ev.id)].count("escalate") == 2


def test_one_open_event_per_site_and_a_higher_level_shortens_the_deadline(
    flow: Workflow, clock: Clock
) -> None:
    ev = flow.on_alert(alert("yellow"))
    assert ev is not None and ev.ack_due == clock.t + 4 * 3600
    clock.advance(60)
    again = flow.on_alert(alert("red", rule="source"))
    assert again is not None and again.id == ev.id and again.level == "red"
    assert again.ack_due == ev.dispatched_at + 1800  # type: ignore[operator]
    assert flow.on_alert(alert("yellow", site="SITE-2")).id != ev.id  # type: ignore[union-attr]
    flow.act(ev.id, "close", CENTRE, note="false alarm: a calibration run")
    fresh = flow.on_alert(alert("orange"))
    assert fresh is not None and fresh.id != ev.id  # closed stays closed: a new occurrence


def test_below_min_level_opens_nothing(flow: Workflow) -> None:
    assert flow.on_alert(alert("blue")) is None


def test_roles_and_scopes_are_checked_and_refusals_recorded(flow: Workflow) -> None:
    ev = flow.on_alert(alert())
    assert ev is not None
    with pytest.raises(Forbidden):
        flow.act(ev.id, "acknowledge", LI)  # another site's officer
    with pytest.raises(Forbidden):
        flow.act(ev.id, "cancel", WANG, note="not us")  # centre only
    flow.act(ev.id, "acknowledge", WANG)
    flow.act(ev.id, "rectify", WANG, note="done")
    with pytest.raises(Forbidden):
        flow.act(ev.id, "verify", WANG, passed=True)  # not their own work
    denied = [(e.actor, e.detail["action"]) for e in flow.db.log(ev.id) if e.action == "denied"]
    assert denied == [("Li", "acknowledge"), ("Wang", "cancel"), ("Wang", "verify")]


def test_merged_events_pass_their_alerts_on(flow: Workflow) -> None:
    a = flow.on_alert(alert(site="SITE-1"))
    b = flow.on_alert(alert(site="SITE-9"))
    assert a is not None and b is not None
    with pytest.raises(Conflict):
        flow.act(b.id, "merge", CENTRE, into=b.id)
    merged = flow.act(b.id, "merge", CENTRE, into=a.id)
    assert merged.state == "merged" and merged.merged_into == a.id
    assert flow.on_alert(alert("red", site="SITE-9")).id == a.id  # type: ignore[union-attr]
    assert "merged_from" in [e.action for e in flow.db.log(a.id)]


def _rates(
    flow: Workflow, ev_id: str, start: float, values: list[tuple[float, float | None]]
) -> None:
    for i, (rate, sigma) in enumerate(values):
        found = sigma is not None
        flow.record_rate(
            ev_id,
            RateRow(
                start + 3600 * i,
                "pm10",
                rate if found else 0.0,
                sigma,
                found,
                "inversion" if found else "none",
            ),
        )


@pytest.mark.parametrize(
    ("after", "verdict"),
    [
        ([(0.1, 0.05), (None, None), (0.05, 0.05)], "reduced"),
        ([(1.1, 0.1), (0.9, 0.1), (1.0, 0.1)], "not_reduced"),
        ([(0.7, 0.4), (0.6, 0.4), (0.5, 0.4)], "inconclusive"),
        ([(0.1, 0.05)], "pending"),
    ],
)
def test_verification_evidence(
    flow: Workflow, clock: Clock, after: list[tuple[float, float | None]], verdict: str
) -> None:
    ev = flow.on_alert(alert(), (500.0, 500.0))
    assert ev is not None
    _rates(flow, ev.id, clock.t - 3 * 3600, [(1.0, 0.1), (1.2, 0.1), (0.8, 0.1)])
    assert flow.record_rate(ev.id, RateRow(clock.t - 3600, "pm10", 9.0, 1.0, True, "x")) is False
    flow.act(ev.id, "acknowledge", WANG)
    flow.act(ev.id, "rectify", WANG, note="covered")
    _rates(flow, ev.id, clock.t, after)
    clock.advance(3 * 3600)
    got = flow.evidence(ev.id)
    assert got.verdict == verdict
    assert got.before is not None and abs(got.before.rate_g_s - 1.0) < 1e-9
    assert got.before.hours == 3 and got.before.sigma_g_s > 0
    if verdict == "reduced":
        with pytest.raises(InputError, match="note"):
            flow.act(ev.id, "verify", ZHAO, passed=False)  # against the evidence
        closed = flow.act(ev.id, "verify", ZHAO, passed=True)
        entry = flow.db.log(ev.id)[-1]
        assert closed.state == "closed" and entry.detail["evidence"]["verdict"] == "reduced"
    if verdict == "not_reduced":
        with pytest.raises(InputError, match="note"):
            flow.act(ev.id, "verify", ZHAO, passed=True)


def test_the_hour_of_the_rectification_counts_on_neither_side(
    flow: Workflow, clock: Clock
) -> None:
    """Rectified 20 minutes into an hour: that hour's estimate (the site already quiet for
    most of it) is not "before", or it would drag the rate before down to nothing."""
    ev = flow.on_alert(alert(), (500.0, 500.0))
    assert ev is not None
    hour = clock.t - clock.t % 3600
    _rates(flow, ev.id, hour - 2 * 3600, [(1.0, 0.1), (1.2, 0.1), (None, None)])
    flow.act(ev.id, "acknowledge", WANG)
    clock.t = hour + 1200
    flow.act(ev.id, "rectify", WANG, note="covered")
    _rates(flow, ev.id, hour + 3600, [(None, None), (None, None), (None, None)])
    clock.advance(4 * 3600)
    got = flow.evidence(ev.id)
    assert got.before is not None and got.before.hours == 2
    assert abs(got.before.rate_g_s - 1.1) < 1e-9
    assert got.after is not None and got.after.hours == 3
    assert got.verdict == "reduced"


def test_automatic_verification_follows_the_verdict(lite: Store, clock: Clock) -> None:
    cfg = EventsConfig(verification=VerificationConfig(auto=True, after_hours=2))
    flow = make_flow(lite, clock, cfg)
    ev = flow.on_alert(alert(), (500.0, 500.0))
    assert ev is not None
    _rates(flow, ev.id, clock.t - 2 * 3600, [(1.0, 0.1), (1.0, 0.1)])
    flow.act(ev.id, "acknowledge", WANG)
    flow.act(ev.id, "rectify", WANG, note="covered")
    _rates(flow, ev.id, clock.t, [(1.0, 0.1), (1.1, 0.1)])
    flow.tick(clock.advance(2 * 3600))
    back = flow.get(ev.id)
    assert back.state == "dispatched" and back.rework == 1


def test_the_alert_tables_on_both_back_ends(store: Store, clock: Clock) -> None:
    from cloud.alerts_store import AlertsDb
    from cloud.auth import add_actor, hash_token
    from cloud.receivers import Target
    from cloud.routing import GroupState, Silence, parse_matchers

    db = AlertsDb(store)
    a = alert()
    db.put_alert(a)
    db.put_alert(a)  # an upsert
    assert db.get_alert(a.fingerprint) == a and db.alerts(state="firing") == [a]
    g = {
        ("root.1", '{site="SITE-1"}'): GroupState(
            clock.t, clock.t + 30, clock.t, frozenset({("f", "red")})
        )
    }
    db.save_groups(g)
    assert db.groups() == g
    db.save_groups({}, g)
    assert db.groups() == {}
    s = Silence("s1", parse_matchers(['site="SITE-1"']), clock.t, clock.t + 60, "me", "works")
    db.add_silence(s)
    assert db.expire_silence("s1", clock.t) and db.silences()[0].state(clock.t) == "expired"
    db.add_notification("n1", "centre", {"target": {"url": "http://x"}, "body": {"a": 1}}, clock.t)
    (due,) = db.due_notifications(clock.t, 10)
    assert due.target == Target(url="http://x") and due.body == {"a": 1}
    db.mark_retry("n1", "HTTP 503", clock.t + 10)
    assert db.due_notifications(clock.t, 10) == []
    db.mark_sent("n1", clock.t + 10)
    assert db.notifications("sent")[0]["attempts"] == 2
    token = add_actor(db, Actor("Wang", "officer", site="SITE-1"), clock.t)
    assert db.actor_by_token(hash_token(token)) == Actor("Wang", "officer", site="SITE-1")

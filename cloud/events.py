"""The closed-loop event workflow (China's grid-management loop: discover -> file ->
dispatch -> handle -> feedback -> verify -> close):

    new --file--> filed --dispatch--> dispatched --acknowledge--> acknowledged
      --progress--> in_progress --rectify--> verifying --verify(pass)--> closed
                                                        --verify(fail)--> dispatched (rework)
    any open state --cancel--> cancelled | --merge--> merged | --close--> closed

*Escalated* is an overlay, not a state: when the acknowledgement deadline (while
dispatched) or the rectification deadline (until rectified) passes, ``escalation`` goes up
by one, the event keeps its state, and the alert engine raises an ``EventEscalated``
alert that the routing tree sends to the next level. Deadlines run from dispatch, by level
(``[events.sla.LEVEL] ack``, ``rectify``); rework starts them again.

An event is keyed on its site (``site:ID``), else its grid cell (``cell:ID``), else its
station (``station:ID``, health): while one is open for a key, every alert for that key
joins it (raising its level if higher) and nothing new is opened. Alerts for the key of a
merged event join the event it was merged into. Every change is written with its audit
entry (who, what, when, from, to, detail) in one transaction; the trail is append-only.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from cloud import auth
from cloud.alert_types import Alert, fingerprint, higher, level_rank, parse_duration
from cloud.alerts_store import Actor
from cloud.events_store import OPEN_STATES, Conflict, Event, EventsDb, RateRow
from cloud.store import NotFound
from cloud.verification import Evidence, Nearby, StationHours, VerificationConfig, evidence
from protocols.errors import InputError
from protocols.tomlconf import Table

log = logging.getLogger(__name__)

DEFAULT_SLA: Final = {  # level -> (ack within, rectify within), seconds
    "red": (1800.0, 4 * 3600.0),
    "orange": (3600.0, 12 * 3600.0),
    "yellow": (4 * 3600.0, 24 * 3600.0),
    "blue": (24 * 3600.0, 72 * 3600.0),
}
ACTIONS: Final = {  # action -> states it may start from (None: any open state)
    "file": ("new",),
    "dispatch": ("filed",),
    "acknowledge": ("dispatched",),
    "progress": ("acknowledged", "in_progress"),
    "rectify": ("acknowledged", "in_progress"),
    "verify": ("verifying",),
    "close": None,
    "cancel": None,
    "merge": None,
    "note": None,
}
NEEDS_NOTE: Final = frozenset({"rectify", "close", "cancel"})


@dataclass(frozen=True)
class EventsConfig:
    min_level: str = "yellow"
    auto_file: bool = True
    auto_dispatch: bool = True
    sla: Mapping[str, tuple[float, float]] = field(default_factory=lambda: dict(DEFAULT_SLA))
    verification: VerificationConfig = field(default_factory=VerificationConfig)
    notify: str | None = None  # receiver told of dispatches and rework (e.g. to = "assignee")


def event_key(labels: Mapping[str, str], kind: str) -> str:
    if kind == "health" and labels.get("station"):
        return f"station:{labels['station']}"
    for k in ("site", "cell", "station"):
        if labels.get(k):
            return f"{k}:{labels[k]}"
    return f"rule:{labels.get('alertname', '?')}"


class Workflow:
    def __init__(
        self,
        db: EventsDb,
        cfg: EventsConfig | None = None,
        *,
        clock: Callable[[], float] = time.time,
        assignee: Callable[[Mapping[str, str], str], str | None] | None = None,
        nearby: Nearby | None = None,
        station_hours: StationHours | None = None,
        on_change: Callable[[Event, str, Actor], None] | None = None,
    ) -> None:
        self.on_change = on_change  # told of every action done (event after it, action, actor)
        self.db = db
        self.cfg = cfg or EventsConfig()
        self.clock = clock
        self.assignee = assignee
        self.nearby = nearby
        self.station_hours = station_hours

    # -- from alerts ------------------------------------------------------------------
    def on_alert(
        self, alert: Alert, place: tuple[float, float] | None = None, now: float | None = None
    ) -> Event | None:
        """The open event this alert belongs to, opened (and filed, dispatched) if none."""
        if level_rank(alert.level) < level_rank(self.cfg.min_level):
            return None
        now = self.clock() if now is None else now
        key = event_key(alert.labels, alert.kind)
        ev = self.db.open_by_key(key)
        if ev is None:
            for merged in self.db.merged_by_key(key):
                target = self.db.get(merged.merged_into or "")
                if target is not None and target.open:
                    ev = target
                    break
        if ev is not None:
            return self._join(ev, alert, now)
        labels = alert.labels
        ev = Event(
            id=f"ev-{uuid.uuid4().hex[:12]}",
            key=key,
            state="new",
            level=alert.level,
            title=alert.annotations.get("summary", alert.rule),
            kind=alert.kind,
            created=now,
            updated=now,
            site=labels.get("site") or None,
            cell=labels.get("cell") or None,
            area=labels.get("area") or None,
            station=labels.get("station") or None,
            quantity=labels.get("quantity") or None,
            source_type=labels.get("source_type") or None,
            x_m=None if place is None else place[0],
            y_m=None if place is None else place[1],
            labels=dict(labels),
        )
        detail = {"alert": alert.fingerprint, "rule": alert.rule, "value": alert.value}
        self.db.create(ev, ("system", "system", "open", detail))
        log.info("events: opened %s (%s, %s) from %s", ev.id, key, ev.level, alert.rule)
        if self.cfg.auto_file:
            ev = self.act(ev.id, "file", auth.SYSTEM, now=now)
            if self.cfg.auto_dispatch:
                who = self.assignee(labels, alert.kind) if self.assignee else None
                if who is not None:
                    ev = self.act(ev.id, "dispatch", auth.SYSTEM, assignee=who, now=now)
                else:
                    self.db.note(
                        ev.id,
                        now,
                        "system",
                        "system",
                        "note",
                        {"note": "nobody responsible found: the centre dispatches"},
                    )
        return ev

    def _join(self, ev: Event, alert: Alert, now: float) -> Event:
        if alert.event_id == ev.id and level_rank(alert.level) <= level_rank(ev.level):
            return ev
        changes: dict[str, Any] = {}
        detail: dict[str, Any] = {
            "alert": alert.fingerprint,
            "rule": alert.rule,
            "value": alert.value,
        }
        action = "alert"
        if level_rank(alert.level) > level_rank(ev.level):
            action = "level_raised"
            changes["level"] = alert.level
            detail["from_level"] = ev.level
            detail["to_level"] = alert.level
            if ev.dispatched_at is not None:
                ack_s, fix_s = self.cfg.sla[alert.level]
                if ev.ack_due is not None:
                    changes["ack_due"] = min(ev.ack_due, ev.dispatched_at + ack_s)
                if ev.rectify_due is not None:
                    changes["rectify_due"] = min(ev.rectify_due, ev.dispatched_at + fix_s)
        return self.db.change(ev.id, None, changes, ("system", "system", action, detail), now)

    # -- people -----------------------------------------------------------------------
    def act(
        self,
        event_id: str,
        action: str,
        actor: Actor,
        *,
        note: str | None = None,
        assignee: str | None = None,
        passed: bool | None = None,
        into: str | None = None,
        now: float | None = None,
    ) -> Event:
        """Do ``action`` on an event as ``actor``: Forbidden, Conflict, NotFound or
        InputError when it cannot be done."""
        now = self.clock() if now is None else now
        if action not in ACTIONS:
            raise InputError(f"unknown action {action!r}; one of {', '.join(ACTIONS)}")
        ev = self.get(event_id)
        try:
            auth.check(actor, action, ev)
        except auth.Forbidden:
            self.db.note(ev.id, now, actor.name, actor.role, "denied", {"action": action})
            raise
        if action in NEEDS_NOTE and not (note and note.strip()):
            raise InputError(f"{action} needs a note saying what and why")
        allowed = None if action == "note" else (ACTIONS[action] or OPEN_STATES)
        detail: dict[str, Any] = {"note": note} if note else {}
        changes: dict[str, Any] = {}
        if action == "file":
            changes["state"] = "filed"
        elif action == "dispatch":
            who = assignee or ev.assignee
            if not who:
                raise InputError("dispatch needs an assignee (a person's name)")
            changes.update(self._dispatch(ev.level, now), assignee=who)
            detail["assignee"] = who
        elif action == "acknowledge":
            changes["state"] = "acknowledged"
        elif action == "progress":
            changes["state"] = "in_progress"
        elif action == "rectify":
            changes.update(state="verifying", rectified_at=now)
        elif action == "verify":
            if passed is None:
                raise InputError("verify needs a decision: pass or fail")
            ev_now = self.evidence(ev.id, now)
            detail["evidence"] = ev_now.to_json()
            against = (passed and ev_now.verdict == "not_reduced") or (
                not passed and ev_now.verdict == "reduced"
            )
            if (against or not passed) and not (note and note.strip()):
                raise InputError(
                    f"verify {'pass' if passed else 'fail'} with evidence '{ev_now.verdict}' "
                    "needs a note saying why"
                )
            detail["passed"] = passed
            if passed:
                changes.update(state="closed", closed_at=now)
            else:
                changes.update(
                    self._dispatch(ev.level, now), rework=ev.rework + 1, rectified_at=None
                )
        elif action in ("close", "cancel"):
            changes.update(state="closed" if action == "close" else "cancelled", closed_at=now)
        elif action == "merge":
            target = self.get(into or "")
            if target.id == ev.id or not target.open:
                raise Conflict(
                    f"cannot merge {ev.id} into {target.id}: it must be another open event"
                )
            changes.update(state="merged", merged_into=target.id, closed_at=now)
            detail["into"] = target.id
        out = self.db.change(ev.id, allowed, changes, (actor.name, actor.role, action, detail), now)
        if action == "merge":
            self.db.note(target.id, now, actor.name, actor.role, "merged_from", {"event": ev.id})
        log.info("events: %s %s %s -> %s", actor.name, action, ev.id, out.state)
        if self.on_change is not None:
            try:
                self.on_change(out, action, actor)
            except Exception:
                log.exception("events: telling of %s %s failed", action, ev.id)
        return out

    def _dispatch(self, level: str, now: float) -> dict[str, Any]:
        ack_s, fix_s = self.cfg.sla[level]
        return {
            "state": "dispatched",
            "dispatched_at": now,
            "ack_due": now + ack_s,
            "rectify_due": now + fix_s,
            "ack_escalated": False,
            "rectify_escalated": False,
        }

    def get(self, event_id: str) -> Event:
        ev = self.db.get(event_id)
        if ev is None:
            raise NotFound(f"no event {event_id!r}")
        return ev

    # -- time -------------------------------------------------------------------------
    def tick(self, now: float) -> list[tuple[Event, str]]:
        """Escalate every event whose deadline passed; return (event, "ack"|"rectify")."""
        out: list[tuple[Event, str]] = []
        for found in self.db.events(states=("dispatched", "acknowledged", "in_progress")):
            ev = found
            for deadline, due, done in (
                ("ack", ev.ack_due, ev.ack_escalated or ev.state != "dispatched"),
                ("rectify", ev.rectify_due, ev.rectify_escalated),
            ):
                if done or due is None or now < due:
                    continue
                flag = f"{deadline}_escalated"
                try:
                    ev = self.db.change(
                        ev.id,
                        ("dispatched",)
                        if deadline == "ack"
                        else ("dispatched", "acknowledged", "in_progress"),
                        {"escalation": ev.escalation + 1, flag: True},
                        (
                            "system",
                            "system",
                            "escalate",
                            {"deadline": deadline, "due": due, "tier": ev.escalation + 1},
                        ),
                        now,
                    )
                except Conflict:
                    continue  # someone acted in between: nothing to escalate
                log.warning(
                    "events: %s missed its %s deadline; escalation %d",
                    ev.id,
                    deadline,
                    ev.escalation,
                )
                out.append((ev, deadline))
        if self.cfg.verification.auto:
            self._auto_verify(now)
        return out

    def _auto_verify(self, now: float) -> None:
        for ev in self.db.events(states=("verifying",)):
            verdict = self.evidence(ev.id, now).verdict
            if verdict in ("reduced", "not_reduced"):
                self.act(
                    ev.id,
                    "verify",
                    auth.SYSTEM,
                    passed=verdict == "reduced",
                    note=f"automatic: evidence {verdict}",
                    now=now,
                )

    # -- evidence ---------------------------------------------------------------------
    def record_rate(self, event_id: str, row: RateRow) -> bool:
        return self.db.put_rate(event_id, row)

    def evidence(self, event_id: str, now: float | None = None) -> Evidence:
        ev = self.get(event_id)
        return evidence(
            ev,
            self.db.rates(ev.id),
            self.cfg.verification,
            self.clock() if now is None else now,
            nearby=self.nearby,
            station_hours=self.station_hours,
        )


def escalation_alert(ev: Event, deadline: str, now: float) -> Alert:
    """The ``EventEscalated`` alert of a missed deadline, for the routing tree to send up."""
    labels = {
        "alertname": "EventEscalated",
        "kind": "event",
        "event": ev.id,
        "deadline": deadline,
        "tier": str(ev.escalation),
        "site": ev.site or "",
        "cell": ev.cell or "",
        "area": ev.area or "",
        "station": ev.station or "",
    }
    labels = {k: v for k, v in labels.items() if v}
    summary = (
        f"event {ev.id} ({ev.title}) missed its {deadline} deadline; escalation {ev.escalation}"
    )
    return Alert(
        fingerprint=fingerprint(labels),
        rule="EventEscalated",
        kind="event",
        labels={**labels, "level": ev.level},
        level=ev.level,
        annotations={"summary": summary, "assignee": ev.assignee or ""},
        starts_at=now,
        updated_at=now,
        event_id=ev.id,
    )


def escalation_over(a: Alert, ev: Event | None) -> bool:
    """Whether an escalation alert's condition has ended (acknowledged, rectified, closed)."""
    if ev is None:
        return True
    if a.labels.get("deadline") == "ack":
        return not (ev.state == "dispatched" and ev.ack_escalated)
    return not (ev.rectify_escalated and ev.state in ("dispatched", "acknowledged", "in_progress"))


# --------------------------------------------------------------------------- config


def parse_events(t: Table) -> EventsConfig:
    from cloud.alert_types import LEVELS

    d = EventsConfig()
    sla = dict(DEFAULT_SLA)
    st = t.table("sla")
    for level in st:
        if level not in LEVELS:
            raise st.error(level, f"unknown level; one of {', '.join(LEVELS)}")
        lt = st.table(level)
        ack, fix = sla[level]
        try:
            ack = parse_duration(lt.raw("ack", ack))
            fix = parse_duration(lt.raw("rectify", fix))
        except InputError as exc:
            raise lt.error(None, exc.message) from None
        lt.done()
        sla[level] = (ack, fix)
    st.done()
    vt = t.table("verification")
    dv = VerificationConfig()
    ver = VerificationConfig(
        before_hours=vt.integer("before_hours", dv.before_hours, min=1, max=168),
        after_hours=vt.integer("after_hours", dv.after_hours, min=1, max=168),
        min_reduction=vt.number("min_reduction", dv.min_reduction, min=0.0, max=1.0),
        z_min=vt.number("z_min", dv.z_min, min=0.0),
        detection_limit_g_s=vt.number("detection_limit_g_s", dv.detection_limit_g_s, positive=True),
        station_radius_m=vt.number("station_radius_m", dv.station_radius_m, positive=True),
        auto=vt.flag("auto", dv.auto),
    )
    vt.done()
    cfg = EventsConfig(
        min_level=t.text("min_level", d.min_level, choices=LEVELS),
        auto_file=t.flag("auto_file", d.auto_file),
        auto_dispatch=t.flag("auto_dispatch", d.auto_dispatch),
        notify=t.text("notify", None),
        sla=sla,
        verification=ver,
    )
    t.done()
    return cfg


class Notifier(Protocol):
    def enqueue(
        self, receiver: str, body: Mapping[str, Any], labels: Mapping[str, str], now: float
    ) -> list[str]: ...


def notify_change(
    outbox: Notifier, receiver: str | None, ev: Event, action: str, actor: Actor, now: float
) -> None:
    """Queue the work order for ``[events] notify`` when an event is dispatched to a named
    person (rework included). Whoever acts -- the API, the engine, ``cloud events`` on the
    command line -- queues it in the store's notification outbox; the running service's
    deliverer sends it, with its retries."""
    if receiver is None or ev.state != "dispatched" or action not in ("dispatch", "verify"):
        return
    labels = {
        k: v
        for k, v in (
            ("event", ev.id),
            ("site", ev.site),
            ("cell", ev.cell),
            ("area", ev.area),
            ("station", ev.station),
            ("assignee", ev.assignee),
            ("level", ev.level),
        )
        if v
    }
    body = {
        "version": "1",
        "kind": "event",
        "status": "dispatched",
        "action": action,
        "by": actor.name,
        "event": ev.to_json(),
        "common_labels": labels,
        "alerts": [],
    }
    outbox.enqueue(receiver, body, labels, now)


__all__ = [
    "Conflict",
    "EventsConfig",
    "Notifier",
    "Workflow",
    "higher",
    "notify_change",
    "parse_events",
]

"""Persistence of events: the event rows, their append-only audit trail, the orders sent on
their behalf, and the hour-by-hour emission estimates that verification weighs.

A state change and its audit entry are written in one transaction, after checking (under
the row lock on PostgreSQL) that the event is still in a state the action may leave, so two
people acting at once cannot both move it. The audit table is only ever inserted into.
"""

# ruff: noqa: S608 - f-strings here only splice fixed column lists; values are parameters.

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from cloud.alert_types import dumps
from cloud.store import Store
from cloud.store.sql import conditions, where_clause
from protocols.errors import InputError

OPEN_STATES = ("new", "filed", "dispatched", "acknowledged", "in_progress", "verifying")
TERMINAL_STATES = ("closed", "cancelled", "merged")
STATES = OPEN_STATES + TERMINAL_STATES


class Conflict(InputError):
    """The action does not fit the event's state (someone else moved it, or wrong order)."""


@dataclass(frozen=True)
class Event:
    id: str
    key: str  # site:ID | cell:ID | station:ID — one open event per key
    state: str
    level: str
    title: str
    kind: str  # threshold | rise | inversion | health
    created: float
    updated: float
    escalation: int = 0
    site: str | None = None
    cell: str | None = None
    area: str | None = None
    station: str | None = None
    quantity: str | None = None
    source_type: str | None = None
    x_m: float | None = None
    y_m: float | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    assignee: str | None = None
    dispatched_at: float | None = None
    rectified_at: float | None = None
    closed_at: float | None = None
    ack_due: float | None = None
    rectify_due: float | None = None
    ack_escalated: bool = False
    rectify_escalated: bool = False
    rework: int = 0
    merged_into: str | None = None

    @property
    def open(self) -> bool:
        return self.state in OPEN_STATES

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["labels"] = dict(self.labels)
        out["escalated"] = self.escalation > 0
        return out


_COLS = tuple(f.name for f in fields(Event))
_COL_SQL = ", ".join(_COLS)
_BOOLS = ("ack_escalated", "rectify_escalated")


@dataclass(frozen=True)
class LogEntry:
    seq: int
    event_id: str
    ts: float
    actor: str
    role: str
    action: str
    from_state: str | None
    to_state: str | None
    detail: Mapping[str, Any]


@dataclass(frozen=True)
class RateRow:
    hour: float
    quantity: str
    rate: float
    sigma: float | None
    detected: bool
    source: str  # inversion | inventory | none


@dataclass(frozen=True)
class OrderRow:
    command_id: str
    event_id: str
    station: str
    cmd: str
    args: Mapping[str, Any]
    purpose: str  # burst | spray
    issued: float
    deadline: float
    status: str  # sent | ok | error | rejected | timeout
    settled_at: float | None = None
    result: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None


class EventsDb:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._s: Any = store

    # -- events -----------------------------------------------------------------------
    def create(self, ev: Event, entry: tuple[str, str, str, Mapping[str, Any]]) -> Event:
        """Insert a new event with its first audit entry (actor, role, action, detail)."""

        def work(cur: Any) -> None:
            self._s._exec(
                cur,
                f"INSERT INTO events ({_COL_SQL}) VALUES ({', '.join('?' * len(_COLS))})",
                _row(ev),
            )
            self._log(cur, ev.id, ev.created, *entry[:3], None, ev.state, entry[3])

        self._s._write(work)
        return ev

    def get(self, event_id: str) -> Event | None:
        r = self._s._one(f"SELECT {_COL_SQL} FROM events WHERE id = ?", (event_id,))
        return None if r is None else _event(r)

    def open_by_key(self, key: str) -> Event | None:
        marks = ", ".join("?" * len(OPEN_STATES))
        r = self._s._one(
            f"SELECT {_COL_SQL} FROM events WHERE key = ? AND state IN ({marks}) "
            "ORDER BY created DESC LIMIT 1",
            (key, *OPEN_STATES),
        )
        return None if r is None else _event(r)

    def merged_by_key(self, key: str) -> list[Event]:
        rows = self._s._all(
            f"SELECT {_COL_SQL} FROM events WHERE key = ? AND state = 'merged' "
            "ORDER BY created DESC",
            (key,),
        )
        return [_event(r) for r in rows]

    def events(
        self,
        *,
        states: Collection[str] | None = None,
        site: str | None = None,
        limit: int = 1000,
    ) -> list[Event]:
        cond, params = conditions(
            (f"state IN ({', '.join('?' * len(states or ()))})", list(states) if states else None),
            ("site = ?", site),
        )
        rows = self._s._all(
            f"SELECT {_COL_SQL} FROM events {where_clause(cond)} "
            f"ORDER BY created DESC, id LIMIT {int(limit)}",
            params,
        )
        return [_event(r) for r in rows]

    def change(
        self,
        event_id: str,
        allowed: Collection[str] | None,
        changes: Mapping[str, Any],
        entry: tuple[str, str, str, Mapping[str, Any]],
        now: float,
    ) -> Event:
        """Apply ``changes`` if the event's state is in ``allowed`` (None: any), with one
        audit entry, in one transaction; Conflict otherwise."""

        def work(cur: Any) -> Event:
            r = self._s._exec(
                cur,
                f"SELECT {_COL_SQL} FROM events WHERE id = ?{self._s.for_update}",
                (event_id,),
            ).fetchone()
            if r is None:
                from cloud.store import NotFound

                raise NotFound(f"no event {event_id!r}")
            ev = _event(r)
            if allowed is not None and ev.state not in allowed:
                raise Conflict(
                    f"event {event_id} is {ev.state}: cannot {entry[2]} "
                    f"(only from {', '.join(sorted(allowed))})"
                )
            sets = {**changes, "updated": now}
            for k in sets:
                if k not in _COLS:
                    raise KeyError(k)
            vals = [_to_db(k, v) for k, v in sets.items()]
            self._s._exec(
                cur,
                f"UPDATE events SET {', '.join(f'{k} = ?' for k in sets)} WHERE id = ?",
                (*vals, event_id),
            )
            self._log(
                cur, event_id, now, *entry[:3], ev.state, sets.get("state", ev.state), entry[3]
            )
            new = self._s._exec(
                cur, f"SELECT {_COL_SQL} FROM events WHERE id = ?", (event_id,)
            ).fetchone()
            return _event(new)

        result: Event = self._s._write(work)
        return result

    # -- audit ------------------------------------------------------------------------
    def _log(
        self,
        cur: Any,
        event_id: str,
        ts: float,
        actor: str,
        role: str,
        action: str,
        from_state: str | None,
        to_state: str | None,
        detail: Mapping[str, Any],
    ) -> None:
        self._s._exec(
            cur,
            "INSERT INTO event_log (event_id, ts, actor, role, action, from_state, to_state, "
            "detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (event_id, ts, actor, role, action, from_state, to_state, dumps(dict(detail))),
        )

    def note(
        self,
        event_id: str,
        ts: float,
        actor: str,
        role: str,
        action: str,
        detail: Mapping[str, Any],
    ) -> None:
        """An audit entry that changes no state (a hit, an order's ack, a refused attempt)."""
        self._s._write(
            lambda cur: self._log(cur, event_id, ts, actor, role, action, None, None, detail)
        )

    def log(self, event_id: str) -> list[LogEntry]:
        rows = self._s._all(
            "SELECT seq, event_id, ts, actor, role, action, from_state, to_state, detail "
            "FROM event_log WHERE event_id = ? ORDER BY seq",
            (event_id,),
        )
        return [
            LogEntry(int(r[0]), r[1], float(r[2]), r[3], r[4], r[5], r[6], r[7], json.loads(r[8]))
            for r in rows
        ]

    # -- orders -----------------------------------------------------------------------
    def add_order(self, o: OrderRow) -> None:
        def work(cur: Any) -> None:
            self._s._exec(
                cur,
                "INSERT INTO event_commands (command_id, event_id, station, cmd, args, purpose, "
                "issued, deadline, status, settled_at, error) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    o.command_id,
                    o.event_id,
                    o.station,
                    o.cmd,
                    dumps(dict(o.args)),
                    o.purpose,
                    o.issued,
                    o.deadline,
                    o.status,
                    o.settled_at,
                    o.error,
                ),
            )

        self._s._write(work)

    def orders(self, event_id: str | None = None, status: str | None = None) -> list[OrderRow]:
        cond, params = conditions(("event_id = ?", event_id), ("status = ?", status))
        rows = self._s._all(
            "SELECT command_id, event_id, station, cmd, args, purpose, issued, deadline, status, "
            f"settled_at, result, error FROM event_commands {where_clause(cond)} "
            "ORDER BY issued, command_id",
            params,
        )
        return [
            OrderRow(
                r[0],
                r[1],
                r[2],
                r[3],
                json.loads(r[4]),
                r[5],
                float(r[6]),
                float(r[7]),
                r[8],
                None if r[9] is None else float(r[9]),
                json.loads(r[10] or "{}"),
                r[11],
            )
            for r in rows
        ]

    def settle_order(
        self, command_id: str, status: str, now: float, result: Mapping[str, Any], error: str | None
    ) -> bool:
        def work(cur: Any) -> int:
            return int(
                self._s._exec(
                    cur,
                    "UPDATE event_commands SET status = ?, settled_at = ?, result = ?, error = ? "
                    "WHERE command_id = ? AND status = 'sent'",
                    (status, now, dumps(dict(result)), error, command_id),
                ).rowcount
            )

        return bool(self._s._write(work))

    # -- rates ------------------------------------------------------------------------
    def put_rate(self, event_id: str, r: RateRow) -> bool:
        """Record one hour's estimate; a second one for the same hour is ignored."""

        def work(cur: Any) -> int:
            return int(
                self._s._exec(
                    cur,
                    "INSERT INTO event_rates (event_id, hour, quantity, rate, sigma, detected, "
                    "source) VALUES (?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (event_id, hour, quantity) DO NOTHING",
                    (event_id, r.hour, r.quantity, r.rate, r.sigma, int(r.detected), r.source),
                ).rowcount
            )

        return bool(self._s._write(work))

    def rates(self, event_id: str) -> list[RateRow]:
        rows = self._s._all(
            "SELECT hour, quantity, rate, sigma, detected, source FROM event_rates "
            "WHERE event_id = ? ORDER BY hour",
            (event_id,),
        )
        return [
            RateRow(
                float(r[0]),
                r[1],
                float(r[2]),
                None if r[3] is None else float(r[3]),
                bool(r[4]),
                r[5],
            )
            for r in rows
        ]


def _to_db(key: str, value: Any) -> Any:
    if key == "labels":
        return dumps(dict(value))
    if key in _BOOLS:
        return int(bool(value))
    return value


def _row(ev: Event) -> Sequence[Any]:
    return tuple(_to_db(k, getattr(ev, k)) for k in _COLS)


def _event(r: Sequence[Any]) -> Event:
    d = dict(zip(_COLS, r, strict=True))
    d["labels"] = json.loads(d["labels"])
    for k in _BOOLS:
        d[k] = bool(d[k])
    for k in (
        "created",
        "updated",
        "x_m",
        "y_m",
        "dispatched_at",
        "rectified_at",
        "closed_at",
        "ack_due",
        "rectify_due",
    ):
        if d[k] is not None:
            d[k] = float(d[k])
    return Event(**d)

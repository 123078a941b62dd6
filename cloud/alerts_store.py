"""Persistence of alerts, routing groups, silences, the notification outbox and actors, on
the central store (SQLite or PostgreSQL: the same SQL through the store's own plumbing).

The tables come from ``cloud.alerts_schema`` (the ``alerts`` component's migrations).
"""

# ruff: noqa: S608 - f-strings here only splice fixed column lists; values are parameters.

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cloud.alert_types import Alert, dumps
from cloud.receivers import Outgoing, Target
from cloud.routing import GroupKey, GroupState, Silence, parse_matchers
from cloud.store import Store
from cloud.store.sql import conditions, where_clause

_ALERT_COLS = (
    "fingerprint, rule, kind, labels, annotations, level, state, value, starts_at, "
    "updated_at, ends_at, event_id"
)
_NOTE_COLS = (
    "id, receiver, route, group_key, payload, created, status, attempts, next_at, last_error, "
    "sent_at, escalated_from"
)


@dataclass(frozen=True)
class Actor:
    """A person who acts through the API or the CLI, with a role and a scope."""

    name: str
    role: str  # centre | inspector | officer | maintainer
    site: str | None = None
    cells: tuple[str, ...] = ()
    webhook: str | None = None
    disabled: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "role": self.role,
            "site": self.site,
            "cells": list(self.cells),
            "webhook": self.webhook,
            "disabled": self.disabled,
        }


class AlertsDb:
    """The alert tables of one store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._s: Any = store  # the store's SQL plumbing (_write, _exec, _all, _one)

    # -- alerts -----------------------------------------------------------------------
    def put_alert(self, a: Alert) -> None:
        def work(cur: Any) -> None:
            self._s._exec(
                cur,
                f"INSERT INTO alerts ({_ALERT_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (fingerprint) DO UPDATE SET rule = excluded.rule, "
                "kind = excluded.kind, labels = excluded.labels, "
                "annotations = excluded.annotations, level = excluded.level, "
                "state = excluded.state, value = excluded.value, "
                "starts_at = excluded.starts_at, updated_at = excluded.updated_at, "
                "ends_at = excluded.ends_at, event_id = excluded.event_id",
                _alert_row(a),
            )

        self._s._write(work)

    def get_alert(self, fp: str) -> Alert | None:
        r = self._s._one(f"SELECT {_ALERT_COLS} FROM alerts WHERE fingerprint = ?", (fp,))
        return None if r is None else _alert(r)

    def alerts(
        self, state: str | None = None, since: float | None = None, limit: int = 10_000
    ) -> list[Alert]:
        """Alerts, newest first; ``since`` keeps firing ones and those resolved after it."""
        cond, params = conditions(
            ("state = ?", state), ("(state = 'firing' OR ends_at >= ?)", since)
        )
        rows = self._s._all(
            f"SELECT {_ALERT_COLS} FROM alerts {where_clause(cond)} "
            f"ORDER BY updated_at DESC, fingerprint LIMIT {int(limit)}",
            params,
        )
        return [_alert(r) for r in rows]

    # -- routing groups ---------------------------------------------------------------
    def groups(self) -> dict[GroupKey, GroupState]:
        rows = self._s._all(
            "SELECT route, group_key, created, next_flush, notified_at, notified FROM alert_groups"
        )
        return {
            (r[0], r[1]): GroupState(
                created=float(r[2]),
                next_flush=float(r[3]),
                notified_at=None if r[4] is None else float(r[4]),
                notified=frozenset((fp, lv) for fp, lv in json.loads(r[5])),
            )
            for r in rows
        }

    def save_groups(
        self,
        groups: Mapping[GroupKey, GroupState],
        before: Mapping[GroupKey, GroupState] | None = None,
    ) -> None:
        """Make the table hold exactly ``groups``; given what it held ``before``, only the
        rows that changed are written."""

        def work(cur: Any) -> None:
            if before is None:
                have = {
                    (r[0], r[1])
                    for r in self._s._exec(
                        cur, "SELECT route, group_key FROM alert_groups"
                    ).fetchall()
                }
            else:
                have = set(before)
            for route, key in have - set(groups):
                self._s._exec(
                    cur, "DELETE FROM alert_groups WHERE route = ? AND group_key = ?", (route, key)
                )
            for (route, key), st in groups.items():
                if before is not None and before.get((route, key)) == st:
                    continue
                self._s._exec(
                    cur,
                    "INSERT INTO alert_groups (route, group_key, created, next_flush, "
                    "notified_at, notified) VALUES (?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (route, group_key) DO UPDATE SET "
                    "next_flush = excluded.next_flush, notified_at = excluded.notified_at, "
                    "notified = excluded.notified",
                    (
                        route,
                        key,
                        st.created,
                        st.next_flush,
                        st.notified_at,
                        dumps(sorted(st.notified)),
                    ),
                )

        self._s._write(work)

    # -- silences ---------------------------------------------------------------------
    def add_silence(self, s: Silence) -> None:
        def work(cur: Any) -> None:
            self._s._exec(
                cur,
                "INSERT INTO silences (id, matchers, starts_at, ends_at, created_by, comment, "
                "created) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    s.id,
                    dumps([str(m) for m in s.matchers]),
                    s.starts_at,
                    s.ends_at,
                    s.created_by,
                    s.comment,
                    s.created,
                ),
            )

        self._s._write(work)

    def silences(self) -> list[Silence]:
        rows = self._s._all(
            "SELECT id, matchers, starts_at, ends_at, created_by, comment, created "
            "FROM silences ORDER BY created DESC"
        )
        return [
            Silence(
                id=r[0],
                matchers=parse_matchers(json.loads(r[1])),
                starts_at=float(r[2]),
                ends_at=float(r[3]),
                created_by=r[4],
                comment=r[5],
                created=float(r[6]),
            )
            for r in rows
        ]

    def get_silence(self, sid: str) -> Silence | None:
        return next((s for s in self.silences() if s.id == sid), None)

    def expire_silence(self, sid: str, now: float) -> bool:
        def work(cur: Any) -> int:
            return int(
                self._s._exec(
                    cur,
                    "UPDATE silences SET ends_at = ?, "
                    "starts_at = CASE WHEN starts_at >= ? THEN ? ELSE starts_at END "
                    "WHERE id = ? AND ends_at > ?",
                    (now, now, now - 0.001, sid, now),
                ).rowcount
            )

        return bool(self._s._write(work))

    # -- notification outbox ----------------------------------------------------------
    def add_notification(
        self,
        nid: str,
        receiver: str,
        payload: Mapping[str, Any],
        now: float,
        *,
        route: str | None = None,
        group_key: str | None = None,
        escalated_from: str | None = None,
    ) -> None:
        def work(cur: Any) -> None:
            self._s._exec(
                cur,
                f"INSERT INTO notifications ({_NOTE_COLS}) "
                "VALUES (?, ?, ?, ?, ?, ?, 'pending', 0, ?, NULL, NULL, ?)",
                (nid, receiver, route, group_key, dumps(payload), now, now, escalated_from),
            )

        self._s._write(work)

    def due_notifications(self, now: float, limit: int) -> list[Outgoing]:
        rows = self._s._all(
            "SELECT id, receiver, payload, attempts FROM notifications "
            "WHERE status = 'pending' AND next_at <= ? "
            f"ORDER BY next_at, created LIMIT {int(limit)}",
            (now,),
        )
        out = []
        for r in rows:
            payload = json.loads(r[2])
            out.append(
                Outgoing(r[0], r[1], Target(**payload["target"]), payload["body"], int(r[3]))
            )
        return out

    def mark_sent(self, nid: str, now: float) -> None:
        def work(cur: Any) -> None:
            self._s._exec(
                cur,
                "UPDATE notifications SET status = 'sent', sent_at = ?, "
                "attempts = attempts + 1 WHERE id = ?",
                (now, nid),
            )

        self._s._write(work)

    def mark_retry(self, nid: str, error: str, next_at: float, status: str = "pending") -> None:
        def work(cur: Any) -> None:
            self._s._exec(
                cur,
                "UPDATE notifications SET status = ?, attempts = attempts + 1, next_at = ?, "
                "last_error = ? WHERE id = ?",
                (status, next_at, error[:500], nid),
            )

        self._s._write(work)

    def notifications(self, status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        where, params = ("WHERE status = ?", (status,)) if status else ("", ())
        rows = self._s._all(
            f"SELECT {_NOTE_COLS} FROM notifications {where} "
            f"ORDER BY created DESC, id LIMIT {int(limit)}",
            params,
        )
        keys = [k.strip() for k in _NOTE_COLS.split(",")]
        out = []
        for r in rows:
            d = dict(zip(keys, r, strict=True))
            d["payload"] = json.loads(d["payload"])
            out.append(d)
        return out

    # -- actors -----------------------------------------------------------------------
    def put_actor(self, a: Actor, token_sha256: str | None, now: float) -> None:
        def work(cur: Any) -> None:
            self._s._exec(
                cur,
                "INSERT INTO actors (name, role, site, cells, webhook, token_sha256, created, "
                "disabled) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                "role = excluded.role, site = excluded.site, cells = excluded.cells, "
                "webhook = excluded.webhook, disabled = excluded.disabled, "
                "token_sha256 = COALESCE(excluded.token_sha256, actors.token_sha256)",
                (
                    a.name,
                    a.role,
                    a.site,
                    dumps(list(a.cells)),
                    a.webhook,
                    token_sha256,
                    now,
                    int(a.disabled),
                ),
            )

        self._s._write(work)

    def actor_by_token(self, token_sha256: str) -> Actor | None:
        r = self._s._one(
            "SELECT name, role, site, cells, webhook, disabled FROM actors WHERE token_sha256 = ?",
            (token_sha256,),
        )
        return None if r is None else _actor(r)

    def actors(self, role: str | None = None) -> list[Actor]:
        where, params = ("WHERE role = ?", (role,)) if role else ("", ())
        rows = self._s._all(
            f"SELECT name, role, site, cells, webhook, disabled FROM actors {where} ORDER BY name",
            params,
        )
        return [_actor(r) for r in rows]


def _alert_row(a: Alert) -> Sequence[Any]:
    return (
        a.fingerprint,
        a.rule,
        a.kind,
        dumps(dict(a.labels)),
        dumps(dict(a.annotations)),
        a.level,
        a.state,
        a.value,
        a.starts_at,
        a.updated_at,
        a.ends_at,
        a.event_id,
    )


def _alert(r: Sequence[Any]) -> Alert:
    return Alert(
        fingerprint=r[0],
        rule=r[1],
        kind=r[2],
        labels=json.loads(r[3]),
        annotations=json.loads(r[4]),
        level=r[5],
        state=r[6],
        value=None if r[7] is None else float(r[7]),
        starts_at=float(r[8]),
        updated_at=float(r[9]),
        ends_at=None if r[10] is None else float(r[10]),
        event_id=r[11],
    )


def _actor(r: Sequence[Any]) -> Actor:
    return Actor(
        name=r[0],
        role=r[1],
        site=r[2],
        cells=tuple(json.loads(r[3] or "[]")),
        webhook=r[4],
        disabled=bool(r[5]),
    )

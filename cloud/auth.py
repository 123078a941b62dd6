"""Who may see and do what with events, alerts and silences: one token per person, a role
and a scope.

Roles:

* ``centre`` — the command centre: sees everything; files, dispatches, merges, cancels,
  closes, verifies, silences. The service-wide ``[api] tokens`` act as ``centre``.
* ``officer`` — a site's environmental officer: sees and acts on their own site's events
  only (acknowledge, report progress, submit rectification); cannot verify their own work.
* ``inspector`` — a grid inspector: sees the events of their cells or areas; verifies them
  and acts on the ones no site answers for.
* ``maintainer`` — a station maintainer: sees and handles station-health events; may
  silence alerts of a named station (planned maintenance).

Tokens are random (``secrets``), shown once, stored as SHA-256. A refused action raises
``Forbidden`` (HTTP 403), is logged, and — when it concerns an event — written to the
event's audit trail.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Iterable, Mapping
from typing import Final

from cloud.alerts_store import Actor, AlertsDb
from cloud.events_store import Event
from cloud.routing import Matcher
from protocols.errors import AirtraceError

log = logging.getLogger(__name__)

ROLES: Final = ("centre", "inspector", "officer", "maintainer")
SYSTEM: Final = Actor("system", "system")
CENTRE_ONLY: Final = frozenset({"file", "dispatch", "cancel", "merge", "close"})
HANDLING: Final = frozenset({"acknowledge", "progress", "rectify"})


class Forbidden(AirtraceError):
    """The actor's role or scope does not allow this."""

    def __init__(self, message: str, **fields: object) -> None:
        super().__init__(message, **fields)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return "at_" + secrets.token_urlsafe(24)


def resolve(db: AlertsDb, token: str | None, service_tokens: Iterable[str]) -> Actor | None:
    """The actor a bearer token belongs to: a person's token, or a service token (centre)."""
    if not token:
        return None
    for t in service_tokens:
        if hmac.compare_digest(token.encode(), t.encode()):
            return Actor("api-token", "centre")
    actor = db.actor_by_token(hash_token(token))
    return None if actor is None or actor.disabled else actor


def sees_labels(actor: Actor, labels: Mapping[str, str], kind: str) -> bool:
    if actor.role in ("centre", "system"):
        return True
    if actor.role == "officer":
        return actor.site is not None and labels.get("site") == actor.site
    if actor.role == "inspector":
        return bool({labels.get("cell", ""), labels.get("area", "")} & set(actor.cells))
    if actor.role == "maintainer":
        return kind == "health" and (not actor.cells or labels.get("cell", "") in actor.cells)
    return False


def sees(actor: Actor, ev: Event) -> bool:
    labels = {"site": ev.site or "", "cell": ev.cell or "", "area": ev.area or ""}
    return sees_labels(actor, labels, ev.kind)


def may(actor: Actor, action: str, ev: Event) -> bool:  # noqa: PLR0911 - one rule a line
    if actor.role in ("centre", "system"):
        return True
    if not sees(actor, ev):
        return False
    if action in ("view", "note"):
        return True
    if action in CENTRE_ONLY:
        return False
    if action in HANDLING:
        return (
            actor.name == ev.assignee
            or actor.role == "officer"
            or (actor.role == "maintainer" and ev.kind == "health")
            or (actor.role == "inspector" and ev.site is None)
        )
    if action == "verify":
        return actor.role == "inspector" and actor.name != ev.assignee
    return False


def check(actor: Actor, action: str, ev: Event) -> None:
    """Raise Forbidden (and log it) unless ``actor`` may do ``action`` on ``ev``."""
    if not may(actor, action, ev):
        log.warning("auth: refused %s (%s) to %s event %s", actor.name, actor.role, action, ev.id)
        raise Forbidden(
            f"{actor.name} ({actor.role}) may not {action} event {ev.id}",
            actor=actor.name,
            action=action,
            event=ev.id,
        )


def check_silence(actor: Actor, matchers: Iterable[Matcher]) -> None:
    """Centre silences anything; a maintainer only alerts of a named station."""
    if actor.role in ("centre", "system"):
        return
    if actor.role == "maintainer" and any(
        m.name == "station" and m.op == "=" and m.value for m in matchers
    ):
        return
    log.warning("auth: refused %s (%s) a silence", actor.name, actor.role)
    raise Forbidden(
        f"{actor.name} ({actor.role}) may not create this silence "
        '(maintainers: only with station="ID")',
        actor=actor.name,
        action="silence",
    )


def require_centre(actor: Actor, action: str) -> None:
    if actor.role not in ("centre", "system"):
        log.warning("auth: refused %s (%s) to %s", actor.name, actor.role, action)
        raise Forbidden(f"{actor.name} ({actor.role}) may not {action}", actor=actor.name)


def add_actor(db: AlertsDb, actor: Actor, now: float, *, token: str | None = None) -> str:
    """Create (or replace) a person with a fresh token; return the token (shown once)."""
    from protocols.errors import InputError

    if actor.role not in ROLES:
        raise InputError(f"role must be one of {', '.join(ROLES)}, got {actor.role!r}")
    if actor.role == "officer" and not actor.site:
        raise InputError("an officer needs the site they answer for")
    if actor.role == "inspector" and not actor.cells:
        raise InputError("an inspector needs the cells or areas they inspect")
    token = token or new_token()
    if len(token) < 16:
        raise InputError("a token must be at least 16 characters")
    db.put_actor(actor, hash_token(token), now)
    return token

"""HTTP routes for alerts, silences and events (under ``/api/v1``), mounted by
``cloud.api.create_app``. Every request names its actor with ``Authorization: Bearer
<token>``: a person's token (``airtrace cloud alerts user add``) or a service token
(``[api] tokens``, role centre). Without a token the request is refused (401), except on an
open API (no service tokens and no person tokens yet), where it acts as the centre.
What the actor's role does not allow is refused with 403 and logged.

    GET  /me                               the actor behind the token
    GET  /alerts?state=firing|resolved     alerts the actor may see, with mute status
    GET  /silences                         silences (pending, active, expired)
    POST /silences                         {matchers, comment, ends_at | duration, starts_at?}
    DELETE /silences/{id}                  expire a silence now
    GET  /events?state=...&site=...        events the actor may see
    GET  /events/{id}                      the event, its audit trail, orders, evidence
    GET  /events/{id}/evidence             verification evidence
    POST /events/{id}/{action}             file, dispatch, acknowledge, progress, rectify,
                                           verify, close, cancel, merge, note
    GET  /notifications?status=...         the notification outbox (centre)
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from cloud import auth
from cloud.alert_types import parse_duration
from cloud.alerts_store import Actor, AlertsDb
from cloud.events import ACTIONS, Workflow
from cloud.events_store import Conflict, EventsDb
from cloud.routing import Route, Router, Silence, parse_matchers
from cloud.store import NotFound
from protocols.errors import InputError
from protocols.timefmt import parse_iso

PREFIX = "/api/v1"
T = TypeVar("T")


class ActionIn(BaseModel):
    note: str | None = None
    assignee: str | None = None
    passed: bool | None = None
    into: str | None = None


class SilenceIn(BaseModel):
    matchers: list[str]
    comment: str
    starts_at: str | None = None
    ends_at: str | None = None
    duration: str | None = None


def _http(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except auth.Forbidden as exc:
        raise HTTPException(403, str(exc)) from None
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    except Conflict as exc:
        raise HTTPException(409, str(exc)) from None
    except InputError as exc:
        raise HTTPException(400, str(exc)) from None


class Desk:
    """What the routes act through: the running engine's parts, or a workflow of its own
    over the store (default config) when the service has no alerts part."""

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx
        self._own: Workflow | None = None
        self.db = AlertsDb(ctx.store)

    @property
    def engine(self) -> Any:
        return self.ctx.extra.get("alerts") if isinstance(self.ctx.extra, dict) else None

    @property
    def workflow(self) -> Workflow:
        if self.engine is not None:
            return self.engine.workflow  # type: ignore[no-any-return]
        if self._own is None:
            self._own = Workflow(EventsDb(self.ctx.store), clock=self.ctx.clock)
        return self._own

    @property
    def router(self) -> Router | None:
        return None if self.engine is None else self.engine.router


def router(ctx: Any) -> APIRouter:
    desk = Desk(ctx)
    bearer = HTTPBearer(auto_error=False)

    def actor(creds: HTTPAuthorizationCredentials | None = Depends(bearer)) -> Actor:  # noqa: B008
        token = creds.credentials if creds else None
        found = auth.resolve(desk.db, token, ctx.tokens)
        if found is not None:
            return found
        if token is None and not ctx.tokens and not any(a for a in desk.db.actors()):
            return Actor("anonymous", "centre")
        raise HTTPException(401, "a valid bearer token is needed", {"WWW-Authenticate": "Bearer"})

    r = APIRouter(prefix=PREFIX, tags=["alerts and events"])

    @r.get("/me")
    def me(who: Actor = Depends(actor)) -> dict[str, Any]:  # noqa: B008
        """The actor behind the token: name, role, site, cells."""
        return who.to_json()

    # -- alerts and silences ----------------------------------------------------------
    @r.get("/alerts")
    def alerts(
        state: str | None = Query(None, pattern="^(firing|resolved)$"),
        who: Actor = Depends(actor),  # noqa: B008
    ) -> list[dict[str, Any]]:
        """Alerts the actor may see, newest first, each with ``status`` active or
        suppressed and ``muted_by`` (silence:ID / inhibited:FINGERPRINT)."""
        now = ctx.clock()
        found = desk.db.alerts(state=state, limit=2000)
        silences = desk.db.silences()
        rt = desk.router or Router(Route("root", "none"))
        mutes = rt.muted(found, silences, now)
        out = []
        for a in found:
            if not auth.sees_labels(who, a.labels, a.kind):
                continue
            muted = mutes.get(a.fingerprint)
            out.append(
                {
                    **a.to_json(),
                    "muted_by": muted,
                    "mute_status": "suppressed" if muted else "active",
                }
            )
        return out

    @r.get("/silences")
    def silences(who: Actor = Depends(actor)) -> list[dict[str, Any]]:  # noqa: B008
        now = ctx.clock()
        return [s.to_json(now) for s in desk.db.silences()]

    @r.post("/silences", status_code=201)
    def add_silence(body: SilenceIn, who: Actor = Depends(actor)) -> dict[str, Any]:  # noqa: B008
        """Mute alerts the matchers all match, until ``ends_at`` (or for ``duration``)."""

        def work() -> dict[str, Any]:
            return silence_from(
                desk.db,
                who,
                ctx.clock(),
                body.matchers,
                body.comment,
                body.starts_at,
                body.ends_at,
                body.duration,
            )

        return _http(work)

    @r.delete("/silences/{silence_id}")
    def expire(silence_id: str, who: Actor = Depends(actor)) -> dict[str, Any]:  # noqa: B008
        """Expire a silence now."""
        s = desk.db.get_silence(silence_id)
        if s is None:
            raise HTTPException(404, f"no silence {silence_id!r}")
        _http(lambda: auth.check_silence(who, s.matchers))
        desk.db.expire_silence(silence_id, ctx.clock())
        return {"id": silence_id, "expired": True}

    # -- events -----------------------------------------------------------------------
    @r.get("/events")
    def events(
        state: list[str] | None = Query(None),  # noqa: B008
        site: str | None = None,
        limit: int = Query(500, ge=1, le=10_000),
        who: Actor = Depends(actor),  # noqa: B008
    ) -> list[dict[str, Any]]:
        """Events the actor may see, newest first."""
        found = desk.workflow.db.events(states=state, site=site, limit=limit)
        return [e.to_json() for e in found if auth.sees(who, e)]

    def visible(event_id: str, who: Actor) -> Any:
        ev = _http(lambda: desk.workflow.get(event_id))
        _http(lambda: auth.check(who, "view", ev))
        return ev

    @r.get("/events/{event_id}")
    def event(event_id: str, who: Actor = Depends(actor)) -> dict[str, Any]:  # noqa: B008
        """The event with its audit trail, its orders to machines and the evidence."""
        ev = visible(event_id, who)
        return event_view(desk.workflow, ev, ctx.clock())

    @r.get("/events/{event_id}/evidence")
    def evidence(event_id: str, who: Actor = Depends(actor)) -> dict[str, Any]:  # noqa: B008
        visible(event_id, who)
        return desk.workflow.evidence(event_id, ctx.clock()).to_json()

    @r.post("/events/{event_id}/{action}")
    def act(
        event_id: str,
        action: str,
        body: ActionIn | None = None,
        who: Actor = Depends(actor),  # noqa: B008
    ) -> dict[str, Any]:
        """Move an event: the actor's role and scope are checked (403 otherwise)."""
        if action not in ACTIONS:
            raise HTTPException(404, f"no action {action!r}; one of {', '.join(ACTIONS)}")
        b = body or ActionIn()
        ev = _http(
            lambda: desk.workflow.act(
                event_id,
                action,
                who,
                note=b.note,
                assignee=b.assignee,
                passed=b.passed,
                into=b.into,
            )
        )
        return ev.to_json()

    @r.get("/notifications")
    def notifications(
        status: str | None = None,
        limit: int = Query(100, ge=1, le=10_000),
        who: Actor = Depends(actor),  # noqa: B008
    ) -> list[dict[str, Any]]:
        """The notification outbox, newest first (centre only)."""
        _http(lambda: auth.require_centre(who, "read the outbox"))
        return desk.db.notifications(status, limit)

    return r


def event_view(workflow: Workflow, ev: Any, now: float) -> dict[str, Any]:
    return {
        **ev.to_json(),
        "log": [asdict(e) for e in workflow.db.log(ev.id)],
        "orders": [asdict(o) for o in workflow.db.orders(ev.id)],
        "evidence": workflow.evidence(ev.id, now).to_json(),
    }


def silence_from(
    db: AlertsDb,
    who: Actor,
    now: float,
    matchers: list[str],
    comment: str,
    starts_at: str | None = None,
    ends_at: str | None = None,
    duration: str | None = None,
) -> dict[str, Any]:
    """Check and store a silence; InputError or Forbidden when it cannot be made."""
    ms = parse_matchers(matchers)
    auth.check_silence(who, ms)
    start = parse_iso(starts_at) if starts_at else now
    if ends_at:
        end = parse_iso(ends_at)
    elif duration:
        end = start + parse_duration(duration)
    else:
        raise InputError("a silence needs ends_at or duration")
    s = Silence(f"s-{uuid.uuid4().hex[:12]}", ms, start, end, who.name, comment, now)
    db.add_silence(s)
    return s.to_json(now)

"""Receivers and the durable outbox of notifications.

A notification is written to the ``notifications`` table before anything is sent, one row
per concrete target (a URL, a person, a gateway), and leaves it only as ``sent``: a
receiver that is down is retried with exponential backoff, and after ``max_attempts`` the
notification is escalated to the receiver's ``escalate_to`` (a new row, the old one
``escalated``) — or, without one, retried forever at ``max_backoff``. Nothing is lost.

Receiver types (``[[receiver]]`` in the rule file):

* ``webhook`` — POST the JSON body to ``url`` with httpx. Headers: ``Idempotency-Key`` (the
  notification id, the same on every retry), ``X-Airtrace-Signature: sha256=<hex>`` (HMAC
  SHA-256 of the exact body bytes under ``secret`` / ``secret_file``),
  ``X-Airtrace-Attempt``. 2xx is delivered; 408, 429, 5xx and network errors are retried;
  other 4xx are not (escalated at once).
* ``person`` — point to point: ``to = "site_officer"`` (the responsible persons of the
  alert's site, from the registry), ``"cell_inspector"`` (actors with role inspector for
  the alert's cell), ``"maintainer"`` or ``"assignee"`` (the person an event was
  dispatched to, by name); each person with a webhook gets their own signed POST. Nobody
  found -> the ``fallback`` receiver.
* ``downlink`` — an ``alert`` command (``down/cmd``) to the gateway of the alert's station
  or site, with ``level`` info/warning/critical and a message.
* ``log`` — one log line per notification; never fails.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

import httpx

from cloud.alert_types import dumps, parse_duration
from protocols.errors import AirtraceError, InputError
from protocols.tomlconf import Table

log = logging.getLogger(__name__)

TYPES: Final = ("webhook", "person", "downlink", "log")
PERSON_TARGETS: Final = ("site_officer", "cell_inspector", "maintainer", "assignee")
SIGNATURE_HEADER: Final = "X-Airtrace-Signature"
GATEWAY_LEVEL: Final = {
    "blue": "info",
    "yellow": "warning",
    "orange": "critical",
    "red": "critical",
}


class DeliveryError(AirtraceError):
    """A notification could not be delivered; ``retryable`` says whether to try again."""

    def __init__(self, message: str, *, retryable: bool = True, **fields: Any) -> None:
        super().__init__(message, **fields)
        self.retryable = retryable


@dataclass(frozen=True)
class ReceiverConfig:
    name: str
    type: str
    url: str | None = None
    secret: str | None = None
    to: str | None = None
    roles: tuple[str, ...] = ("officer",)
    fallback: str | None = None
    send_resolved: bool = True
    timeout_s: float = 5.0
    max_attempts: int = 5
    backoff_s: float = 2.0
    max_backoff_s: float = 300.0
    escalate_to: str | None = None


def sign(secret: str, body: bytes) -> str:
    """The signature header's value for ``body``: ``sha256=`` + hex HMAC-SHA256."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(secret: str, body: bytes, header: str | None) -> bool:
    """What a webhook's receiving end does: recompute and compare in constant time."""
    return header is not None and hmac.compare_digest(sign(secret, body), header)


@dataclass(frozen=True)
class Target:
    """Where one notification goes: a URL (webhook, person) or a station (downlink)."""

    url: str | None = None
    person: str | None = None
    role: str | None = None
    station: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


class Directory(Protocol):
    """Who is responsible for what: the registry's persons and the platform's actors."""

    def persons(self, to: str, labels: Mapping[str, str], roles: Sequence[str]) -> list[Target]: ...
    def gateways(self, labels: Mapping[str, str]) -> list[str]: ...


class CommandSender(Protocol):
    def send(
        self,
        station: str,
        cmd: str,
        args: Mapping[str, Any] | None = None,
        *,
        expires_s: float | None = None,
    ) -> Any: ...


@dataclass(frozen=True)
class Outgoing:
    """A row of the outbox as the deliverer sees it."""

    id: str
    receiver: str
    target: Target
    body: Mapping[str, Any]
    attempts: int


class Outbox(Protocol):
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
    ) -> None: ...
    def due_notifications(self, now: float, limit: int) -> list[Outgoing]: ...
    def mark_sent(self, nid: str, now: float) -> None: ...
    def mark_retry(self, nid: str, error: str, next_at: float, status: str = "pending") -> None: ...


class Deliverer:
    """Expands notices into outbox rows and works the outbox off: ``enqueue`` and ``run``."""

    def __init__(
        self,
        receivers: Mapping[str, ReceiverConfig],
        outbox: Outbox,
        directory: Directory,
        *,
        commander: CommandSender | None = None,
        transport: httpx.BaseTransport | None = None,
        rng: Callable[[], float] = random.random,
        jitter: float = 0.1,
    ) -> None:
        self.receivers = dict(receivers)
        self.outbox = outbox
        self.directory = directory
        self.commander = commander
        self.rng = rng
        self.jitter = jitter
        self._http = httpx.Client(transport=transport, follow_redirects=False)
        self._warned: set[str] = set()

    def close(self) -> None:
        self._http.close()

    # -- queueing ---------------------------------------------------------------------
    def enqueue(
        self,
        receiver: str,
        body: Mapping[str, Any],
        labels: Mapping[str, str],
        now: float,
        *,
        route: str | None = None,
        group_key: str | None = None,
        escalated_from: str | None = None,
    ) -> list[str]:
        """Write one outbox row per concrete target of ``receiver``; return their ids."""
        cfg = self.receivers[receiver]
        if cfg.type == "person":
            assert cfg.to is not None
            targets = [t for t in self.directory.persons(cfg.to, labels, cfg.roles) if t.url]
            if not targets:
                fallback = cfg.fallback or cfg.escalate_to
                log.warning(
                    "receivers: %s found no %s with a webhook for %s; sending to %s",
                    receiver,
                    cfg.to,
                    _where(labels),
                    fallback or "nobody (kept as failed)",
                )
                if fallback is None:
                    return [self._add(receiver, Target(), body, now, route, group_key, "failed")]
                return self.enqueue(
                    fallback,
                    body,
                    labels,
                    now,
                    route=route,
                    group_key=group_key,
                    escalated_from=escalated_from or f"{receiver}: nobody responsible found",
                )
        elif cfg.type == "downlink":
            targets = [Target(station=s) for s in self.directory.gateways(labels)]
            if not targets:
                log.info("receivers: %s has no gateway for %s", receiver, _where(labels))
                return []
        elif cfg.type == "webhook":
            targets = [Target(url=cfg.url)]
        else:
            targets = [Target()]
        return [
            self._add(receiver, t, body, now, route, group_key, "pending", escalated_from)
            for t in targets
        ]

    def _add(
        self,
        receiver: str,
        target: Target,
        body: Mapping[str, Any],
        now: float,
        route: str | None,
        group_key: str | None,
        status: str,
        escalated_from: str | None = None,
    ) -> str:
        nid = f"n-{uuid.uuid4().hex[:20]}"
        full = dict(body)
        full["id"] = nid
        full["receiver"] = receiver
        if target.person:
            full["to"] = {"name": target.person, "role": target.role}
        if escalated_from:
            full["escalated_from"] = escalated_from
        self.outbox.add_notification(
            nid,
            receiver,
            {"target": target.to_json(), "body": full},
            now,
            route=route,
            group_key=group_key,
            escalated_from=escalated_from,
        )
        if status != "pending":
            self.outbox.mark_retry(nid, "no target", now, status=status)
        return nid

    # -- delivering -------------------------------------------------------------------
    def run(self, now: float, limit: int = 100) -> int:
        """Try every due notification once; return how many were delivered. A target that
        fails is not tried again in the same run (its other notifications wait their turn),
        so a dead receiver costs one timeout per run, not one per notification."""
        done = 0
        down: set[tuple[str, str | None, str | None]] = set()
        for item in self.outbox.due_notifications(now, limit):
            where = (item.receiver, item.target.url, item.target.station)
            if where in down:
                continue
            cfg = self.receivers.get(item.receiver)
            if cfg is None:
                self.outbox.mark_retry(item.id, f"no receiver {item.receiver!r}", now, "failed")
                continue
            if not cfg.send_resolved and item.body.get("status") == "resolved":
                self.outbox.mark_sent(item.id, now)
                continue
            try:
                self._deliver(cfg, item)
            except DeliveryError as exc:
                down.add(where)
                self._failed(cfg, item, exc, now)
            else:
                self.outbox.mark_sent(item.id, now)
                done += 1
        return done

    def _failed(self, cfg: ReceiverConfig, item: Outgoing, exc: DeliveryError, now: float) -> None:
        attempts = item.attempts + 1
        if exc.retryable and attempts < cfg.max_attempts:
            delay = min(cfg.backoff_s * 2 ** (attempts - 1), cfg.max_backoff_s)
            delay *= 1 + self.jitter * (2 * self.rng() - 1)
            self.outbox.mark_retry(item.id, str(exc), now + delay)
            return
        if cfg.escalate_to is None:
            if item.id not in self._warned:
                self._warned.add(item.id)
                log.warning(
                    "receivers: %s failed %d times (%s); no escalate_to, retrying every %.0f s",
                    cfg.name,
                    attempts,
                    exc,
                    cfg.max_backoff_s,
                )
            self.outbox.mark_retry(item.id, str(exc), now + cfg.max_backoff_s)
            return
        log.warning(
            "receivers: %s gave up on %s after %d attempts (%s); escalating to %s",
            cfg.name,
            item.id,
            attempts,
            exc,
            cfg.escalate_to,
        )
        self.outbox.mark_retry(item.id, str(exc), now, status="escalated")
        body = {k: v for k, v in item.body.items() if k not in ("id", "receiver", "to")}
        labels = item.body.get("common_labels") or {}
        self.enqueue(
            cfg.escalate_to,
            body,
            labels,
            now,
            escalated_from=f"{cfg.name} ({item.id}): {exc}",
        )

    def _deliver(self, cfg: ReceiverConfig, item: Outgoing) -> None:
        if cfg.type in ("webhook", "person"):
            self._post(cfg, item)
        elif cfg.type == "downlink":
            self._downlink(item)
        else:
            body = item.body
            log.warning(
                "ALERT %s [%s] %s: %s",
                body.get("status"),
                body.get("common_labels", {}).get("level", "?"),
                body.get("receiver"),
                "; ".join(
                    a.get("annotations", {}).get("summary", a.get("rule", ""))
                    for a in body.get("alerts", [])
                ),
            )

    def _post(self, cfg: ReceiverConfig, item: Outgoing) -> None:
        url = item.target.url
        if not url:
            raise DeliveryError("no URL to post to", retryable=False)
        data = json.dumps(item.body, separators=(",", ":"), ensure_ascii=False).encode()
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": item.id,
            "X-Airtrace-Attempt": str(item.attempts + 1),
        }
        if cfg.secret:
            headers[SIGNATURE_HEADER] = sign(cfg.secret, data)
        try:
            resp = self._http.post(url, content=data, headers=headers, timeout=cfg.timeout_s)
        except httpx.InvalidURL as exc:
            raise DeliveryError(f"POST {url}: bad URL: {exc}", retryable=False) from None
        except httpx.HTTPError as exc:  # network, timeout, protocol: all worth another try
            raise DeliveryError(f"POST {url}: {type(exc).__name__}: {exc}") from None
        if resp.status_code >= 300:
            retry = resp.status_code in (408, 429) or resp.status_code >= 500
            raise DeliveryError(f"POST {url}: HTTP {resp.status_code}", retryable=retry)

    def _downlink(self, item: Outgoing) -> None:
        station = item.target.station
        if self.commander is None or not station:
            raise DeliveryError("the downlink needs the MQTT connection", retryable=True)
        body = item.body
        level = str(body.get("common_labels", {}).get("level", "yellow"))
        summary = "; ".join(
            a.get("annotations", {}).get("summary", a.get("rule", ""))
            for a in body.get("alerts", [])
        )
        message = f"[{level}] {body.get('status')}: {summary}"[:500]
        try:
            self.commander.send(
                station,
                "alert",
                {"level": GATEWAY_LEVEL.get(level, "warning"), "message": message},
                expires_s=600.0,
            )
        except AirtraceError as exc:
            raise DeliveryError(f"downlink to {station}: {exc}") from None


def _where(labels: Mapping[str, str]) -> str:
    parts = [f"{k}={labels[k]}" for k in ("site", "cell", "station") if labels.get(k)]
    return ", ".join(parts) or "no site/cell/station"


# --------------------------------------------------------------------------- config


def parse_receiver(t: Table, base: Path) -> ReceiverConfig:
    name = t.text("name", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    kind = t.text("type", choices=TYPES)
    secret = t.text("secret", None)
    secret_file = t.text("secret_file", None)
    if secret_file is not None:
        if secret is not None:
            raise t.error("secret_file", "give secret or secret_file, not both")
        path = (base / secret_file) if not Path(secret_file).is_absolute() else Path(secret_file)
        try:
            secret = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise t.error("secret_file", f"cannot read {path}: {exc}") from None
    durations: dict[str, float] = {}
    for key, default in (("timeout", 5.0), ("backoff", 2.0), ("max_backoff", 300.0)):
        try:
            durations[key] = parse_duration(t.raw(key, default))
        except InputError as exc:
            raise t.error(key, exc.message) from None
    cfg = ReceiverConfig(
        name=name,
        type=kind,
        url=t.text("url", None, pattern=r"^https?://") if kind == "webhook" else None,
        secret=secret,
        to=t.text("to", None, choices=PERSON_TARGETS) if kind == "person" else None,
        roles=tuple(t.array("roles", str, ["officer"])) if kind == "person" else ("officer",),
        fallback=t.text("fallback", None) if kind == "person" else None,
        send_resolved=t.flag("send_resolved", True),
        timeout_s=durations["timeout"],
        max_attempts=t.integer("max_attempts", 5, min=1, max=1000),
        backoff_s=durations["backoff"],
        max_backoff_s=durations["max_backoff"],
        escalate_to=t.text("escalate_to", None),
    )
    if kind == "webhook" and cfg.url is None:
        raise t.error("url", "a webhook receiver needs url = http(s)://...")
    if kind == "person" and cfg.to is None:
        raise t.error("to", f"a person receiver needs to = one of {', '.join(PERSON_TARGETS)}")
    if kind in ("webhook", "person") and not cfg.secret:
        raise t.error("secret", "a webhook needs secret or secret_file (the body is signed)")
    t.done()
    return cfg


def check_receiver_links(receivers: Mapping[str, ReceiverConfig], source: str) -> None:
    """escalate_to / fallback name known receivers, and escalation never loops."""
    for cfg in receivers.values():
        for key in ("escalate_to", "fallback"):
            other = getattr(cfg, key)
            if other is not None and other not in receivers:
                raise InputError(f"{source} [receiver {cfg.name}] {key}: no receiver {other!r}")
        seen = [cfg.name]
        nxt = cfg.escalate_to
        while nxt is not None:
            if nxt in seen:
                raise InputError(
                    f"{source} [receiver {cfg.name}] escalate_to: loops "
                    f"({' -> '.join([*seen, nxt])})"
                )
            seen.append(nxt)
            nxt = receivers[nxt].escalate_to


def body_of(notice: Any, event_ids: Mapping[str, str | None] | None = None) -> dict[str, Any]:
    """The JSON body of a notice (Alertmanager's webhook shape, plus levels and events)."""
    alerts = [a.to_json() for a in notice.alerts]
    common = dict(notice.alerts[0].labels) if notice.alerts else {}
    for a in notice.alerts[1:]:
        common = {k: v for k, v in common.items() if a.labels.get(k) == v}
    top = max((a.level for a in notice.alerts), key=("blue", "yellow", "orange", "red").index)
    common["level"] = top
    return {
        "version": "1",
        "status": notice.status,
        "route": notice.route,
        "group_key": notice.group_key,
        "group_labels": dict(notice.group_labels),
        "common_labels": common,
        "alerts": alerts,
    }


__all__ = ["Deliverer", "DeliveryError", "ReceiverConfig", "dumps", "sign", "verify_signature"]

"""Routing of alerts to receivers, after Prometheus Alertmanager: a tree of routes with
matchers, grouping, group wait / interval, repeat interval, inhibition and silences.

* **Route tree.** Every alert enters at the root (no matchers, must name a receiver).
  Children are tried depth-first in order; an alert stops at the first matching child
  unless that child has ``continue = true``; when no child matches, the node itself takes
  it. Children inherit what they leave unset (receiver, group_by, timers).
* **Matchers** are strings: ``level="red"``, ``site!=""``, ``kind=~"threshold|rise"``,
  ``source_type!~"traffic"``. A missing label reads as ``""``; regexes match whole values.
* **Grouping.** ``group_by = ["site"]`` sends one notification per site value; ``["..."]``
  one per alert. A new group waits ``group_wait`` before its first notification (to
  collect its fellows and its inhibitors), then is looked at every ``group_interval``:
  it notifies when its set of firing alerts or their levels changed, when an alert it told
  of has resolved, or when ``repeat_interval`` has passed since it last spoke.
* **Inhibition.** ``[[inhibit]]`` rules: while a firing alert matches ``source``, alerts
  matching ``target`` with equal values of the ``equal`` labels are muted (a red alert on
  a site mutes its yellow).
* **Silences** mute alerts their matchers all match, from ``starts_at`` until ``ends_at``
  (planned maintenance); expired silences stay on record.

``Router.flush`` is pure: alerts, silences and the group states in; notices and the new
group states out. ``cloud.alerts`` persists the states and queues the notices.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

from cloud.alert_types import FIRING, Alert, fingerprint, parse_duration
from protocols.errors import ConfigError, InputError
from protocols.tomlconf import Table

_MATCHER_RE = re.compile(
    r'^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(?:"((?:[^"\\]|\\.)*)"|([^"=~\s][^"\s]*|))\s*$'
)
ALL_LABELS: Final = "..."


@dataclass(frozen=True)
class Matcher:
    name: str
    op: str  # = != =~ !~
    value: str
    pattern: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def parse(cls, text: str) -> Matcher:
        """``name="value"`` (or ``!=``, ``=~``, ``!~``); InputError saying what is wrong."""
        if not isinstance(text, str):
            raise InputError(f"a matcher must be a string like 'site=\"S1\"', got {text!r}")
        m = _MATCHER_RE.match(text)
        if not m:
            raise InputError(f'bad matcher {text!r}: want name="value" with = != =~ or !~')
        value = m.group(3) if m.group(3) is not None else m.group(4)
        value = re.sub(r"\\(.)", r"\1", value)
        pattern = None
        if m.group(2) in ("=~", "!~"):
            try:
                pattern = re.compile(value)
            except re.error as exc:
                raise InputError(f"bad regex in matcher {text!r}: {exc}") from None
        return cls(m.group(1), m.group(2), value, pattern)

    def matches(self, labels: Mapping[str, str]) -> bool:
        got = labels.get(self.name, "")
        if self.op == "=":
            return got == self.value
        if self.op == "!=":
            return got != self.value
        assert self.pattern is not None
        hit = self.pattern.fullmatch(got) is not None
        return hit if self.op == "=~" else not hit

    def __str__(self) -> str:
        return f'{self.name}{self.op}"{self.value}"'


def parse_matchers(items: Iterable[str]) -> tuple[Matcher, ...]:
    return tuple(Matcher.parse(x) for x in items)


def matches_all(matchers: Sequence[Matcher], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)


@dataclass(frozen=True)
class Route:
    id: str
    receiver: str
    matchers: tuple[Matcher, ...] = ()
    group_by: tuple[str, ...] = ()
    group_wait: float = 30.0
    group_interval: float = 300.0
    repeat_interval: float = 4 * 3600.0
    continue_: bool = False
    routes: tuple[Route, ...] = ()

    def match(self, labels: Mapping[str, str]) -> list[Route]:
        """The routes that take an alert with these labels (Alertmanager's walk)."""
        if not matches_all(self.matchers, labels):
            return []
        found: list[Route] = []
        for child in self.routes:
            got = child.match(labels)
            found.extend(got)
            if got and not child.continue_:
                break
        return found or [self]

    def group(self, labels: Mapping[str, str]) -> tuple[str, dict[str, str]]:
        """(group key, group labels) of an alert under this route."""
        if ALL_LABELS in self.group_by:
            return fingerprint(labels), {k: v for k, v in labels.items() if k != "level"}
        glabels = {k: labels.get(k, "") for k in self.group_by}
        key = ",".join(f'{k}="{v}"' for k, v in sorted(glabels.items()))
        return "{" + key + "}", glabels

    def walk(self) -> Iterable[Route]:
        yield self
        for child in self.routes:
            yield from child.walk()


@dataclass(frozen=True)
class InhibitRule:
    source: tuple[Matcher, ...]
    target: tuple[Matcher, ...]
    equal: tuple[str, ...] = ()

    def mutes(self, target: Alert, firing: Iterable[Alert]) -> Alert | None:
        if not matches_all(self.target, target.labels):
            return None
        for src in firing:
            if src.fingerprint == target.fingerprint or not matches_all(self.source, src.labels):
                continue
            if all(src.labels.get(k, "") == target.labels.get(k, "") for k in self.equal):
                return src
        return None


@dataclass(frozen=True)
class Silence:
    id: str
    matchers: tuple[Matcher, ...]
    starts_at: float
    ends_at: float
    created_by: str
    comment: str
    created: float = 0.0

    def __post_init__(self) -> None:
        if not self.matchers:
            raise InputError("a silence needs at least one matcher")
        if self.ends_at <= self.starts_at:
            raise InputError("a silence must end after it starts")
        if not self.comment.strip():
            raise InputError("a silence needs a comment saying why")

    def state(self, now: float) -> str:
        if now < self.starts_at:
            return "pending"
        return "active" if now < self.ends_at else "expired"

    def mutes(self, alert: Alert, now: float) -> bool:
        return self.state(now) == "active" and matches_all(self.matchers, alert.labels)

    def to_json(self, now: float) -> dict[str, Any]:
        return {
            "id": self.id,
            "matchers": [str(m) for m in self.matchers],
            "starts_at": self.starts_at,
            "ends_at": self.ends_at,
            "created_by": self.created_by,
            "comment": self.comment,
            "created": self.created,
            "state": self.state(now),
        }


@dataclass(frozen=True)
class GroupState:
    created: float
    next_flush: float
    notified_at: float | None = None
    notified: frozenset[tuple[str, str]] = frozenset()  # (fingerprint, level) told as firing


@dataclass(frozen=True)
class Notice:
    """One notification a group owes its receiver."""

    route: str
    receiver: str
    group_key: str
    group_labels: Mapping[str, str]
    alerts: tuple[Alert, ...]

    @property
    def status(self) -> str:
        return FIRING if any(a.firing for a in self.alerts) else "resolved"


GroupKey = tuple[str, str]  # (route id, group key)


class Router:
    def __init__(self, root: Route, inhibit: Sequence[InhibitRule] = ()) -> None:
        self.root = root
        self.inhibit = tuple(inhibit)

    def muted(
        self, alerts: Sequence[Alert], silences: Sequence[Silence], now: float
    ) -> dict[str, str]:
        """Why each muted alert is muted: fingerprint -> ``silence:ID`` or
        ``inhibited:FINGERPRINT`` (the inhibiting alert). Linear in the alerts: the firing
        sources of each inhibit rule are indexed by their ``equal`` label values."""
        index: list[tuple[InhibitRule, dict[tuple[str, ...], list[Alert]]]] = []
        for rule in self.inhibit:
            by: dict[tuple[str, ...], list[Alert]] = {}
            for src in alerts:
                if src.firing and matches_all(rule.source, src.labels):
                    by.setdefault(tuple(src.labels.get(k, "") for k in rule.equal), []).append(src)
            index.append((rule, by))
        active = [s for s in silences if s.state(now) == "active"]
        out: dict[str, str] = {}
        for a in alerts:
            why = next((f"silence:{s.id}" for s in active if s.mutes(a, now)), None)
            for rule, by in index:
                if why is not None:
                    break
                if not matches_all(rule.target, a.labels):
                    continue
                key = tuple(a.labels.get(k, "") for k in rule.equal)
                hit = next((x for x in by.get(key, ()) if x.fingerprint != a.fingerprint), None)
                if hit is not None:
                    why = f"inhibited:{hit.fingerprint}"
            if why is not None:
                out[a.fingerprint] = why
        return out

    def muted_by(
        self, alert: Alert, alerts: Sequence[Alert], silences: Sequence[Silence], now: float
    ) -> str | None:
        """Why one alert is muted, or None."""
        return self.muted([alert, *[a for a in alerts if a is not alert]], silences, now).get(
            alert.fingerprint
        )

    def flush(
        self,
        now: float,
        alerts: Sequence[Alert],
        silences: Sequence[Silence],
        groups: Mapping[GroupKey, GroupState],
    ) -> tuple[list[Notice], dict[GroupKey, GroupState]]:
        """Notices due at ``now`` and the group states after them (absent = deleted)."""
        buckets: dict[GroupKey, tuple[Route, dict[str, str], list[Alert]]] = {}
        muted = self.muted(alerts, silences, now)
        for a in alerts:
            if a.fingerprint in muted:
                continue
            for route in self.root.match(a.labels):
                key, glabels = route.group(a.labels)
                buckets.setdefault((route.id, key), (route, glabels, []))[2].append(a)
        notices: list[Notice] = []
        out: dict[GroupKey, GroupState] = {}
        for gk, (route, glabels, members) in sorted(buckets.items()):
            firing = [m for m in members if m.firing]
            st = groups.get(gk)
            if st is None:
                if not firing:
                    continue  # resolved before anyone was told: nothing to say
                st = GroupState(created=now, next_flush=now + route.group_wait)
            if now < st.next_flush:
                out[gk] = st
                continue
            told = {fp for fp, _ in st.notified}
            resolved = [m for m in members if not m.firing and m.fingerprint in told]
            now_firing = frozenset((m.fingerprint, m.level) for m in firing)
            changed = now_firing != st.notified or bool(resolved)
            repeat = (
                bool(firing)
                and st.notified_at is not None
                and now - st.notified_at >= route.repeat_interval
            )
            if changed or repeat:
                notices.append(
                    Notice(route.id, route.receiver, gk[1], glabels, tuple(firing + resolved))
                )
                st = replace(st, notified_at=now, notified=now_firing)
            if not firing:
                continue  # everything told has resolved: the group ends
            out[gk] = replace(st, next_flush=now + route.group_interval)
        return notices, out


# --------------------------------------------------------------------------- config


def parse_route(t: Table, parent: Route | None = None, path: str = "root") -> Route:
    """A ``[route]`` table (and its ``[[route.routes]]``) into a Route; ConfigError naming
    the file, the route and the reason."""
    try:
        matchers = parse_matchers(t.array("matchers", str, []))
    except InputError as exc:
        raise t.error("matchers", exc.message) from None
    if parent is None and matchers:
        raise t.error("matchers", "the root route matches every alert: it takes no matchers")
    receiver = t.text("receiver", None if parent is None else parent.receiver)
    if receiver is None:
        raise t.error("receiver", "the root route must name a receiver")
    timers: dict[str, float] = {}
    for key, default in (
        ("group_wait", 30.0),
        ("group_interval", 300.0),
        ("repeat_interval", 4 * 3600.0),
    ):
        raw = t.raw(key, None)
        if raw is None:
            timers[key] = getattr(parent, key) if parent is not None else default
        else:
            try:
                timers[key] = parse_duration(raw)
            except InputError as exc:
                raise t.error(key, exc.message) from None
    if timers["repeat_interval"] < timers["group_interval"]:
        raise t.error("repeat_interval", "must not be shorter than group_interval")
    group_by = t.array("group_by", str, None)
    route = Route(
        id=path,
        receiver=receiver,
        matchers=matchers,
        group_by=tuple(group_by) if group_by is not None else (parent.group_by if parent else ()),
        group_wait=timers["group_wait"],
        group_interval=timers["group_interval"],
        repeat_interval=timers["repeat_interval"],
        continue_=t.flag("continue", False),
    )
    if parent is None and route.continue_:
        raise t.error("continue", "the root route cannot continue")
    children = tuple(
        parse_route(c, route, f"{path}.{i}") for i, c in enumerate(t.tables("routes"), start=1)
    )
    t.done()
    return replace(route, routes=children)


def parse_inhibit(t: Table) -> InhibitRule:
    try:
        rule = InhibitRule(
            source=parse_matchers(t.array("source", str)),
            target=parse_matchers(t.array("target", str)),
            equal=tuple(t.array("equal", str, [])),
        )
    except InputError as exc:
        raise t.error(None, exc.message) from None
    if not rule.source or not rule.target:
        raise t.error("source", "an inhibit rule needs source and target matchers")
    t.done()
    return rule


def check_receivers(root: Route, known: Iterable[str], source: str) -> None:
    names = set(known)
    for r in root.walk():
        if r.receiver not in names:
            raise ConfigError(
                f"{source} [route {r.id}] receiver: no [[receiver]] named {r.receiver!r}"
            )

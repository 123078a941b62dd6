"""The alert rule file (TOML): rules, routing tree, inhibition, receivers, the event
workflow's deadlines and verification, orders to machines — read and checked at load.

Any problem is one ``ConfigError`` naming the file, the rule (or section) and the reason::

    alerts.toml [rule #2 'site-pm10'] levels: must rise from blue to red,
    got yellow 150 >= orange 120

Rule kinds (``kind``):

* ``threshold`` — a 5-minute (``period = "5min"``) or hourly (``"hour"``) mean of
  ``quantity`` at or above a level's bound, ``for`` consecutive valid periods;
* ``rise`` — the rise of consecutive means, in units per hour, with the latest mean at
  least ``min_value``;
* ``health`` — station health (``statuses``: offline, stale, stuck, drift,
  calibration_overdue after ``calibration_days``) at a fixed ``level``;
* ``inversion`` — a located source (``rate_g_s`` against the bounds) with
  ``confidence >= min_confidence``, tied to a registered site or not (``tied``);
  resolved after ``resolve_after`` without a new hit.

``levels = { yellow = 150, orange = 250, red = 500 }`` (any non-empty subset of blue,
yellow, orange, red, bounds rising with the level): the alert's level is the highest
bound reached — the impact. Filters: ``station_kinds``, ``stations``, ``sites``,
``areas``. ``labels`` adds static labels, ``summary`` is a ``str.format`` template,
``event = false`` keeps the rule out of the event workflow, ``orders`` lists ``burst``
and ``spray``.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from cloud.alert_types import LEVELS, SOURCE_TYPES, level_rank, parse_duration
from cloud.events import EventsConfig, parse_events
from cloud.orders import ORDERS, OrdersConfig, parse_orders
from cloud.receivers import ReceiverConfig, check_receiver_links, parse_receiver
from cloud.routing import InhibitRule, Route, check_receivers, parse_inhibit, parse_route
from protocols.errors import ConfigError, InputError
from protocols.quantities import is_known
from protocols.tomlconf import Table, parse_toml

KINDS: Final = ("threshold", "rise", "health", "inversion")
PERIODS: Final = {"5min": 300, "hour": 3600}
HEALTH: Final = ("offline", "stale", "stuck", "drift", "calibration_overdue")
TIED: Final = ("any", "site", "unregistered")
STATION_KINDS: Final = ("reference", "micro", "dust", "met", "high", "other")
DEFAULT_ORDERS: Final = {"threshold": ("spray",), "rise": (), "health": (), "inversion": ORDERS}
_SAMPLE: Final = {
    "rule": "r",
    "station": "S",
    "site": "X",
    "quantity": "pm10",
    "value": 1.0,
    "level": "red",
    "cell": "g0_0",
    "area": "A",
    "rate": 1.0,
    "sigma": 0.1,
    "confidence": 0.9,
    "status": "ok",
    "reasons": "",
    "x_m": 0.0,
    "y_m": 0.0,
    "bound": 1.0,
    "source_type": "unknown",
    "hour": "",
    "period": "5min",
    "unit": "ug/m3",
}
_DEFAULT_SUMMARY: Final = {
    "threshold": "{station} {quantity} {value:.1f} {unit} ({period} mean) "
    "reached {level} ({bound:g})",
    "rise": "{station} {quantity} rising {value:.1f} {unit}/h reached {level} ({bound:g})",
    "health": "station {station}: {status} ({reasons})",
    "inversion": "source at ({x_m:.0f}, {y_m:.0f}) m, {site}: {rate:.3f} +- {sigma:.3f} g/s "
    "{quantity}, {level}",
}


@dataclass(frozen=True)
class Rule:
    name: str
    kind: str
    levels: tuple[tuple[str, float], ...] = ()  # ascending (level, bound)
    quantity: str | None = None
    period: int | None = None
    for_periods: int = 1
    min_value: float | None = None
    station_kinds: tuple[str, ...] = ()
    stations: tuple[str, ...] = ()
    sites: tuple[str, ...] = ()
    areas: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    level: str = "blue"
    calibration_days: float = 90.0
    min_confidence: float = 0.0
    tied: str = "any"
    source_types: tuple[str, ...] = ()
    resolve_after_s: float = 3 * 3600.0
    labels: Mapping[str, str] = field(default_factory=dict)
    summary: str = ""
    event: bool = True
    orders: tuple[str, ...] = ()

    def level_for(self, value: float) -> tuple[str, float] | None:
        """(level, bound) of the highest bound ``value`` reaches, or None."""
        found = None
        for level, bound in self.levels:
            if value >= bound:
                found = (level, bound)
        return found

    @property
    def lowest(self) -> float:
        return self.levels[0][1]


@dataclass(frozen=True)
class AlertsConfig:
    source: str
    rules: tuple[Rule, ...]
    route: Route
    receivers: Mapping[str, ReceiverConfig]
    inhibit: tuple[InhibitRule, ...] = ()
    events: EventsConfig = field(default_factory=EventsConfig)
    orders: OrdersConfig = field(default_factory=OrdersConfig)
    grid_m: float = 1000.0
    keep_resolved_s: float = 86400.0


def _levels(t: Table) -> tuple[tuple[str, float], ...]:
    raw = t.raw("levels")
    if not isinstance(raw, Mapping) or not raw:
        raise t.error("levels", "must be a table like { yellow = 150, orange = 250, red = 500 }")
    out = []
    for level, bound in raw.items():
        if level not in LEVELS:
            raise t.error("levels", f"unknown level {level!r}; one of {', '.join(LEVELS)}")
        if isinstance(bound, bool) or not isinstance(bound, int | float):
            raise t.error("levels", f"{level} must be a number, got {bound!r}")
        out.append((level, float(bound)))
    out.sort(key=lambda x: level_rank(x[0]))
    for (la, a), (lb, b) in itertools.pairwise(out):
        if a >= b:
            raise t.error("levels", f"must rise from blue to red, got {la} {a:g} >= {lb} {b:g}")
    return tuple(out)


def parse_rule(t: Table) -> Rule:
    name = t.text("name", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
    t.section = f"{t.section} {name!r}"
    kind = t.text("kind", choices=KINDS)
    kw: dict[str, Any] = {"name": name, "kind": kind}
    if kind in ("threshold", "rise", "inversion"):
        kw["levels"] = _levels(t)
    if kind in ("threshold", "rise"):
        kw["quantity"] = t.text("quantity")
        kw["period"] = PERIODS[t.text("period", "5min", choices=tuple(PERIODS))]
        kw["for_periods"] = t.integer("for", 1, min=1, max=288)
        if kind == "rise":
            kw["min_value"] = t.number("min_value", None)
    if kind == "inversion":
        kw["quantity"] = t.text("quantity", None)
        kw["min_confidence"] = t.number("min_confidence", 0.0, min=0.0, max=1.0)
        kw["tied"] = t.text("tied", "any", choices=TIED)
        types = tuple(t.array("source_types", str, []))
        for s in types:
            if s not in SOURCE_TYPES:
                raise t.error("source_types", f"unknown {s!r}; one of {', '.join(SOURCE_TYPES)}")
        kw["source_types"] = types
        try:
            kw["resolve_after_s"] = parse_duration(t.raw("resolve_after", "3h"))
        except InputError as exc:
            raise t.error("resolve_after", exc.message) from None
    if kind == "health":
        statuses = tuple(t.array("statuses", str, list(HEALTH)))
        for s in statuses:
            if s not in HEALTH:
                raise t.error("statuses", f"unknown status {s!r}; one of {', '.join(HEALTH)}")
        kw["statuses"] = statuses
        kw["level"] = t.text("level", "blue", choices=LEVELS)
        kw["calibration_days"] = t.number("calibration_days", 90.0, positive=True)
    if kw.get("quantity") is not None and not is_known(kw["quantity"]):
        raise t.error("quantity", f"unknown quantity {kw['quantity']!r}")
    kinds = tuple(t.array("station_kinds", str, []))
    for k in kinds:
        if k not in STATION_KINDS:
            raise t.error("station_kinds", f"unknown {k!r}; one of {', '.join(STATION_KINDS)}")
    labels = t.raw("labels", {})
    if not isinstance(labels, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
    ):
        raise t.error("labels", 'must be a table of strings, e.g. { team = "dust" }')
    reserved = {"alertname", "rule", "kind", "level"} & set(labels)
    if reserved:
        raise t.error("labels", f"{sorted(reserved)[0]!r} is set by the engine")
    orders = tuple(t.array("orders", str, list(DEFAULT_ORDERS[kind])))
    for o in orders:
        if o not in ORDERS:
            raise t.error("orders", f"unknown order {o!r}; one of {', '.join(ORDERS)}")
    summary = t.text("summary", _DEFAULT_SUMMARY[kind])
    try:
        summary.format(**_SAMPLE)
    except (KeyError, IndexError, ValueError) as exc:
        raise t.error("summary", f"bad template: {type(exc).__name__} {exc}") from None
    rule = Rule(
        **kw,
        station_kinds=kinds,
        stations=tuple(t.array("stations", str, [])),
        sites=tuple(t.array("sites", str, [])),
        areas=tuple(t.array("areas", str, [])),
        labels=dict(labels),
        summary=summary,
        event=t.flag("event", True),
        orders=orders,
    )
    t.done()
    return rule


def parse_rules(
    text: str, *, source: str = "alerts.toml", base: Path | None = None
) -> AlertsConfig:
    doc = Table(parse_toml(text, source), source=source)
    base = base or Path(".")
    rules: list[Rule] = []
    for i, raw in enumerate(doc.raw("rule", []), start=1):
        rule = parse_rule(Table(raw, source=source, section=f"rule #{i}"))
        if any(r.name == rule.name for r in rules):
            raise ConfigError(f"{source} [rule #{i} {rule.name!r}] name: used twice")
        rules.append(rule)
    receivers: dict[str, ReceiverConfig] = {}
    if "receiver" not in doc:
        raise doc.error(None, "needs at least one [[receiver]]")
    for rt in doc.tables("receiver"):
        r = parse_receiver(rt, base)
        if r.name in receivers:
            raise rt.error("name", f"receiver {r.name!r} is defined twice")
        receivers[r.name] = r
    try:
        check_receiver_links(receivers, source)
    except InputError as exc:
        raise ConfigError(exc.message) from None
    route = parse_route(doc.table("route", required=True))
    check_receivers(route, receivers, source)
    inhibit = tuple(parse_inhibit(it) for it in doc.tables("inhibit"))
    lt = doc.table("labels")
    grid_m = lt.number("grid_m", 1000.0, positive=True)
    lt.done()
    events = parse_events(doc.table("events"))
    if events.notify is not None and events.notify not in receivers:
        raise ConfigError(f"{source} [events] notify: no [[receiver]] named {events.notify!r}")
    orders = parse_orders(doc.table("orders"))
    try:
        keep = parse_duration(doc.raw("keep_resolved", "24h"))
    except InputError as exc:
        raise doc.error("keep_resolved", exc.message) from None
    doc.done()
    return AlertsConfig(
        source=source,
        rules=tuple(rules),
        route=route,
        receivers=receivers,
        inhibit=inhibit,
        events=events,
        orders=orders,
        grid_m=grid_m,
        keep_resolved_s=keep,
    )


def load_rules(path: str | os.PathLike[str]) -> AlertsConfig:
    """Read and check a rule file; ConfigError (exit 2) with file, rule and reason."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such rule file", source=str(p)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read: {exc}", source=str(p)) from None
    return parse_rules(text, source=str(p), base=p.parent)

"""Graded, classified alerts from fused means, station health and inversion hits; their
routing to people and machines; and the event each one belongs to.

``AlertEngine`` is fed by:

* ``on_means(means)`` — fused 5-minute / hourly means (``cloud.fusion.Mean``: station,
  quantity, start, period, value, valid): ``threshold`` and ``rise`` rules;
* ``on_health(items)`` — station health (``cloud.store.types.Health``): ``health`` rules;
* ``on_sources(hour, result)`` — the hourly inversion's callback (a result with
  ``sources``, each with x_m, y_m, rate_g_s, rate_sigma_g_s, confidence, site), or
  ``on_hits(hits)`` with ``Hit`` values: ``inversion`` rules, and the hour's estimate at
  every open event's place (verification evidence);

and driven by ``tick(now)``: inversion alerts without a new hit resolve, event deadlines
escalate, orders' acks are copied (or time out), groups flush through the routing tree into
the notification outbox, and the outbox is worked off with retries. Time is injected.

Each alert carries labels ``alertname`` (the rule), ``kind``, ``level``, ``quantity``,
``station``, ``station_kind``, ``site``, ``source_type``, ``cell``, ``area`` and the rule's
own; empty labels are left out. A hit for an hour already seen changes nothing.

``make_part(service)`` gives ``cloud run`` its ``alerts`` part (``[alerts] rules``,
``interval_s``): every round it takes the latest complete means of every station from
fusion and the health table, then ticks.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

import httpx

from cloud.alert_rules import AlertsConfig, Rule
from cloud.alert_types import FIRING, RESOLVED, Alert, Hit, fingerprint, format_summary
from cloud.alerts_store import AlertsDb
from cloud.events import Workflow, escalation_alert, escalation_over, notify_change
from cloud.events_store import EventsDb, RateRow
from cloud.orders import OrderDesk
from cloud.places import Places
from cloud.receivers import CommandSender, Deliverer, body_of
from cloud.routing import Router
from cloud.verification import inventory_at
from protocols.geo import Origin

log = logging.getLogger(__name__)

HOUR = 3600.0
TIE_M = 200.0  # a hit this close to an event's place counts as that place's emission


class AlertEngine:
    def __init__(
        self,
        store: Any,
        cfg: AlertsConfig,
        *,
        clock: Callable[[], float] = time.time,
        commander: CommandSender | None = None,
        origin: Origin | None = None,
        fusion: Any = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.store = store
        self.cfg = cfg
        self.clock = clock
        self.fusion = fusion
        self.db = AlertsDb(store)
        self.events_db = EventsDb(store)
        self.places = Places(store, origin, grid_m=cfg.grid_m, spray=cfg.orders.spray)
        self.router = Router(cfg.route, cfg.inhibit)
        self.deliverer = Deliverer(
            cfg.receivers, self.db, self.places, commander=commander, transport=transport
        )
        self.workflow = Workflow(
            self.events_db,
            cfg.events,
            clock=clock,
            assignee=self.places.assignee,
            nearby=self.places.near,
            station_hours=self._station_hours if fusion is not None else None,
            on_change=self._event_changed,
        )
        self.orders = OrderDesk(
            self.events_db, cfg.orders, commander, self.places, store.get_command
        )
        self.rules = {r.name: r for r in cfg.rules}
        self._lock = threading.RLock()
        self._seen: dict[tuple[str, str], float] = {}
        self._hist: dict[tuple[str, str], deque[Any]] = {}

    def close(self) -> None:
        self.deliverer.close()

    # -- labels -----------------------------------------------------------------------
    def _labels(self, rule: Rule, **given: str | None) -> dict[str, str]:
        labels = {"alertname": rule.name, "kind": rule.kind, **rule.labels}
        labels.update({k: v for k, v in given.items() if v})
        return {k: v for k, v in labels.items() if v}

    def _station_labels(self, rule: Rule, sid: str) -> dict[str, str] | None:
        st = self.places.station(sid)
        if st is None or st.status == "retired":
            return None
        site = self.places.station_site(sid)
        xy = self.places.station_xy(sid)
        labels = self._labels(
            rule,
            station=sid,
            station_kind=st.kind,
            quantity=rule.quantity,
            site=site,
            source_type=self.places.site_kind(site) if site else None,
            cell=self.places.cell(xy),
            area=self.places.area(xy),
        )
        if (
            (rule.station_kinds and st.kind not in rule.station_kinds)
            or (rule.stations and sid not in rule.stations)
            or (rule.sites and labels.get("site") not in rule.sites)
            or (rule.areas and labels.get("area") not in rule.areas)
        ):
            return None
        return labels

    # -- firing and resolving ---------------------------------------------------------
    def _set(
        self,
        rule: Rule,
        labels: Mapping[str, str],
        level: str | None,
        value: float | None,
        annotations: Mapping[str, Any],
        now: float,
        place: tuple[float, float] | None = None,
    ) -> Alert | None:
        """Fire (``level``) or resolve (None) the alert with these labels."""
        fp = fingerprint(labels)
        old = self.db.get_alert(fp)
        if level is None:
            if old is not None and old.firing:
                self.db.put_alert(replace(old, state=RESOLVED, ends_at=now, updated_at=now))
            return None
        fields = {**{k: str(v) for k, v in annotations.items()}, "level": level, "value": value}
        fields.setdefault("station", labels.get("station", ""))
        fields.setdefault("site", labels.get("site", "unregistered"))
        fields.setdefault("rule", rule.name)
        fields.setdefault("quantity", labels.get("quantity", ""))
        for k in ("cell", "area", "source_type"):
            fields.setdefault(k, labels.get(k, ""))
        ann = {k: str(v) for k, v in annotations.items()}
        ann["summary"] = format_summary(rule.summary, fields, annotations)
        still = old is not None and old.firing
        alert = Alert(
            fingerprint=fp,
            rule=rule.name,
            kind=rule.kind,
            labels={**labels, "level": level},
            level=level,
            state=FIRING,
            value=value,
            annotations=ann,
            starts_at=old.starts_at if still and old else now,
            updated_at=now,
            event_id=old.event_id if still and old else None,
        )
        if rule.event:
            ev = self.workflow.on_alert(alert, place, now)
            if ev is not None:
                alert = replace(alert, event_id=ev.id)
                self.orders.on_alert(ev, alert, rule.orders, now, place)
        self.db.put_alert(alert)
        return alert

    # -- inputs -----------------------------------------------------------------------
    def on_means(self, means: Iterable[Any]) -> None:
        """Threshold and rise rules on fused means (each evaluated once per period)."""
        with self._lock:
            now = self.clock()
            for m in sorted(means, key=lambda m: m.start):
                if not m.valid or m.value is None:
                    continue
                for rule in self.cfg.rules:
                    if rule.kind in ("threshold", "rise") and (
                        rule.quantity == m.quantity and rule.period == m.period
                    ):
                        self._mean(rule, m, now)

    def _mean(self, rule: Rule, m: Any, now: float) -> None:
        key = (rule.name, m.station)
        if m.start <= self._seen.get(key, -math.inf):
            return
        self._seen[key] = m.start
        hist = self._hist.setdefault(key, deque(maxlen=rule.for_periods + 1))
        if hist and m.start - hist[-1].start != m.period:
            hist.clear()  # a gap: consecutive means start again
        hist.append(m)
        labels = self._station_labels(rule, m.station)
        if labels is None:
            return
        ann: dict[str, Any] = {
            "unit": m.unit,
            "period": "5min" if m.period == 300 else "hour",
            "start": m.start,
        }
        value = float(m.value)
        if rule.kind == "threshold":
            recent = list(hist)[-rule.for_periods :]
            above = len(recent) == rule.for_periods and all(x.value >= rule.lowest for x in recent)
            firing = (old := self.db.get_alert(fingerprint(labels))) is not None and old.firing
            if value < rule.lowest:
                self._set(rule, labels, None, value, ann, now)
                return
            if not (above or firing):
                return
        else:
            if len(hist) < 2 or (rule.min_value is not None and value < rule.min_value):
                self._set(rule, labels, None, None, ann, now)
                return
            value = (value - hist[-2].value) * HOUR / m.period
        got = rule.level_for(value)
        ann["bound"] = got[1] if got else None
        place = self._place(labels)
        self._set(rule, labels, got[0] if got else None, value, ann, now, place)

    def _place(self, labels: Mapping[str, str]) -> tuple[float, float] | None:
        if labels.get("site"):
            xy = self.places.site_xy(labels["site"])
            if xy is not None:
                return xy
        return self.places.station_xy(labels["station"]) if labels.get("station") else None

    def on_health(self, items: Iterable[Any]) -> None:
        """Health rules on station health values (status, reasons)."""
        with self._lock:
            now = self.clock()
            overdue = self._calibration_overdue(now)
            for h in items:
                for rule in self.cfg.rules:
                    if rule.kind != "health":
                        continue
                    labels = self._station_labels(rule, h.station)
                    if labels is None:
                        continue
                    status, reasons = h.status, ", ".join(h.reasons)
                    if status in ("ok", "unknown") and h.station in overdue.get(rule.name, ()):
                        status, reasons = "calibration_overdue", overdue[rule.name][h.station]
                    fire = rule.level if status in rule.statuses else None
                    ann = {"status": status, "reasons": reasons}
                    self._set(rule, labels, fire, None, ann, now, self._place(labels))

    def _calibration_overdue(self, now: float) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        rules = [
            r for r in self.cfg.rules if r.kind == "health" and "calibration_overdue" in r.statuses
        ]
        if not rules:
            return out
        last: dict[str, float] = {}
        for cal in self.store.calibrations(limit=100_000):
            last[cal.station] = max(last.get(cal.station, 0.0), cal.created)
        for st in self.store.stations():
            if st.kind not in ("micro", "dust") or st.status == "retired":
                continue
            since = last.get(st.id, st.first_seen or now)
            for rule in rules:
                days = (now - since) / 86400.0
                if days > rule.calibration_days:
                    out.setdefault(rule.name, {})[st.id] = (
                        f"last calibrated {days:.0f} days ago"
                        if st.id in last
                        else f"never calibrated in {days:.0f} days"
                    )
        return out

    def on_sources(self, hour: float, result: Any, quantity: str | None = None) -> None:
        """The hourly inversion's ``on_sources(hour, result)`` callback: ``result`` is an
        ``InversionResult`` (or anything with ``sources``), RESULT.json as a mapping, or the
        list of sources itself."""
        if isinstance(result, Mapping):
            sources, inventory = result.get("sources", ()), None
            used = result.get("hours_used") or ()
        elif isinstance(result, list | tuple):
            sources, inventory, used = result, None, ()
        else:
            sources, inventory = getattr(result, "sources", ()), getattr(result, "inventory", None)
            used = getattr(result, "hours_used", None) or ()
        q = quantity or getattr(result, "quantity", None) or self._inversion_quantity()
        hits = []
        for s in sources:
            try:
                hits.append(Hit.from_source(s, hour=hour, quantity=q))
            except (TypeError, ValueError, KeyError) as exc:
                log.warning("alerts: skipped a malformed source of hour %s: %s (%r)", hour, exc, s)
        first = _first_hour(used)
        self.on_hits(hits, hour=hour, quantity=q, inventory=inventory, window_start=first)

    def _inversion_quantity(self) -> str:
        return next(
            (r.quantity for r in self.cfg.rules if r.kind == "inversion" and r.quantity), "pm10"
        )

    def on_hits(
        self,
        hits: Iterable[Hit],
        *,
        hour: float | None = None,
        quantity: str | None = None,
        inventory: Any = None,
        window_start: float | None = None,
    ) -> None:
        """Inversion rules on located sources; then the hour's estimate at every open
        event's place (found there, from the inventory, or nothing). ``window_start``:
        the first hour of data the inversion used (a window reaching back before an
        event's rectification says nothing clean about the emission after it)."""
        hits = list(hits)
        with self._lock:
            now = self.clock()
            for hit in hits:
                self._hit(hit, now, window_start)
            if hour is None and hits:
                hour = hits[0].hour
            if hour is not None:
                self._estimates(
                    hour,
                    quantity or (hits[0].quantity if hits else None),
                    hits,
                    inventory,
                    window_start,
                )

    def _record_rate(self, ev: Any, row: RateRow, window_start: float | None) -> None:
        """Keep an hour's estimate on the event, unless it is an hour after the
        rectification whose inversion window also holds hours before it: such an
        estimate mixes the emission before and after and would blur the verdict."""
        since = getattr(ev, "rectified_at", None)
        if (
            since is not None
            and window_start is not None
            and row.hour >= since
            and window_start < since
        ):
            return
        self.workflow.record_rate(ev.id, row)

    def _hit(self, hit: Hit, now: float, window_start: float | None = None) -> None:
        xy = (hit.x_m, hit.y_m)
        site = hit.site or None
        site_xy = self.places.site_xy(site) if site else None
        for rule in self.cfg.rules:
            if rule.kind != "inversion" or (rule.quantity and hit.quantity != rule.quantity):
                continue
            if hit.confidence < rule.min_confidence:
                continue
            if (rule.tied == "site" and not site) or (rule.tied == "unregistered" and site):
                continue
            stype = self.places.site_kind(site)
            if (rule.source_types and stype not in rule.source_types) or (
                rule.sites and site not in rule.sites
            ):
                continue
            area = self.places.area(site_xy or xy)
            if rule.areas and area not in rule.areas:
                continue
            labels = self._labels(
                rule,
                quantity=hit.quantity,
                site=site,
                source_type=stype,
                cell=self.places.cell(site_xy or xy),
                area=area,
            )
            old = self.db.get_alert(fingerprint(labels))
            if old is not None and float(old.annotations.get("hour", "-inf")) >= hit.hour:
                continue  # this hour was seen: a duplicate re-opens nothing
            got = rule.level_for(hit.rate_g_s)
            if got is None:
                continue
            ann = {
                "hour": hit.hour,
                "x_m": round(hit.x_m, 1),
                "y_m": round(hit.y_m, 1),
                "rate": hit.rate_g_s,
                "sigma": hit.rate_sigma_g_s,
                "confidence": hit.confidence,
                "bound": got[1],
            }
            alert = self._set(rule, labels, got[0], hit.rate_g_s, ann, now, site_xy or xy)
            ev = self.events_db.get(alert.event_id) if alert and alert.event_id else None
            if ev is not None:
                self._record_rate(
                    ev,
                    RateRow(
                        hit.hour, hit.quantity, hit.rate_g_s, hit.rate_sigma_g_s, True, "inversion"
                    ),
                    window_start,
                )

    def _estimates(
        self,
        hour: float,
        quantity: str | None,
        hits: list[Hit],
        inventory: Any,
        window_start: float | None = None,
    ) -> None:
        for ev in self.events_db.events(
            states=("new", "filed", "dispatched", "acknowledged", "in_progress", "verifying")
        ):
            if (
                ev.x_m is None
                or ev.y_m is None
                or (quantity and ev.quantity not in (None, quantity))
            ):
                continue
            if hour < ev.created - HOUR:
                continue
            near = [
                h
                for h in hits
                if (ev.site and h.site == ev.site)
                or math.hypot(h.x_m - ev.x_m, h.y_m - ev.y_m) <= TIE_M
            ]
            q = quantity or ev.quantity or ""
            if near:
                best = max(near, key=lambda h: h.rate_g_s)
                row = RateRow(hour, q, best.rate_g_s, best.rate_sigma_g_s, True, "inversion")
            else:
                est = inventory_at(inventory, ev.x_m, ev.y_m)
                row = (
                    RateRow(hour, q, est[0], est[1], True, "inventory")
                    if est
                    else RateRow(hour, q, 0.0, None, False, "none")
                )
            self._record_rate(ev, row, window_start)

    # -- time -------------------------------------------------------------------------
    def tick(self, now: float | None = None) -> None:
        with self._lock:
            now = self.clock() if now is None else now
            self.places.refresh()
            since = now - self.cfg.keep_resolved_s
            alerts = self.db.alerts(since=since)
            changed = False
            for a in alerts:
                if not a.firing:
                    continue
                rule = self.rules.get(a.rule)
                stale = (rule is None and a.kind != "event") or (
                    rule is not None
                    and rule.kind == "inversion"
                    and now - a.updated_at >= rule.resolve_after_s
                )
                if a.kind == "event":
                    stale = self._escalation_over(a)
                if stale:
                    self.db.put_alert(replace(a, state=RESOLVED, ends_at=now, updated_at=now))
                    changed = True
            for ev, deadline in self.workflow.tick(now):
                self._escalation_alert(ev, deadline, now)
                changed = True
            self.orders.tick(now)
            if changed:
                alerts = self.db.alerts(since=since)
            before = self.db.groups()
            notices, groups = self.router.flush(now, alerts, self.db.silences(), before)
            for n in notices:
                body = body_of(n)
                self.deliverer.enqueue(
                    n.receiver,
                    body,
                    body["common_labels"],
                    now,
                    route=n.route,
                    group_key=n.group_key,
                )
            self.db.save_groups(groups, before)
        self.deliverer.run(now)  # outside the lock: a slow receiver holds up no input

    def _event_changed(self, ev: Any, action: str, actor: Any) -> None:
        """Tell ``[events] notify`` of a dispatch (rework included) to a named person."""
        notify_change(self.deliverer, self.cfg.events.notify, ev, action, actor, self.clock())

    def _escalation_alert(self, ev: Any, deadline: str, now: float) -> None:
        self.db.put_alert(escalation_alert(ev, deadline, now))

    def _escalation_over(self, a: Alert) -> bool:
        return escalation_over(a, self.events_db.get(a.labels.get("event", "")))

    def _station_hours(
        self, station: str, quantity: str, since: float, until: float
    ) -> list[float]:
        return [
            float(m.value)
            for m in self.fusion.means(station, quantity, since, until, 3600)
            if m.valid and m.value is not None
        ]


def _first_hour(hours: Any) -> float | None:
    """The earliest of an inversion's ``hours_used`` (epoch seconds or ISO 8601)."""
    from protocols.timefmt import parse_iso

    out: list[float] = []
    for h in hours:
        try:
            out.append(float(h) if not isinstance(h, str) else parse_iso(h))
        except (TypeError, ValueError):
            continue
    return min(out) if out else None


def make_part(service: Any) -> Any:
    """The hook ``cloud.service`` calls when ``[alerts] enabled``: the ``alerts`` part
    (``cloud.alerts_part``), reading ``[alerts] rules`` and ``interval_s``."""
    from cloud.alerts_part import make_part as build

    return build(service)

"""Orders to machines on behalf of an event, and what became of each.

* **Burst sampling** — on a located source (an inversion alert at or above
  ``burst_min_level``), ``set_interval`` ``{"interval_s", "duration_s"}`` to every gateway
  within ``burst_radius_m`` of it, once per ``burst_duration_s`` per event.
* **Spray** — on a site's alert at or above ``spray_min_level``, ``actuate``
  ``{"actuator", "state": "on", "duration_s"}`` at the site's gateways that have the
  actuator (``spray_actuator``, as the gateway reports it, or ``[[orders.spray]]``), once per
  ``spray_duration_s`` per event.

Commands go out through the central service's ``Commander`` (recorded, then published on
``down/cmd``); the gateway's ack on ``up/ack`` reaches the ``commands`` table through
ingest. ``tick`` copies each ack (ok, error, rejected) onto the event's order, or marks the
order ``timeout`` when ``ack_deadline_s`` passes without one; both go into the event's
audit trail. Offline gateways are skipped (and the skip is recorded).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cloud.alert_types import LEVELS, Alert, level_rank
from cloud.events_store import Event, EventsDb, OrderRow
from cloud.places import Places
from cloud.receivers import CommandSender
from protocols.errors import AirtraceError
from protocols.tomlconf import Table

log = logging.getLogger(__name__)
ORDERS = ("burst", "spray")
COMMAND_EXPIRES_S = 600.0  # an order's command expires after this, or ack_deadline_s if longer


@dataclass(frozen=True)
class OrdersConfig:
    burst_radius_m: float = 1000.0
    burst_interval_s: float = 10.0
    burst_duration_s: float = 3600.0
    burst_min_level: str = "yellow"
    spray_min_level: str = "orange"
    spray_actuator: str = "spray"
    spray_duration_s: float = 1800.0
    ack_deadline_s: float = 120.0
    spray: Mapping[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)


class OrderDesk:
    def __init__(
        self,
        db: EventsDb,
        cfg: OrdersConfig,
        commander: CommandSender | None,
        places: Places,
        status_of: Callable[[str], Any],
    ) -> None:
        self.db = db
        self.cfg = cfg
        self.commander = commander
        self.places = places
        self.status_of = status_of  # command id -> CommandRecord | None (store.get_command)

    def on_alert(
        self,
        ev: Event,
        alert: Alert,
        orders: Sequence[str],
        now: float,
        place: tuple[float, float] | None = None,
    ) -> list[OrderRow]:
        """Send what ``orders`` asks for and the alert warrants; return the orders sent."""
        sent: list[OrderRow] = []
        cfg = self.cfg
        rank = level_rank(alert.level)
        if (
            "burst" in orders
            and place is not None
            and rank >= level_rank(cfg.burst_min_level)
            and not self._recent(ev.id, "burst", now, cfg.burst_duration_s)
        ):
            args = {"interval_s": cfg.burst_interval_s, "duration_s": cfg.burst_duration_s}
            for station, _ in self.places.near(place, cfg.burst_radius_m):
                sent += self._send(ev, station, "set_interval", args, "burst", now)
        if (
            "spray" in orders
            and ev.site
            and rank >= level_rank(cfg.spray_min_level)
            and not self._recent(ev.id, "spray", now, cfg.spray_duration_s)
        ):
            found = False
            for station, actuators in self.places.site_gateways(ev.site):
                for act in actuators:
                    if act != cfg.spray_actuator and ev.site not in cfg.spray:
                        continue
                    found = True
                    spray = {"actuator": act, "state": "on", "duration_s": cfg.spray_duration_s}
                    sent += self._send(ev, station, "actuate", spray, "spray", now)
            if not found:
                self.db.note(
                    ev.id,
                    now,
                    "system",
                    "system",
                    "order_skipped",
                    {
                        "purpose": "spray",
                        "why": f"no gateway at site {ev.site} "
                        f"reports an actuator {cfg.spray_actuator!r}",
                    },
                )
        return sent

    def _recent(self, event_id: str, purpose: str, now: float, within: float) -> bool:
        return any(
            o.purpose == purpose and now - o.issued < within for o in self.db.orders(event_id)
        )

    def _send(
        self,
        ev: Event,
        station: str,
        cmd: str,
        args: Mapping[str, Any],
        purpose: str,
        now: float,
    ) -> list[OrderRow]:
        st = self.places.station_now(station)
        if st is not None and st.state == "offline":
            self.db.note(
                ev.id,
                now,
                "system",
                "system",
                "order_skipped",
                {"purpose": purpose, "station": station, "why": "gateway offline"},
            )
            return []
        status, error, cid = "sent", None, None
        if self.commander is None:
            status, error = "error", "no MQTT connection: commands are off"
        else:
            try:
                # the gateway must not act on it later than the centre waits for its ack
                expires = max(COMMAND_EXPIRES_S, self.cfg.ack_deadline_s)
                rec = self.commander.send(station, cmd, args, expires_s=expires)
                cid = rec.id
            except AirtraceError as exc:
                status, error = "error", str(exc)
        order = OrderRow(
            command_id=cid or f"x-{uuid.uuid4().hex[:16]}",
            event_id=ev.id,
            station=station,
            cmd=cmd,
            args=dict(args),
            purpose=purpose,
            issued=now,
            deadline=now + self.cfg.ack_deadline_s,
            status=status,
            settled_at=None if status == "sent" else now,
            error=error,
        )
        self.db.add_order(order)
        detail = {
            "purpose": purpose,
            "station": station,
            "cmd": cmd,
            "args": dict(args),
            "command": order.command_id,
        }
        self.db.note(ev.id, now, "system", "system", "order", detail)
        if status != "sent":
            self.db.note(ev.id, now, "system", "system", "order_failed", {**detail, "error": error})
            log.warning("orders: %s to %s for %s failed: %s", cmd, station, ev.id, error)
        return [order]

    def tick(self, now: float) -> list[OrderRow]:
        """Copy acks onto orders; time out the ones past their deadline."""
        settled = []
        for o in self.db.orders(status="sent"):
            rec = self.status_of(o.command_id)
            if rec is not None and rec.status != "sent":
                status, result, error = rec.status, dict(rec.result), rec.error
                action = "order_ack"
            elif now >= o.deadline:
                status, result, error = (
                    "timeout",
                    {},
                    f"no ack within {self.cfg.ack_deadline_s:g} s",
                )
                action = "order_timeout"
                log.warning(
                    "orders: %s to %s (%s) not acked in time", o.cmd, o.station, o.command_id
                )
            else:
                continue
            if self.db.settle_order(o.command_id, status, now, result, error):
                self.db.note(
                    o.event_id,
                    now,
                    "system",
                    "system",
                    action,
                    {
                        "command": o.command_id,
                        "station": o.station,
                        "cmd": o.cmd,
                        "status": status,
                        "result": result,
                        "error": error,
                    },
                )
                settled.append(o)
        return settled


def parse_orders(t: Table) -> OrdersConfig:
    d = OrdersConfig()
    spray: dict[str, list[tuple[str, str]]] = {}
    for st in t.tables("spray"):
        spray.setdefault(st.text("site"), []).append((st.text("station"), st.text("actuator")))
        st.done()
    cfg = OrdersConfig(
        burst_radius_m=t.number("burst_radius_m", d.burst_radius_m, positive=True),
        burst_interval_s=t.number("burst_interval_s", d.burst_interval_s, min=0.05),
        burst_duration_s=t.number("burst_duration_s", d.burst_duration_s, positive=True),
        burst_min_level=t.text("burst_min_level", d.burst_min_level, choices=LEVELS),
        spray_min_level=t.text("spray_min_level", d.spray_min_level, choices=LEVELS),
        spray_actuator=t.text("spray_actuator", d.spray_actuator),
        spray_duration_s=t.number("spray_duration_s", d.spray_duration_s, positive=True),
        ack_deadline_s=t.number("ack_deadline_s", d.ack_deadline_s, positive=True),
        spray={k: tuple(v) for k, v in spray.items()},
    )
    t.done()
    return cfg

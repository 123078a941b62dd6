"""``airtrace gateway live``: the station's readings in a table that refreshes in place.

The poller runs as the daemon runs it (a loop per bus, the devices' own intervals and
backoff); the table shows, per sensor and quantity, the latest value as the profile
decodes it (before calibration), its flag and reason, its age, and the device's state
(ok, failing, unavailable). Nothing is stored or sent: ``live`` is for looking at a
station while wiring it, next to (not together with) a running ``gateway run`` — two
programs must never poll one RS485 line at the same time.
"""

from __future__ import annotations

import threading
from typing import Any

from gateway.clock import Clock
from gateway.config import StationConfig
from gateway.model import Sample
from gateway.poller import DeviceHealth, Poller

__all__ = ["LiveView", "run_live"]


class LiveView:
    """The latest sample per (sensor, quantity), fed by the poller's sink."""

    def __init__(self, config: StationConfig, clock: Clock) -> None:
        self.config = config
        self._clock = clock
        self._lock = threading.Lock()
        self.latest: dict[tuple[str, str], Sample] = {}
        self.batches = 0

    def __call__(self, samples: list[Sample]) -> None:
        with self._lock:
            self.batches += 1
            for s in samples:
                self.latest[s.sensor, s.quantity] = s

    def rows(self, health: dict[str, DeviceHealth]) -> list[tuple[str, ...]]:
        now = self._clock.now()
        with self._lock:
            latest = dict(self.latest)
        rows: list[tuple[str, ...]] = []
        for sensor in self.config.sensors:
            if not sensor.enabled:
                continue
            h = health.get(sensor.name)
            state = _state(h)
            mine = [s for (name, _), s in latest.items() if name == sensor.name]
            if not mine:
                rows.append((sensor.name, "", "", "", "", "", state))
            for s in mine:
                value = "—" if s.raw is None else f"{s.raw:g}"
                flag = f"{s.flag} {s.why or ''}".strip()
                age = f"{max(0.0, now - s.ts):.0f} s"
                rows.append((sensor.name, s.quantity, value, s.unit, flag, age, state))
        return rows

    def table(self, health: dict[str, DeviceHealth]) -> Any:
        from rich.table import Table

        t = Table(title=f"{self.config.station.id} — live (raw values, before calibration)")
        for col in ("sensor", "quantity", "value", "unit", "flag", "age", "device"):
            t.add_column(col, justify="right" if col in ("value", "age") else "left")
        for row in self.rows(health):
            t.add_row(*row)
        return t


def _state(h: DeviceHealth | None) -> str:
    if h is None:
        return "not polled"
    if not h.available:
        return f"unavailable ({h.consecutive_failures} failures)"
    if h.consecutive_failures:
        return f"failing ({h.consecutive_failures})"
    if h.polls == 0:
        return "waiting"
    return "ok"


def run_live(
    config: StationConfig,
    *,
    clock: Clock,
    console: Any,
    duration_s: float | None = None,
    refresh_s: float = 1.0,
) -> LiveView:
    """Poll and show until Ctrl-C (or ``duration_s``); returns the view (tests read it)."""
    from rich.live import Live

    view = LiveView(config, clock)
    poller = Poller(config, clock=clock, sink=view)
    stop = threading.Event()
    start = clock.monotonic()
    poller.start()
    try:
        with Live(view.table(poller.health()), console=console, auto_refresh=False) as live:
            while not stop.wait(refresh_s):
                live.update(view.table(poller.health()), refresh=True)
                if duration_s is not None and clock.monotonic() - start >= duration_s:
                    break
    except KeyboardInterrupt:
        pass
    finally:
        poller.stop()
    return view

"""``cloud run``'s alerts part: every ``interval_s`` it takes the latest complete means of
every station from fusion (the periods the threshold and rise rules use) and the stations'
health, hands them to the ``AlertEngine`` and ticks it. Its engine is also what the hourly
inversion's ``on_sources`` and the API's routes reach (``service.alerts_engine``).

Config (the cloud config's ``[alerts]`` table): ``enabled``, ``rules`` (the rule file,
relative to the config file), ``interval_s`` (default 10).
"""

from __future__ import annotations

import logging
import math
import threading
from pathlib import Path
from typing import Any

from cloud.alert_rules import load_rules
from cloud.alerts import AlertEngine
from protocols.geo import Origin

log = logging.getLogger(__name__)


class AlertsPart:
    """``cloud run``'s alerts part: poll means and health, tick, every ``interval_s``."""

    name = "alerts"

    def __init__(self, engine: AlertEngine, interval_s: float = 10.0) -> None:
        self.engine = engine
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll(self, now: float) -> None:
        eng = self.engine
        if eng.fusion is not None:
            combos = {
                (r.quantity, r.period)
                for r in eng.cfg.rules
                if r.kind in ("threshold", "rise") and r.period
            }
            depth = max((r.for_periods for r in eng.cfg.rules), default=1) + 1
            for st in eng.store.stations():
                if st.status == "retired":
                    continue
                have = set(eng.store.stream_quantities(st.id))
                for quantity, period in sorted(combos):
                    if quantity not in have:
                        continue
                    end = math.floor((now - min(0.2 * period, 300.0)) / period) * period
                    eng.on_means(
                        eng.fusion.means(st.id, quantity, end - depth * period, end, period)
                    )
        eng.on_health(eng.store.health().values())

    def round(self, now: float) -> None:
        self.poll(now)
        self.engine.tick(now)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.round(self.engine.clock())
            except Exception:
                log.exception("alerts: a round failed; trying again in %.0f s", self.interval_s)
            self._stop.wait(self.interval_s)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="alerts", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        self.engine.close()


def make_part(service: Any) -> AlertsPart:
    """The hook ``cloud.service`` calls when ``[alerts] enabled``: reads ``[alerts] rules``
    (the rule file, relative to the config file) and ``interval_s``."""
    t = service.cfg.part_table("alerts")
    rules = t.text("rules")
    interval = t.number("interval_s", 10.0, min=0.05)
    t.done()
    path = Path(rules)
    if not path.is_absolute():
        path = Path(service.cfg.source).parent / path
    domain = service.cfg.domain
    origin = Origin(domain.origin_lat, domain.origin_lon) if domain.has_origin else None
    engine = AlertEngine(
        service.store,
        load_rules(path),
        clock=service.clock,
        commander=service.commander,
        origin=origin,
        fusion=service.fusion,
    )
    service.alerts_engine = engine  # for the API's routes: ApiContext(extra={"alerts": ...})
    listeners = getattr(service, "source_listeners", None)
    if isinstance(listeners, list):  # the hourly inversion's on_sources(hour, result)
        listeners.append(engine.on_sources)
    return AlertsPart(engine, interval)

"""A STAND-IN for gateway-io's ``gateway.poller.Poller`` (branch ``gateway-io``), used by the
daemon's tests until that poller is on main. It speaks the seam of GATEWAY.md exactly
(``start``, ``stop``, ``poll_once``, ``set_interval``, ``write``, ``health``) but reads no
device: it makes ``Sample``s for each sensor of the config from a formula, at the
sensor's interval (or faster for a load test), on one thread. Actuator writes are recorded
and can be made to fail. Nothing here is what the real poller does on a bus.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from gateway.clock import Clock
from gateway.config import ActuatorConfig, StationConfig
from gateway.errors import DeviceError
from gateway.model import Flag, Sample

QUANTITIES = {"rs-pm-n01": ("pm25", "pm10"), "rs-ws-n01": ("rh", "temp")}
UNITS = {"pm25": "ug/m3", "pm10": "ug/m3", "rh": "%RH", "temp": "Cel"}


class ScriptedPoller:
    def __init__(
        self,
        config: StationConfig,
        *,
        clock: Clock,
        sink: Callable[[list[Sample]], None],
        value: Callable[[str, str, int], float | None] | None = None,
        period_s: float | None = None,
    ) -> None:
        self.config, self.clock, self.sink = config, clock, sink
        self.value = value or (lambda sensor, q, n: 10.0 + n % 7)
        self.period_s = period_s
        self.n = 0
        self.intervals: list[tuple[str | None, float, float | None]] = []
        self.writes: list[tuple[str, int]] = []
        self.fail_writes = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll_once(self) -> list[Sample]:
        out = []
        now = self.clock.now()
        for s in self.config.sensors:
            for q in QUANTITIES.get(s.profile, ("pm25",)):
                v = self.value(s.name, q, self.n)
                if v is None:
                    out.append(
                        Sample(
                            s.name,
                            q,
                            UNITS.get(q, "ug/m3"),
                            None,
                            now,
                            Flag.COMM_FAULT,
                            "no answer (timeout 1 s)",
                        )
                    )
                else:
                    out.append(Sample(s.name, q, UNITS.get(q, "ug/m3"), v, now))
        self.n += 1
        return out

    def _run(self) -> None:
        period = self.period_s or min(s.interval_s for s in self.config.sensors)
        while not self._stop.wait(period):
            self.sink(self.poll_once())

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def set_interval(self, sensor: str | None, interval_s: float, duration_s: float | None) -> None:
        self.intervals.append((sensor, interval_s, duration_s))

    def write(self, actuator: ActuatorConfig, value: int) -> None:
        if self.fail_writes:
            raise DeviceError(f"actuator {actuator.name}: no answer", device=actuator.name)
        self.writes.append((actuator.name, value))

    def health(self) -> dict[str, Any]:
        return {s.name: {"available": True, "failures": 0} for s in self.config.sensors}

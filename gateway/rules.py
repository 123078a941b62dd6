"""Local rules: protect the site without the centre. A rule switches an actuator on when a
quantity has stayed above a threshold for a while, e.g. PM10 above 150 ug/m3 for 5 minutes
switches the spray on for 10 minutes::

    [[rule]]
    name = "dust-spray"
    quantity = "pm10"
    above = 150
    for_s = 300
    actuator = "spray"
    hold_s = 600

Only valid readings (flag N or S) count; a valid reading at or below the threshold ends the
run (the actuator stays on for its hold). Each sensor of the quantity keeps its own run
(or only ``sensor`` when the rule names one). While the value stays high the hold is
extended, within the actuator's own safety timeout. Times are the readings' timestamps.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from gateway.actuators import Actuators
from gateway.config import RuleConfig
from gateway.model import Reading
from protocols.errors import AirtraceError

log = logging.getLogger(__name__)


class Rules:
    def __init__(self, rules: Sequence[RuleConfig], actuators: Actuators) -> None:
        self.rules = tuple(rules)
        self.actuators = actuators
        self._since: dict[tuple[str, str], float] = {}  # (rule, sensor) -> run start
        self.fired = 0
        self._quantities = {r.quantity for r in self.rules}

    def thresholds(self) -> dict[str, float]:
        """The lowest threshold per quantity: readings above it are alarms worth keeping."""
        out: dict[str, float] = {}
        for r in self.rules:
            out[r.quantity] = min(out.get(r.quantity, r.above), r.above)
        return out

    def observe(self, readings: Sequence[Reading]) -> list[str]:
        """Feed readings; returns the names of the rules that switched something on."""
        fired: list[str] = []
        if not self.rules:
            return fired
        for rd in readings:
            if rd.quantity not in self._quantities or not rd.flag.valid or rd.value is None:
                continue
            for rule in self.rules:
                if rule.quantity != rd.quantity or (rule.sensor and rule.sensor != rd.sensor):
                    continue
                key = (rule.name, rd.sensor)
                if rd.value <= rule.above:
                    self._since.pop(key, None)
                    continue
                start = self._since.setdefault(key, rd.ts)
                if rd.ts - start >= rule.for_s and self._fire(rule, rd, rd.ts - start):
                    fired.append(rule.name)
        return fired

    def _fire(self, rule: RuleConfig, rd: Reading, lasted: float) -> bool:
        reason = (
            f"rule {rule.name}: {rd.quantity} {rd.value:g} > {rule.above:g} "
            f"for {lasted:.0f} s ({rd.sensor})"
        )
        was_on = self.actuators.state(rule.actuator).on
        try:
            self.actuators.switch(rule.actuator, True, duration_s=rule.hold_s, reason=reason)
        except AirtraceError as exc:
            log.warning("%s: could not switch %s on: %s", reason, rule.actuator, exc)
            return False
        if not was_on:
            self.fired += 1
            log.warning("%s: %s on for %g s", reason, rule.actuator, rule.hold_s)
        return not was_on

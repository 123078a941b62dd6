"""Switchable outputs (a site's spray system, a fog cannon) with a local safety timeout.

An actuator is switched on for a duration, never longer than its ``max_on_s`` counted
from when it went on: the gateway switches it off by itself when the time is up, however
often the centre or a local rule asked to extend, and whether or not the uplink is there.
After a safety timeout it stays off for ``COOLDOWN_S`` (60 s) whoever asks. A failed
switch-off is retried every few seconds until it succeeds (logged once). At start
and at a clean stop every actuator is switched off. The write itself (a coil or holding
register on the actuator's bus) is the poller's: it is serialised with the polls there.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gateway.clock import Clock
from gateway.config import ActuatorConfig
from gateway.errors import CommandRejected, DeviceError

log = logging.getLogger(__name__)

Writer = Callable[[ActuatorConfig, int], None]
RETRY_OFF_S = 5.0
COOLDOWN_S = 60.0  # after a safety timeout, nothing switches it on again for this long


@dataclass(frozen=True)
class ActuatorState:
    name: str
    on: bool
    since: float | None  # wall clock, when it went on
    until: float | None  # wall clock, when it goes off by itself
    reason: str | None
    error: str | None  # the last failed write, until a write succeeds

    def to_json(self) -> dict[str, object]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class _Actuator:
    def __init__(self, cfg: ActuatorConfig) -> None:
        self.cfg = cfg
        self.on = False
        self.on_since = 0.0  # monotonic
        self.off_at = 0.0  # monotonic
        self.since_wall: float | None = None
        self.reason: str | None = None
        self.error: str | None = None
        self.off_pending = False
        self.retry_at = 0.0
        self.cool_until = 0.0


class Actuators:
    """The station's actuators; ``tick()`` enforces the timeouts (call it every second)."""

    def __init__(self, configs: Sequence[ActuatorConfig], write: Writer, *, clock: Clock) -> None:
        self._write = write
        self.clock = clock
        self._a = {c.name: _Actuator(c) for c in configs}
        self.switches = 0

    def names(self) -> list[str]:
        return list(self._a)

    def configs(self) -> tuple[ActuatorConfig, ...]:
        return tuple(a.cfg for a in self._a.values())

    def _get(self, name: str) -> _Actuator:
        try:
            return self._a[name]
        except KeyError:
            known = ", ".join(self._a) or "none configured"
            raise CommandRejected(f"no actuator named {name!r} ({known})") from None

    def switch(
        self, name: str, on: bool, *, duration_s: float | None = None, reason: str
    ) -> ActuatorState:
        """Switch ``name`` on (for ``duration_s``, at most ``max_on_s`` since it went on) or
        off. Raises ``DeviceError`` when the write fails (the state is unchanged)."""
        a = self._get(name)
        now = self.clock.monotonic()
        if on:
            if duration_s is not None and duration_s <= 0:
                raise CommandRejected("duration_s must be > 0")
            want = a.cfg.max_on_s if duration_s is None else min(duration_s, a.cfg.max_on_s)
            if not a.on and now < a.cool_until:
                raise CommandRejected(
                    f"actuator {name} is cooling down after its safety timeout "
                    f"({a.cool_until - now:.0f} s left)"
                )
            if not a.on:
                self._do(a, a.cfg.on_value)
                a.on, a.on_since, a.since_wall = True, now, self.clock.now()
                a.off_pending = False
                log.info("actuator %s on for %.0f s: %s", name, want, reason)
            a.off_at = min(max(a.off_at, now + want), a.on_since + a.cfg.max_on_s)
            a.reason = reason
        else:
            self._off(a, reason)
        return self.state(name)

    def _do(self, a: _Actuator, value: int) -> None:
        try:
            self._write(a.cfg, value)
        except DeviceError as exc:
            if a.error != str(exc):
                log.warning("actuator %s: write failed: %s", a.cfg.name, exc)
            a.error = str(exc)
            raise
        a.error = None
        self.switches += 1

    def _off(self, a: _Actuator, reason: str) -> None:
        a.on = False
        a.reason = reason
        a.since_wall = None
        try:
            self._do(a, a.cfg.off_value)
            a.off_pending = False
            log.info("actuator %s off: %s", a.cfg.name, reason)
        except DeviceError:
            a.off_pending = True  # keep trying: off is the safe state
            a.retry_at = self.clock.monotonic() + RETRY_OFF_S
            raise

    def tick(self) -> None:
        """Switch off what has run its time; retry switch-offs that failed."""
        now = self.clock.monotonic()
        for a in self._a.values():
            if a.on and now >= a.off_at:
                timeout = now - a.on_since >= a.cfg.max_on_s
                why = f"safety timeout ({a.cfg.max_on_s:g} s)" if timeout else "duration over"
                if timeout:
                    a.cool_until = now + COOLDOWN_S
                with contextlib.suppress(DeviceError):
                    self._off(a, why)
            elif a.off_pending and now >= a.retry_at:
                with contextlib.suppress(DeviceError):
                    self._off(a, a.reason or "retry")

    def all_off(self, reason: str) -> None:
        for a in self._a.values():
            with contextlib.suppress(DeviceError):
                self._off(a, reason)

    def state(self, name: str) -> ActuatorState:
        a = self._get(name)
        until = None
        if a.on:
            until = self.clock.now() + max(0.0, a.off_at - self.clock.monotonic())
        return ActuatorState(name, a.on, a.since_wall, until, a.reason, a.error)

    def states(self) -> list[ActuatorState]:
        return [self.state(n) for n in self._a]

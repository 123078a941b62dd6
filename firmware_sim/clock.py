"""Simulated time: the clocks every simulated device is given.

A device asks its clock for the time (``now()``, epoch seconds, the simulated wall clock
that stamps its values) and waits on it (``await clock.sleep(s)``, ``s`` in *simulated*
seconds). Three clocks:

- ``SystemClock``: real time.
- ``AcceleratedClock(start, rate, anchor=)``: simulated time = ``start + rate * (real time
  since anchor)``; ``from_env`` builds it from ``AIRTRACE_CLOCK``, the variable the demo
  shares with gateways so every process agrees on the simulated time;
  a device that sends every simulated second sends every ``1 / rate`` real seconds, so a
  district runs a day in minutes.
- ``ManualClock(start)``: time moves only when a test calls ``advance`` or ``set``; a device
  sleeping on it wakes when the test has moved time past its deadline.

``as_clock`` also accepts a bare ``now()`` callable (it then sleeps in real time).
Network timeouts (HJ 212's reply wait, reconnect backoff) stay in real seconds: a TCP round
trip does not get faster when simulated time does.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "CLOCK_ENV",
    "AcceleratedClock",
    "Clock",
    "ManualClock",
    "SystemClock",
    "as_clock",
    "from_env",
]


@runtime_checkable
class Clock(Protocol):
    """The simulated wall clock of a device."""

    def now(self) -> float:
        """Simulated time, epoch seconds (UTC)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of simulated time."""
        ...


class SystemClock:
    """Real time."""

    rate = 1.0

    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def __repr__(self) -> str:
        return "SystemClock()"


class AcceleratedClock:
    """Simulated time = ``start + rate * (real time - anchor)``.

    ``anchor`` is a real epoch second (default: now), so every process given the same
    ``(start, rate, anchor)`` agrees on the simulated time: the gateway's ``ScaledClock``
    reads the same triple from ``AIRTRACE_CLOCK="START@RATE@ANCHOR"`` (see ``from_env``)."""

    def __init__(
        self,
        start: float | None = None,
        rate: float = 1.0,
        *,
        anchor: float | None = None,
        real: Callable[[], float] = time.time,
    ) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be > 0, got {rate!r}")
        self._real = real
        self.anchor = real() if anchor is None else float(anchor)
        self.start = self.anchor if start is None else float(start)
        self.rate = float(rate)

    def now(self) -> float:
        return self.start + self.rate * (self._real() - self.anchor)

    def real_seconds(self, simulated: float) -> float:
        """How long ``simulated`` seconds take in real time."""
        return max(0.0, simulated) / self.rate

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(self.real_seconds(seconds))

    @property
    def spec(self) -> str:
        """``START@RATE@ANCHOR``: the value of ``AIRTRACE_CLOCK`` that shares this clock."""
        return f"{self.start!r}@{self.rate!r}@{self.anchor!r}"

    def __repr__(self) -> str:
        return f"AcceleratedClock(start={self.start!r}, rate={self.rate!r}, anchor={self.anchor!r})"


class ManualClock:
    """A clock that moves only when told: ``advance(s)`` or ``set(t)``. Thread safe.

    ``sleep`` returns once time has reached the deadline; it polls every ``poll_s`` real
    seconds, so a test in another thread can move time while a device waits on it."""

    def __init__(self, start: float = 1_780_000_000.0, *, poll_s: float = 0.002) -> None:
        self._now = float(start)
        self._lock = threading.Lock()
        self.poll_s = poll_s

    def now(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        """Move time forward by ``seconds``; returns the new time."""
        if seconds < 0:
            raise ValueError("a manual clock does not go backwards")
        with self._lock:
            self._now += seconds
            return self._now

    def set(self, t: float) -> None:
        with self._lock:
            if t < self._now:
                raise ValueError("a manual clock does not go backwards")
            self._now = float(t)

    def sleep(self, seconds: float) -> Coroutine[Any, Any, None]:
        """Wait until time reaches now + ``seconds`` (the deadline is fixed by the call, not
        by when the returned coroutine first runs)."""
        return self._until(self.now() + max(0.0, seconds))

    async def _until(self, deadline: float) -> None:
        await asyncio.sleep(0)
        while self.now() < deadline:
            await asyncio.sleep(self.poll_s)

    def __repr__(self) -> str:
        return f"ManualClock({self.now()!r})"


class _CallableClock:
    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now

    def now(self) -> float:
        return float(self._now())

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


CLOCK_ENV = "AIRTRACE_CLOCK"


def from_env(environ: Mapping[str, str] | None = None) -> Clock:
    """The clock ``AIRTRACE_CLOCK="START@RATE@ANCHOR"`` describes (the demo's shared
    accelerated time); real time when it is unset."""
    spec = (os.environ if environ is None else environ).get(CLOCK_ENV, "").strip()
    if not spec:
        return SystemClock()
    try:
        start, rate, anchor = (float(p) for p in spec.split("@"))
        return AcceleratedClock(start, rate, anchor=anchor)
    except ValueError:
        raise ValueError(f"{CLOCK_ENV}={spec!r}: expected START@RATE@ANCHOR in seconds") from None


def as_clock(clock: Clock | Callable[[], float] | None) -> Clock:
    """A ``Clock`` from a clock, a bare ``now()`` callable, or None (real time)."""
    if clock is None:
        return SystemClock()
    if isinstance(clock, Clock):
        return clock
    if callable(clock):
        return _CallableClock(clock)
    raise TypeError(f"not a clock: {clock!r}")

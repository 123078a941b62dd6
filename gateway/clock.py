"""Time, injected: the gateway asks a clock, so tests advance time instead of sleeping."""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Wall-clock time, UTC epoch seconds (reading timestamps)."""
        ...

    def monotonic(self) -> float:
        """Seconds that never jump (intervals, timeouts, backoff)."""
        ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class FakeClock:
    """A clock for tests: ``sleep`` and ``advance`` move time forward instantly."""

    def __init__(self, start: float = 1_780_000_000.0) -> None:
        self._now = start
        self._mono = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._now

    def monotonic(self) -> float:
        with self._lock:
            return self._mono

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds
            self._mono += seconds

    def sleep(self, seconds: float) -> None:
        self.advance(max(0.0, seconds))


class ScaledClock:
    """Accelerated time for the demo and benchmarks: simulated time runs ``rate`` times
    faster than real time and equals ``start`` at the real epoch ``anchor``. Every process
    given the same (start, rate, anchor) agrees on the simulated time."""

    def __init__(self, start: float, rate: float, anchor: float | None = None) -> None:
        if rate <= 0:
            raise ValueError("rate must be > 0")
        self.start = start
        self.rate = rate
        self.anchor = time.time() if anchor is None else anchor
        self._mono0 = time.monotonic() - (time.time() - self.anchor)

    def now(self) -> float:
        return self.start + (time.time() - self.anchor) * self.rate

    def monotonic(self) -> float:
        return (time.monotonic() - self._mono0) * self.rate

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds / self.rate)


CLOCK_ENV = "AIRTRACE_CLOCK"


def clock_from_env(environ: dict[str, str] | None = None) -> Clock:
    """``AIRTRACE_CLOCK="START@RATE@ANCHOR"`` (epoch seconds, factor, real epoch seconds)
    selects a ScaledClock shared by every process of a demo; unset means the system clock."""
    import os

    spec = (os.environ if environ is None else environ).get(CLOCK_ENV, "").strip()
    if not spec:
        return SystemClock()
    try:
        start, rate, anchor = (float(p) for p in spec.split("@"))
    except ValueError:
        raise ValueError(f"{CLOCK_ENV}={spec!r}: expected START@RATE@ANCHOR in seconds") from None
    return ScaledClock(start, rate, anchor)

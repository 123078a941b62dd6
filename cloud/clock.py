"""The central service's wall clock: the system's, or the demo's accelerated one.

``AIRTRACE_CLOCK="START@RATE@ANCHOR"`` (epoch seconds, speed-up factor, real epoch
seconds) makes every process of a demo agree on one simulated time: ``START`` at the real
moment ``ANCHOR``, running ``RATE`` times faster (the same rule as ``gateway.clock``; the
two packages may not import each other). Unset, it is ``time.time``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping

from protocols.errors import ConfigError

CLOCK_ENV = "AIRTRACE_CLOCK"


def scaled(start: float, rate: float, anchor: float) -> Callable[[], float]:
    if rate <= 0:
        raise ConfigError(f"{CLOCK_ENV}: the rate must be > 0, got {rate:g}")
    return lambda: start + (time.time() - anchor) * rate


def clock_from_env(environ: Mapping[str, str] | None = None) -> Callable[[], float]:
    spec = (os.environ if environ is None else environ).get(CLOCK_ENV, "").strip()
    if not spec:
        return time.time
    try:
        start, rate, anchor = (float(p) for p in spec.split("@"))
    except ValueError:
        raise ConfigError(f"{CLOCK_ENV}={spec!r}: expected START@RATE@ANCHOR in seconds") from None
    return scaled(start, rate, anchor)

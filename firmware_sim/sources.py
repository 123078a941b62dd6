"""Where a simulated device's readings come from: value sources.

A value source is any callable ``value(quantity, t) -> float``: the true engineering value
of ``quantity`` (a ``protocols.quantities`` name, in that quantity's unit) at epoch second
``t``. It raises ``KeyError`` for a quantity it does not know; the device then falls back
to what it can derive (a PMS5003's PM1 from its PM2.5, a wind vane's gear from its degrees)
or reports the quantity as missing.

- ``constant(pm25=35, temp=21.5)``: fixed values.
- ``scripted({"pm25": [(t0, 10), (t1, 80)]})``: piecewise linear in time (or ``step=True``).
- ``Values(source)``: what every device holds: the source plus per-quantity overrides a test
  or the demo sets at run time (``dev.values.set("pm25", 300)``); ``values.source`` can be
  swapped while the device runs.
- ``source_for(world, station_id)``: readings from the synthetic world (``firmware_sim.world``).
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from protocols.quantities import QUANTITIES

__all__ = [
    "DEFAULTS",
    "SourceLike",
    "ValueSource",
    "Values",
    "constant",
    "scripted",
    "source_for",
    "typical",
]

ValueSource = Callable[[str, float], float]
#: what devices accept as ``source=``: a value source, a mapping of constant values, or
#: None (typical values)
SourceLike = ValueSource | Mapping[str, float] | None

#: plausible values for every quantity the simulated models carry (a quiet urban morning)
DEFAULTS: dict[str, float] = {
    "pm1": 18.0,
    "pm25": 35.0,
    "pm10": 62.0,
    "tsp": 95.0,
    "no2": 38.0,
    "so2": 9.0,
    "co": 0.8,
    "o3": 62.0,
    "co2": 425.0,
    "temp": 21.5,
    "rh": 55.0,
    "pressure": 1008.6,
    "wind_speed": 2.4,
    "wind_dir": 225.0,
    "noise": 58.3,
}


def constant(values: Mapping[str, float] | None = None, /, **more: float) -> ValueSource:
    """A source with fixed values; unknown quantities raise ``KeyError``."""
    table = {**(values or {}), **more}

    def value(quantity: str, t: float) -> float:
        return table[quantity]

    value.__doc__ = f"constant({table})"
    return value


def typical() -> ValueSource:
    """Every quantity at a plausible fixed value (``DEFAULTS``)."""
    return constant(DEFAULTS)


def scripted(
    script: Mapping[str, Iterable[tuple[float, float]]], *, step: bool = False
) -> ValueSource:
    """Values given at points in time: linear between points (or held until the next point
    with ``step=True``), constant before the first and after the last."""
    table: dict[str, tuple[list[float], list[float]]] = {}
    for quantity, points in script.items():
        pts = sorted((float(t), float(v)) for t, v in points)
        if not pts:
            raise ValueError(f"scripted: no points for {quantity!r}")
        table[quantity] = ([p[0] for p in pts], [p[1] for p in pts])

    def value(quantity: str, t: float) -> float:
        ts, vs = table[quantity]
        i = bisect.bisect_right(ts, t)
        if i == 0:
            return vs[0]
        if i == len(ts) or step:
            return vs[i - 1]
        t0, t1, v0, v1 = ts[i - 1], ts[i], vs[i - 1], vs[i]
        return v0 + (v1 - v0) * (t - t0) / (t1 - t0)

    return value


class Values:
    """A device's view of the truth: ``source`` plus run-time overrides. Thread safe."""

    def __init__(self, source: ValueSource | Mapping[str, float] | None = None) -> None:
        self._lock = threading.Lock()
        self._overrides: dict[str, float] = {}
        self.source = source

    @property
    def source(self) -> ValueSource:
        return self._source

    @source.setter
    def source(self, source: ValueSource | Mapping[str, float] | None) -> None:
        if source is None:
            source = typical()
        elif isinstance(source, Mapping):
            source = constant(source)
        elif not callable(source):
            raise TypeError(f"a value source is a callable (quantity, t) -> float: {source!r}")
        self._source = source

    def set(self, quantity: str | None = None, value: float | None = None, **more: float) -> None:
        """Override quantities (``set("pm25", 80)`` or ``set(pm25=80, pm10=120)``)."""
        with self._lock:
            if quantity is not None:
                if value is None:
                    raise TypeError("set(quantity, value) needs a value")
                self._overrides[quantity] = float(value)
            self._overrides.update({k: float(v) for k, v in more.items()})

    def clear(self, *quantities: str) -> None:
        """Drop the overrides of ``quantities`` (all when none are named)."""
        with self._lock:
            if not quantities:
                self._overrides.clear()
            for q in quantities:
                self._overrides.pop(q, None)

    def __call__(self, quantity: str, t: float) -> float:
        with self._lock:
            if quantity in self._overrides:
                return self._overrides[quantity]
        value = self._source(quantity, t)
        return float(value)

    def get(self, quantity: str, t: float, default: float | None = None) -> float | None:
        """The value, or ``default`` when the source does not know the quantity."""
        try:
            return self(quantity, t)
        except KeyError:
            return default


def source_for(world: Any, station_id: str) -> ValueSource:
    """Readings of station ``station_id`` in ``world``: ``world.sensor_value(station_id,
    quantity, t)``, the value the station's sensor shows (truth plus the sensor's own noise,
    bias and drift, as the world models them). Quantities outside
    ``protocols.quantities`` (a louver box's illuminance) raise ``KeyError``: the device
    makes them up itself."""

    def value(quantity: str, t: float) -> float:
        if quantity not in QUANTITIES:
            raise KeyError(quantity)  # the world models airtrace's quantities only
        return float(world.sensor_value(station_id, quantity, t))

    value.__doc__ = f"world station {station_id}"
    return value

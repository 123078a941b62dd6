"""Quality control: every reading leaves with exactly one HJ 212 flag and, unless it is N,
the reason. Nothing is dropped here.

Checks, in order; the first that fails decides the flag:

1. a flag already set upstream stays: B (no answer) or D (device fault) from the driver,
   C (calibration session) from calibration;
2. warm-up: readings in the first ``warmup_s`` seconds after the sensor (re)started (the
   gateway started, or the sensor answered again after a silence of more than
   ``max(60 s, 3 x interval_s)``) -> D;
3. range: above ``[qc.<quantity>] max`` (default: the quantity's physical bound) -> T
   (over range); below ``min`` -> D;
4. humidity: an optical PM reading while the station's RH is above ``rh_max`` (default
   95 % on micro and dust stations, whose PM sensors are optical) -> D;
5. spike: a change faster than ``spike_per_min`` since the previous reading of the same
   sensor and quantity (within 10 minutes) -> D;
6. flat line: the same raw value for ``flat_s`` seconds or more -> D (stuck sensor).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.config import StationConfig
from gateway.model import Flag, Reading
from protocols.quantities import QUANTITIES

DEFAULT_RH_MAX = 95.0
OPTICAL_PM_KINDS = ("micro", "dust")
SPIKE_WINDOW_S = 600.0
RH_MAX_AGE_S = 900.0
_VALID = frozenset((Flag.NORMAL, Flag.SET))


@dataclass(frozen=True)
class Limits:
    min: float | None
    max: float | None
    spike_per_min: float | None
    flat_s: float | None
    rh_max: float | None


class QualityControl:
    """The QC stage of one station. Keeps a little state per sensor and quantity (previous
    value, flat-line run, warm-up); ``counts`` tallies the flags it handed out."""

    def __init__(self, config: StationConfig, *, warmup: bool = True) -> None:
        self.config = config
        self.warmup = warmup
        self.counts: Counter[str] = Counter()
        self._limits: dict[str, Limits] = {}
        self._warmup_s = {s.name: s.warmup_s for s in config.sensors}
        self._gap_s = {s.name: max(60.0, 3.0 * s.interval_s) for s in config.sensors}
        self._up_since: dict[str, float] = {}
        self._last_ok: dict[str, float] = {}
        self._last: dict[tuple[str, str], tuple[float, float]] = {}  # value, ts
        self._flat: dict[tuple[str, str], tuple[float, float]] = {}  # raw, since
        self._rh: tuple[float, float] | None = None

    def carry_over(self, old: QualityControl) -> None:
        """Keep what the previous QC of this station learnt (a new config is not a restart
        of the sensors: no new warm-up, no lost spike or flat-line history)."""
        self._up_since.update(old._up_since)
        self._last_ok.update(old._last_ok)
        self._last.update(old._last)
        self._flat.update(old._flat)
        self._rh = old._rh
        self.counts = old.counts

    def limits(self, quantity: str) -> Limits:
        lim = self._limits.get(quantity)
        if lim is None:
            conf = self.config.qc.get(quantity)
            q = QUANTITIES.get(quantity)
            rh_max = conf.rh_max if conf else None
            optical = q is not None and q.particulate
            if rh_max is None and optical and self.config.station.kind in OPTICAL_PM_KINDS:
                rh_max = DEFAULT_RH_MAX
            lim = Limits(
                min=conf.min if conf and conf.min is not None else (q.low if q else None),
                max=conf.max if conf and conf.max is not None else (q.high if q else None),
                spike_per_min=conf.spike_per_min if conf else None,
                flat_s=conf.flat_s if conf else None,
                rh_max=rh_max,
            )
            self._limits[quantity] = lim
        return lim

    def check_many(self, readings: Sequence[Reading]) -> list[Reading]:
        if not any(r.quantity == "rh" for r in readings):
            return [self.check(r) for r in readings]
        out: list[Reading | None] = [None] * len(readings)
        for i, r in enumerate(readings):  # RH first: the humidity check of this poll uses it
            if r.quantity == "rh":
                out[i] = self.check(r)
        return [o if o is not None else self.check(r) for o, r in zip(out, readings, strict=True)]

    def check(self, r: Reading) -> Reading:
        flag, why = self._verdict(r)
        self.counts[flag] += 1
        if flag in _VALID and r.quantity == "rh" and r.value is not None:
            self._rh = (r.value, r.ts)
        if flag is r.flag and why == r.why:
            return r
        return r.replace(flag=flag, why=why)

    def _verdict(self, r: Reading) -> tuple[Flag, str | None]:  # noqa: PLR0911 - one per check
        value = r.value
        if r.raw is None or value is None:
            return (r.flag if r.flag not in _VALID else Flag.FAULT), r.why or "no value"
        sensor = r.sensor
        warm = self._warmup_s.get(sensor, 0.0) if self.warmup else 0.0
        if warm > 0:  # warm-up bookkeeping runs for every answer of the sensor
            last_ok = self._last_ok.get(sensor)
            if last_ok is None or r.ts - last_ok > self._gap_s.get(sensor, 60.0):
                self._up_since[sensor] = r.ts
            self._last_ok[sensor] = r.ts if last_ok is None else max(r.ts, last_ok)
        if r.flag not in _VALID:
            return r.flag, r.why
        lim = self._limits.get(r.quantity) or self.limits(r.quantity)
        previous = None
        if lim.spike_per_min is not None:
            key = (sensor, r.quantity)
            previous = self._last.get(key)
            self._last[key] = (value, r.ts)
        run = None
        if lim.flat_s is not None:
            key = (sensor, r.quantity)
            run = self._flat.get(key)
            if run is None or run[0] != r.raw:
                run = (r.raw, r.ts)
                self._flat[key] = run

        if warm > 0:
            up = r.ts - self._up_since[sensor]
            if up < warm:
                return Flag.FAULT, f"warm-up: {up:.0f} s of {warm:g} s"
        if lim.max is not None and value > lim.max:
            return Flag.OVER_RANGE, f"over range: {value:g} > {lim.max:g}"
        if lim.min is not None and value < lim.min:
            return Flag.FAULT, f"below range: {value:g} < {lim.min:g}"
        if lim.rh_max is not None and self._rh is not None:
            rh, rh_ts = self._rh
            if rh > lim.rh_max and abs(r.ts - rh_ts) <= RH_MAX_AGE_S:
                return Flag.FAULT, f"humidity {rh:g} % > {lim.rh_max:g} %: optical PM unreliable"
        if previous is not None and lim.spike_per_min is not None:
            dt = r.ts - previous[1]
            if 0 < dt <= SPIKE_WINDOW_S:
                rate = abs(value - previous[0]) * 60.0 / max(dt, 1.0)
                if rate > lim.spike_per_min:
                    return Flag.FAULT, f"spike: {rate:.4g}/min > {lim.spike_per_min:g}/min"
        if run is not None and lim.flat_s is not None and r.ts - run[1] >= lim.flat_s:
            return Flag.FAULT, f"stuck: {r.raw:g} unchanged for {r.ts - run[1]:.0f} s"
        return r.flag, r.why

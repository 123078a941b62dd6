"""The maintainer's calibration procedures (``airtrace gateway calibrate ...``).

``zero`` and ``span`` (one path: ``check``) open a calibration session for one sensor and
quantity, gather the raw readings of the session, and store a new linear version from their
mean:

* **zero**: with zero air / a zero filter on the inlet, ``offset`` moves so that the
  session's mean raw reads ``--reference`` (0 by default); the slope stays;
* **span**: with a span gas (or a reference value) of ``--reference`` S, the slope goes
  through the last zero point and the span point; the zero point comes from the last zero
  check (kept in its fit statistics), else from where the current set reads 0.

While the session runs, every reading of that sensor and quantity is flagged C. If the
daemon is running, it takes the readings (and flags them, and still sends them); the
command waits and then uses what the daemon recorded. If not, the command polls the
sensor itself. The first ``--settle`` seconds are left out of the mean.

``points`` stores a multi-point set from (raw, reference) pairs: piecewise through them, or
a least-squares line (``--fit linear``, with ``--kappa`` for the humidity correction).
``show``, ``history`` and ``rollback`` read and restore versions. Nothing is ever deleted.
"""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal, Required, TypedDict, Unpack

from gateway.calibration import CalibrationError, CalSet, calibration_path, fit_linear
from gateway.calstore import CalibrationStore, Session
from gateway.clock import Clock, SystemClock
from gateway.config import StationConfig
from gateway.outbox import holder
from gateway.runtime import PollerFactory, default_poller
from protocols.timefmt import to_iso

Out = Callable[[str], None]
MIN_READINGS = 3


def open_store(config: StationConfig) -> CalibrationStore:
    return CalibrationStore(calibration_path(config.outbox), config.station.id)


def _check_target(config: StationConfig, sensor: str, quantity: str) -> None:
    names = [s.name for s in config.sensors]
    if sensor not in names:
        raise CalibrationError(f"no sensor named {sensor!r} in the config ({', '.join(names)})")
    from gateway.profiles import load_profile

    profile = load_profile(config.sensor(sensor).profile)
    quantities = profile.quantities
    if quantities and quantity not in quantities:
        raise CalibrationError(
            f"sensor {sensor!r} ({profile.name}) measures {', '.join(quantities)}, not {quantity!r}"
        )


def collect(
    config: StationConfig,
    store: CalibrationStore,
    sensor: str,
    quantity: str,
    purpose: str,
    *,
    duration_s: float,
    settle_s: float,
    out: Out,
    clock: Clock | None = None,
    poller_factory: PollerFactory | None = None,
) -> tuple[Session, list[float]]:
    """Run a calibration session; returns it and the raw values after the settling time."""
    clock = clock or SystemClock()
    _check_target(config, sensor, quantity)
    start = clock.now()
    session = store.open_session(sensor, quantity, purpose, start=start, duration_s=duration_s)
    daemon = holder(config.outbox.path)
    out(
        f"session #{session.id}: {purpose} of {sensor}/{quantity} for {duration_s:g} s "
        f"(readings flagged C; the first {settle_s:g} s are left out)"
    )
    try:
        if daemon is not None:
            out(f"the gateway daemon (pid {daemon}) takes the readings")
            while clock.now() < start + duration_s:
                clock.sleep(min(1.0, start + duration_s - clock.now()))
            clock.sleep(2.0)  # its last readings reach the store
        else:
            one = replace(config, sensors=(config.sensor(sensor),))
            poller = (poller_factory or default_poller)(one, clock, lambda _s: None)
            try:
                interval = config.sensor(sensor).interval_s
                while clock.now() < start + duration_s:
                    t0 = clock.now()
                    rows = [
                        (session.id, s.ts, s.quantity, s.raw)
                        for s in poller.poll_once()
                        if s.quantity == quantity and s.raw is not None
                    ]
                    store.add_session_readings(rows)
                    clock.sleep(
                        max(
                            0.0,
                            min(interval - (clock.now() - t0), start + duration_s - clock.now()),
                        )
                    )
            finally:
                poller.stop()
    finally:
        store.close_session(session.id, at=clock.now())
    raws = [
        raw for ts, raw in store.session_readings(session.id, quantity) if ts >= start + settle_s
    ]
    if len(raws) < MIN_READINGS:
        raise CalibrationError(
            f"session #{session.id} gathered {len(raws)} readings of {sensor}/{quantity} after "
            f"settling (need {MIN_READINGS}): is the sensor answering? try a longer --duration"
        )
    return session, raws


def _stats(raws: Sequence[float]) -> dict[str, float]:
    n = len(raws)
    mean = sum(raws) / n
    sd = math.sqrt(sum((r - mean) ** 2 for r in raws) / (n - 1)) if n > 1 else 0.0
    return {"n": n, "raw_mean": mean, "raw_sd": sd}


def _linear_base(store: CalibrationStore, sensor: str, quantity: str, now: float) -> CalSet:
    current = store.active(sensor, quantity, now)
    if current is None:
        return CalSet(sensor, quantity)
    if current.kind == "points":
        raise CalibrationError(
            f"{sensor}/{quantity} v{current.version} is a multi-point set: zero/span adjust "
            "linear sets; use 'calibrate points', or roll back to a linear version"
        )
    return current


class SessionArgs(TypedDict, total=False):
    """How a zero or span session runs (see :func:`collect`)."""

    duration_s: Required[float]
    settle_s: Required[float]
    out: Required[Out]
    clock: Clock | None
    poller_factory: PollerFactory | None


def zero(
    config: StationConfig,
    sensor: str,
    quantity: str,
    *,
    reference: float = 0.0,
    **session: Unpack[SessionArgs],
) -> CalSet:
    """Zero check: ``offset`` moves so that the session's mean raw reads ``reference``."""
    return check("zero", config, sensor, quantity, reference=reference, **session)


def span(
    config: StationConfig,
    sensor: str,
    quantity: str,
    *,
    reference: float,
    **session: Unpack[SessionArgs],
) -> CalSet:
    """Span check: the slope goes through the last zero point and the span point."""
    return check("span", config, sensor, quantity, reference=reference, **session)


def check(
    procedure: Literal["zero", "span"],
    config: StationConfig,
    sensor: str,
    quantity: str,
    *,
    reference: float,
    duration_s: float,
    settle_s: float,
    out: Out,
    clock: Clock | None = None,
    poller_factory: PollerFactory | None = None,
) -> CalSet:
    """Run a zero or span session and store the new linear version it gives."""
    clock = clock or SystemClock()
    store = open_store(config)
    try:
        session, raws = collect(
            config,
            store,
            sensor,
            quantity,
            procedure,
            duration_s=duration_s,
            settle_s=settle_s,
            out=out,
            clock=clock,
            poller_factory=poller_factory,
        )
        base = _linear_base(store, sensor, quantity, clock.now())
        st = _stats(raws)
        point = _zero_point if procedure == "zero" else _span_point
        adds, coefficients = point(base, st["raw_mean"], reference)
        fit = {**st, "procedure": procedure, "session": session.id, "reference": reference, **adds}
        new = replace(
            base,
            version=0,
            source="zero/span",
            fit=fit,
            effective=clock.now(),
            note=None,
            origin="cli",
            **coefficients,
        )
        return store.add(new, now=clock.now())
    finally:
        store.close()


# A zero or span point: what it adds to the fit statistics, and the coefficients it sets.
class Coefficients(TypedDict, total=False):
    """The coefficients a zero or span point sets (a zero only the offset)."""

    slope: float
    offset: float


#: (what the point adds to the fit record, the coefficients it sets)
Point = tuple[dict[str, float], Coefficients]


def _zero_point(base: CalSet, mean: float, reference: float) -> Point:
    return {"zero_raw": mean, "zero_ref": reference}, {"offset": reference - base.slope * mean}


def _span_point(base: CalSet, mean: float, reference: float) -> Point:
    if "zero_raw" in base.fit:
        zraw, zref = float(base.fit["zero_raw"]), float(base.fit["zero_ref"])
    else:
        zraw, zref = -base.offset / base.slope, 0.0
    if abs(mean - zraw) < 1e-9 * max(1.0, abs(zraw)) or reference == zref:
        raise CalibrationError(
            f"the span point (raw {mean:g}, reference {reference:g}) is the zero "
            f"point (raw {zraw:g}, reference {zref:g}): is the span gas on?"
        )
    slope = (reference - zref) / (mean - zraw)
    fit = {
        "span_raw": mean,
        "span_ref": reference,
        "zero_raw": zraw,
        "zero_ref": zref,
        "slope_change": slope / base.slope,
    }
    return fit, {"slope": slope, "offset": zref - slope * zraw}


def read_points(pairs: Sequence[str], csv_file: Path | None) -> list[tuple[float, float]]:
    """``RAW=REF`` strings and/or a CSV file with columns ``raw`` and ``ref``."""
    out: list[tuple[float, float]] = []
    for p in pairs:
        raw, sep, ref = p.partition("=")
        try:
            out.append((float(raw), float(ref)))
        except ValueError:
            raise CalibrationError(f"bad point {p!r}: expected RAW=REF, e.g. 12.5=14.1") from None
        if not sep:
            raise CalibrationError(f"bad point {p!r}: expected RAW=REF, e.g. 12.5=14.1")
    if csv_file is not None:
        try:
            with open(csv_file, newline="", encoding="utf-8") as f:
                for i, row in enumerate(csv.DictReader(f), start=2):
                    try:
                        out.append((float(row["raw"]), float(row["ref"])))
                    except (KeyError, TypeError, ValueError):
                        raise CalibrationError(
                            f"{csv_file} line {i}: needs numeric columns raw and ref"
                        ) from None
        except OSError as exc:
            raise CalibrationError(f"cannot read {csv_file}: {exc}") from None
    if any(not (math.isfinite(a) and math.isfinite(b)) for a, b in out):
        raise CalibrationError("calibration points must be finite numbers")
    return out


def points(
    config: StationConfig,
    sensor: str,
    quantity: str,
    pts: Sequence[tuple[float, float]],
    *,
    fit: str = "piecewise",
    kappa: float | None = None,
    source: str = "manual",
    effective: float | None = None,
    note: str | None = None,
    clock: Clock | None = None,
) -> CalSet:
    clock = clock or SystemClock()
    _check_target(config, sensor, quantity)
    if not pts:
        raise CalibrationError("give at least one point (--point RAW=REF or --file)")
    when = clock.now() if effective is None else effective
    if fit == "linear" or kappa is not None:
        slope, offset, stats = fit_linear(pts)
        cs = CalSet(
            sensor,
            quantity,
            kind="rh" if kappa is not None else "linear",
            slope=slope,
            offset=offset,
            kappa=kappa,
            source=source,
            fit={**stats, "procedure": "points", "fit": "linear"},
            effective=when,
            note=note,
            origin="cli",
        )
    else:
        merged: dict[float, list[float]] = {}
        for raw, ref in pts:
            merged.setdefault(raw, []).append(ref)
        table = tuple(sorted((raw, sum(v) / len(v)) for raw, v in merged.items()))
        cs = CalSet(
            sensor,
            quantity,
            kind="points",
            points=table,
            source=source,
            fit={"n": len(pts), "procedure": "points", "fit": "piecewise"},
            effective=when,
            note=note,
            origin="cli",
        )
    store = open_store(config)
    try:
        return store.add(cs, now=clock.now())
    finally:
        store.close()


def rollback(
    config: StationConfig,
    sensor: str,
    quantity: str,
    *,
    to: int | None,
    clock: Clock | None = None,
) -> CalSet:
    clock = clock or SystemClock()
    store = open_store(config)
    try:
        return store.rollback(sensor, quantity, to=to, now=clock.now())
    finally:
        store.close()


def _row(s: CalSet, *, current: bool = False) -> str:
    mark = "*" if current else " "
    fit = s.fit
    stats = ", ".join(f"{k} {fit[k]:.4g}" for k in ("n", "r2", "rmse", "raw_sd") if k in fit)
    text = (
        f"{mark} {s.sensor}/{s.quantity} v{s.version}  {s.kind}: {s.describe()}  "
        f"[{s.source}] effective {to_iso(s.effective, ms=False)}"
    )
    if stats:
        text += f"  ({stats})"
    if s.note:
        text += f"  — {s.note}"
    return text


def show(config: StationConfig, *, json_out: bool, out: Out, now: float | None = None) -> None:
    now = time.time() if now is None else now
    store = open_store(config)
    try:
        sets = store.sets()
    finally:
        store.close()
    current: dict[tuple[str, str], CalSet] = {}
    for s in sets:
        if s.effective <= now:
            current[(s.sensor, s.quantity)] = s
    if json_out:
        for s in current.values():
            out(json.dumps(s.to_json()))
        return
    if not current:
        out("no calibration sets: readings are reported as the devices give them (value = raw)")
    for s in current.values():
        out(_row(s, current=True))
    pending = [s for s in sets if s.effective > now]
    for s in pending:
        out(_row(s) + "  (not yet in force)")


def history(
    config: StationConfig, *, sensor: str | None, quantity: str | None, json_out: bool, out: Out
) -> None:
    store = open_store(config)
    try:
        sets = store.sets(sensor, quantity)
    finally:
        store.close()
    for s in sets:
        out(json.dumps(s.to_json()) if json_out else _row(s) + f"  created {to_iso(s.created)}")
    if not sets and not json_out:
        out("no calibration history")


def describe_set(s: CalSet) -> dict[str, Any]:
    return {"version": s.version, "kind": s.kind, "coefficients": s.describe(), **s.fit}

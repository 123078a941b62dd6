"""Calibration: versioned coefficient sets per sensor and quantity, and the stage that
applies them (``Sample -> Reading``).

A set is one of three kinds:

* ``linear``  ``value = slope * raw + offset`` (zero/span checks, co-location regressions);
* ``points``  piecewise linear through ``(raw, reference)`` pairs, extended past the
  ends along the end segments (multi-point calibration);
* ``rh``      the linear part, then the kappa-Koehler humidity correction for optical PM
  (Crilley et al. 2018): ``C = 1 + (kappa / 1.65) / (1 / a_w - 1)``, ``a_w = RH / 100``,
  ``value = (slope * raw + offset) / C``; RH is the station's latest valid RH reading.

Each set has a version (1, 2, ... per station, sensor and quantity; a reading carries the
version that produced it, 0 = uncalibrated), an effective time (the set applies to
readings taken at or after it), a source (factory, zero/span, colocation, manual) and fit
statistics. Sets live in SQLite next to the outbox (``<outbox>-calibration.db``) and are
never edited or deleted: a rollback appends a copy of an older version, so the history is
a complete audit trail. The same file holds calibration sessions: while one is open for a
sensor, its readings are flagged C and their raw values are kept for the procedure that
opened it (``gateway.maintenance``).
"""

from __future__ import annotations

import json
import math
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.config import OutboxConfig
from gateway.model import Flag, Reading, Sample
from protocols.errors import InputError
from protocols.timefmt import parse_iso

if TYPE_CHECKING:
    from gateway.calstore import CalibrationStore, Session

KINDS = ("linear", "points", "rh")
SOURCES = ("factory", "zero/span", "colocation", "manual")
PARTICLE_DENSITY = 1.65  # g/cm3, the dry particle density of the kappa-Koehler mass factor
RH_CAP = 99.0  # the growth factor diverges at 100 % RH; QC flags such readings anyway
RH_MAX_AGE_S = 900.0  # an RH reading older than this is not used for the correction


class CalibrationError(InputError):
    """A calibration set, session or command argument that is not valid."""


def calibration_path(outbox: OutboxConfig | Path) -> Path:
    """Where the calibration store of a station lives: beside its outbox file."""
    path = outbox.path if isinstance(outbox, OutboxConfig) else Path(outbox)
    return path.with_name(f"{path.stem}-calibration.db")


def _finite(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CalibrationError(f"calibration {name} must be a number, got {value!r}")
    f = float(value)
    if not math.isfinite(f):
        raise CalibrationError(f"calibration {name} must be finite, got {value!r}")
    return f


@dataclass(frozen=True)
class CalSet:
    """One version of the calibration of one quantity of one sensor."""

    sensor: str
    quantity: str
    kind: str = "linear"
    slope: float = 1.0
    offset: float = 0.0
    points: tuple[tuple[float, float], ...] = ()
    kappa: float | None = None
    source: str = "manual"
    fit: Mapping[str, Any] = field(default_factory=dict)
    effective: float = 0.0  # epoch seconds; applies to readings taken at or after it
    version: int = 0  # assigned by the store
    created: float = 0.0
    note: str | None = None
    origin: str | None = None  # "cli", or the id of the downlink command that set it

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise CalibrationError(f"calibration kind must be one of {', '.join(KINDS)}")
        if self.source not in SOURCES:
            raise CalibrationError(
                f"calibration source must be one of {', '.join(SOURCES)}, got {self.source!r}"
            )
        for name in ("slope", "offset", "effective", "created"):
            _finite(name, getattr(self, name))
        if self.kind in ("linear", "rh") and self.slope == 0:
            raise CalibrationError("calibration slope must not be 0")
        if self.kind == "points":
            if not self.points:
                raise CalibrationError("a points calibration needs at least one (raw, ref) pair")
            raws = [p[0] for p in self.points]
            if len(set(raws)) != len(raws):
                raise CalibrationError("calibration points repeat a raw value")
            if list(raws) != sorted(raws):
                raise CalibrationError("calibration points must be sorted by raw value")
        if self.kind == "rh" and (
            self.kappa is None or not 0.0 <= _finite("kappa", self.kappa) <= 2.0
        ):
            raise CalibrationError("an rh calibration needs kappa between 0 and 2")
        try:
            json.dumps(dict(self.fit), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise CalibrationError(f"calibration fit must be plain JSON: {exc}") from None

    @property
    def needs_rh(self) -> bool:
        return self.kind == "rh"

    def value(self, raw: float, rh: float | None = None) -> float:
        """The calibrated value of ``raw`` (``rh`` is required for the ``rh`` kind)."""
        if self.kind == "points":
            return _piecewise(self.points, raw)
        v = self.slope * raw + self.offset
        if self.kind == "rh":
            if rh is None:
                raise CalibrationError("no RH reading for the humidity correction")
            v /= growth_factor(rh, self.kappa or 0.0)
        return v

    def describe(self) -> str:
        if self.kind == "points":
            return ", ".join(f"{r:g}->{v:g}" for r, v in self.points)
        text = f"slope {self.slope:.6g} offset {self.offset:+.6g}"
        return f"{text} kappa {self.kappa:g}" if self.kind == "rh" else text

    def to_json(self) -> dict[str, Any]:
        return {
            "sensor": self.sensor,
            "quantity": self.quantity,
            "version": self.version,
            "kind": self.kind,
            "slope": self.slope,
            "offset": self.offset,
            "points": [list(p) for p in self.points],
            "kappa": self.kappa,
            "source": self.source,
            "fit": dict(self.fit),
            "effective": self.effective,
            "created": self.created,
            "note": self.note,
            "origin": self.origin,
        }

    @classmethod
    def from_args(cls, args: Mapping[str, Any], *, now: float) -> CalSet:
        """A set from the ``set_calibration`` command's arguments (see the maintainer's
        guide); ``effective`` is ISO 8601 or epoch seconds, default now."""
        allowed = {"sensor", "quantity", "kind", "slope", "offset", "points", "kappa"}
        allowed |= {"source", "fit", "effective", "note"}
        unknown = sorted(set(args) - allowed)
        if unknown:
            raise CalibrationError(f"set_calibration: unknown argument {unknown[0]!r}")
        for key in ("sensor", "quantity"):
            if not isinstance(args.get(key), str) or not args[key]:
                raise CalibrationError(f"set_calibration needs {key!r} (a string)")
        kind = args.get("kind", "points" if "points" in args else "linear")
        points: list[tuple[float, float]] = []
        raw_points = args.get("points", [])
        if not isinstance(raw_points, list):
            raise CalibrationError("set_calibration points must be [[raw, ref], ...]")
        for p in raw_points:
            if not isinstance(p, list | tuple) or len(p) != 2:
                raise CalibrationError("set_calibration points must be [[raw, ref], ...]")
            points.append((_finite("point raw", p[0]), _finite("point ref", p[1])))
        effective = args.get("effective", now)
        if isinstance(effective, str):
            effective = parse_iso(effective)
        fit = args.get("fit", {})
        if not isinstance(fit, Mapping):
            raise CalibrationError("set_calibration fit must be an object")
        kappa = args.get("kappa")
        note = args.get("note")
        return cls(
            sensor=args["sensor"],
            quantity=args["quantity"],
            kind=str(kind),
            slope=_finite("slope", args.get("slope", 1.0)),
            offset=_finite("offset", args.get("offset", 0.0)),
            points=tuple(sorted(points)),
            kappa=None if kappa is None else _finite("kappa", kappa),
            source=str(args.get("source", "colocation")),
            fit=dict(fit),
            effective=_finite("effective", effective),
            note=None if note is None else str(note),
        )


def growth_factor(rh: float, kappa: float) -> float:
    """kappa-Koehler mass growth factor C(RH) of optical PM (1 at or below 0 % RH)."""
    aw = min(max(rh, 0.0), RH_CAP) / 100.0
    if aw <= 0.0:
        return 1.0
    return 1.0 + (kappa / PARTICLE_DENSITY) / (-1.0 + 1.0 / aw)


def _piecewise(points: Sequence[tuple[float, float]], raw: float) -> float:
    if len(points) == 1:
        return raw + (points[0][1] - points[0][0])
    raws = [p[0] for p in points]
    i = min(max(bisect_right(raws, raw), 1), len(points) - 1)
    (x0, y0), (x1, y1) = points[i - 1], points[i]
    return y0 + (raw - x0) * (y1 - y0) / (x1 - x0)


def fit_linear(points: Sequence[tuple[float, float]]) -> tuple[float, float, dict[str, Any]]:
    """Least-squares ``ref = slope * raw + offset`` with n, r2, rmse and mae."""
    n = len(points)
    if n < 2:
        raise CalibrationError("a linear fit needs at least two points")
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        raise CalibrationError("a linear fit needs points at different raw values")
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    offset = my - slope * mx
    res = [y - (slope * x + offset) for x, y in zip(xs, ys, strict=True)]
    syy = sum((y - my) ** 2 for y in ys)
    sse = sum(r * r for r in res)
    stats = {
        "n": n,
        "r2": 1.0 - sse / syy if syy > 0 else 1.0,
        "rmse": math.sqrt(sse / n),
        "mae": sum(abs(r) for r in res) / n,
    }
    return slope, offset, stats


# --------------------------------------------------------------------------- the stage


class Calibrator:
    """``Sample -> Reading``: picks the set in force at the sample's time, keeps raw, value
    and version; flags readings taken during a calibration session C (and records their raw
    values for the procedure). Reloads the store when another process changed it."""

    def __init__(self, station: str, store: CalibrationStore | None = None) -> None:
        self.station = station
        self.store = store
        self._sets: dict[tuple[str, str], list[CalSet]] = {}  # highest version first
        self._sessions: list[Session] = []
        self._seen_version: int | None = None
        self._rh: tuple[float, float] | None = None  # (value, ts) of the latest valid RH
        self._session_rows: list[tuple[int, float, str, float]] = []
        self.refresh(force=True)

    def refresh(self, *, force: bool = False, now: float | None = None) -> bool:
        """Reload sets and sessions if the store changed; flush session readings."""
        if self.store is None:
            return False
        if self._session_rows:
            self.store.add_session_readings(self._session_rows)
            self._session_rows = []
        version = self.store.data_version()
        if not force and version == self._seen_version:
            return False
        self._seen_version = version
        sets: dict[tuple[str, str], list[CalSet]] = {}
        for s in self.store.sets():
            sets.setdefault((s.sensor, s.quantity), []).append(s)
        for lst in sets.values():
            lst.sort(key=lambda s: s.version, reverse=True)
        self._sets = sets
        horizon = (now or 0.0) - 86_400.0
        self._sessions = [
            s for s in self.store.sessions() if min(s.ends, s.closed or s.ends) >= horizon
        ]
        return True

    def current(self, sensor: str, quantity: str, at: float) -> CalSet | None:
        sets = self._sets.get((sensor, quantity))
        if sets:
            for s in sets:
                if s.effective <= at:
                    return s
        return None

    def apply_many(self, samples: Sequence[Sample]) -> list[Reading]:
        apply = self.apply
        if not any(s.quantity == "rh" for s in samples):
            return [apply(s) for s in samples]
        # RH first, so PM in the same poll is corrected with the humidity of that poll
        out: list[Reading | None] = [None] * len(samples)
        for i, s in enumerate(samples):
            if s.quantity == "rh":
                out[i] = r = apply(s)
                self._note_rh(r)
        return [r if r is not None else apply(s) for r, s in zip(out, samples, strict=True)]

    def _note_rh(self, r: Reading) -> None:
        if r.value is not None and r.flag.valid and (self._rh is None or r.ts >= self._rh[1]):
            self._rh = (r.value, r.ts)

    def rh_at(self, ts: float) -> float | None:
        if self._rh is None or abs(ts - self._rh[1]) > RH_MAX_AGE_S:
            return None
        return self._rh[0]

    def apply(self, s: Sample) -> Reading:
        flag, why, value, version = s.flag, s.why, s.raw, 0
        if s.raw is not None:
            cs = self.current(s.sensor, s.quantity, s.ts) if self._sets else None
            if cs is not None:
                version = cs.version
                try:
                    value = cs.value(s.raw, self.rh_at(s.ts) if cs.needs_rh else None)
                except CalibrationError as exc:
                    value, flag, why = None, Flag.FAULT, str(exc)
                else:
                    if not math.isfinite(value):
                        value, flag, why = None, Flag.FAULT, f"calibration v{version} overflowed"
            if self._sessions:
                for sess in self._sessions:
                    if sess.covers(s.sensor, s.quantity, s.ts):
                        if flag.valid:
                            flag, why = Flag.CALIBRATION, f"calibration session {sess.id}"
                            why += f" ({sess.purpose})"
                        self._session_rows.append((sess.id, s.ts, s.quantity, s.raw))
                        break
        return Reading(
            self.station, s.sensor, s.quantity, s.unit, s.ts, s.raw, value, flag, why, version
        )

"""Co-location cross-calibration of a micro station against a reference station nearby.

Over a rolling window (``colocation_days``) the hourly means of the micro station's *raw*
values (before its current calibration) are paired with the reference's hourly means
(both valid under the 45-minute rule) and with the hourly relative humidity (the micro
station's own, else the reference's). Two models are fitted — the two the gateway can
apply (``gateway/calibration.py``)::

    linear   ref = slope * raw + offset
    rh       ref = (slope * raw + offset) / C(RH, kappa),
             C = 1 + (kappa / 1.65) / (100 / RH - 1)      (kappa-Koehler, Crilley et al. 2018)

For ``rh`` the fit is linear least squares of ``ref * C`` on ``raw`` for each kappa of a
grid over 0..1, keeping the kappa with the least error. Skill is judged honestly on the
last 30 % of the window after fitting on the first 70 % (time order; in-sample only when
fewer than 3 hours are left for it); ``rh`` is kept only when it cuts that hold-out RMSE by
more than 10 %. The final coefficients are fitted on the whole window. The hold-out is
reported against the US EPA PM2.5 sensor targets (EPA/600/R-20/280): slope 1 +/- 0.35,
intercept -5..5 ug/m3, R^2 >= 0.70, RMSE <= 7 ug/m3 or NRMSE <= 30 %; ``raw_*`` is the
same evaluation of the uncorrected sensor (sensor on reference).

The coefficient set goes to the gateway as ``down/cmd`` ``set_calibration`` with args::

    {"sensor": NAME, "quantity": Q, "kind": "linear" | "rh", "slope": a, "offset": b,
     ["kappa": k,] "source": "colocation", "effective": ISO,
     "fit": {"r2", "rmse", "n", "reference", "window_start", "window_end"}}
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, Final, TypedDict

import numpy as np

from cloud.commands import Commander
from cloud.config import FusionConfig
from cloud.fusion import HOUR, Fusion, station_xy
from cloud.store.types import Calibration, Station
from protocols.errors import InputError
from protocols.timefmt import to_iso


class Targets(TypedDict):
    """Acceptance of a co-location fit: slope and intercept ranges, least R^2, and most
    RMSE (absolute, ug/m3) or NRMSE (relative to the reference mean) — either suffices."""

    slope: tuple[float, float]
    intercept: tuple[float, float]
    r2: float
    rmse: float
    nrmse: float


TARGETS: Final[Targets] = {
    "slope": (0.65, 1.35), "intercept": (-5.0, 5.0), "r2": 0.70, "rmse": 7.0, "nrmse": 0.30
}
REFERENCE_KINDS = ("reference", "high")
CALIBRATED_KINDS = ("micro", "dust")


class ColocationError(InputError):
    """Not enough paired data, or no such stations."""


def _lstsq(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    coef: np.ndarray = np.linalg.lstsq(x, y, rcond=None)[0]
    return coef


def _line(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float, float]:
    """Regress y on x: slope, intercept, R^2, RMSE(y - x)."""
    a = np.column_stack([x, np.ones_like(x)])
    slope, intercept = _lstsq(a, y)
    pred = slope * x + intercept
    ss_res = float(np.sum((y - pred) ** 2))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 0.0
    rmse = float(np.sqrt(np.mean((y - x) ** 2)))
    return float(slope), float(intercept), r2, rmse


def meets_targets(slope: float, intercept: float, r2: float, rmse: float, mean_ref: float) -> bool:
    nrmse = rmse / mean_ref if mean_ref > 0 else math.inf
    return (
        TARGETS["slope"][0] <= slope <= TARGETS["slope"][1]
        and TARGETS["intercept"][0] <= intercept <= TARGETS["intercept"][1]
        and r2 >= TARGETS["r2"]
        and (rmse <= TARGETS["rmse"] or nrmse <= TARGETS["nrmse"])
    )


RH_CAP = 99.0
KAPPAS = np.round(np.arange(0.0, 1.0001, 0.02), 2)


def growth_factor(rh: np.ndarray, kappa: float) -> np.ndarray:
    """kappa-Koehler mass growth factor of optical PM, as the gateway computes it."""
    aw = np.clip(rh, 0.0, RH_CAP) / 100.0
    with np.errstate(divide="ignore"):
        return np.where(aw <= 0, 1.0, 1.0 + (kappa / 1.65) / (-1.0 + 1.0 / np.maximum(aw, 1e-9)))


def _fit(
    raw: np.ndarray, ref: np.ndarray, rh: np.ndarray | None
) -> tuple[float, float, float | None]:
    """(slope, offset, kappa) minimising the squared error of the predicted reference."""
    a = np.column_stack([raw, np.ones_like(raw)])
    if rh is None:
        slope, offset = _lstsq(a, ref)
        return float(slope), float(offset), None
    best: tuple[float, float, float, float] | None = None
    for kappa in KAPPAS:
        c = growth_factor(rh, float(kappa))
        slope, offset = _lstsq(a, ref * c)
        err = float(np.sum(((slope * raw + offset) / c - ref) ** 2))
        if best is None or err < best[0]:
            best = (err, float(slope), float(offset), float(kappa))
    assert best is not None
    return best[1], best[2], best[3]


def _predict(
    raw: np.ndarray, rh: np.ndarray | None, fit: tuple[float, float, float | None]
) -> np.ndarray:
    slope, offset, kappa = fit
    pred = slope * raw + offset
    if kappa is not None and rh is not None:
        pred = pred / growth_factor(rh, kappa)
    return np.asarray(pred)


def _holdout(
    raw: np.ndarray, ref: np.ndarray, rh: np.ndarray | None
) -> tuple[float, np.ndarray, np.ndarray]:
    """Hold-out RMSE, predictions and truth: fit on the first 70 %, judge on the rest."""
    n = len(raw)
    cut = int(n * 0.7)
    train, test = (
        (np.arange(n), np.arange(n)) if n - cut < 3 else (np.arange(cut), np.arange(cut, n))
    )
    sub = None if rh is None else rh[train]
    fit = _fit(raw[train], ref[train], sub)
    pred = _predict(raw[test], None if rh is None else rh[test], fit)
    return float(np.sqrt(np.mean((pred - ref[test]) ** 2))), pred, ref[test]


def colocate(
    fusion: Fusion,
    station: str,
    reference: str,
    quantity: str,
    end: float,
    *,
    cfg: FusionConfig | None = None,
    now: float | None = None,
) -> Calibration:
    """Fit ``station``'s raw ``quantity`` to ``reference`` over the window ending at ``end``."""
    cfg = cfg or fusion.cfg
    end = math.floor(end / HOUR) * HOUR
    since = end - cfg.colocation_days * 86400
    mine = {m.start: m for m in fusion.means(station, quantity, since, end) if m.valid}
    refs = {m.start: m for m in fusion.means(reference, quantity, since, end) if m.valid}
    rh: dict[float, float] = {}
    if cfg.colocation_rh:
        for src in (reference, station):  # the station's own RH wins
            for m in fusion.means(src, "rh", since, end):
                if m.valid and m.value is not None:
                    rh[m.start] = m.value
    hours = sorted(h for h in mine if h in refs)
    pairs = [
        (mine[h].raw if mine[h].raw is not None else mine[h].value, refs[h].value, rh.get(h))
        for h in hours
    ]
    pairs = [p for p in pairs if p[0] is not None and p[1] is not None]
    if len(pairs) < cfg.colocation_min_hours:
        raise ColocationError(
            f"{station} vs {reference} ({quantity}): {len(pairs)} valid paired hours, "
            f"need {cfg.colocation_min_hours}",
            station=station,
        )
    raw = np.array([p[0] for p in pairs], dtype=float)
    ref = np.array([p[1] for p in pairs], dtype=float)
    raw_slope, raw_intercept, raw_r2, raw_rmse = _line(ref, raw)  # the sensor as it is
    rmse, pred, truth = _holdout(raw, ref, None)
    rh_arr = None
    if cfg.colocation_rh and all(p[2] is not None for p in pairs):
        with_rh = np.array([p[2] for p in pairs], dtype=float)
        rmse_rh, pred_rh, truth_rh = _holdout(raw, ref, with_rh)
        if rmse_rh < 0.9 * rmse:
            rh_arr, pred, truth = with_rh, pred_rh, truth_rh
    slope, offset, kappa = _fit(raw, ref, rh_arr)
    ev_slope, ev_intercept, ev_r2, ev_rmse = _line(truth, pred)  # corrected vs reference
    latest = fusion.store.latest_readings(station, quantity, limit=1)
    sensor = latest[0].sensor if latest else None
    return Calibration(
        station=station,
        quantity=quantity,
        reference=reference,
        window_start=since,
        window_end=end,
        n=len(pairs),
        slope=slope,
        offset=offset,
        kappa=kappa,
        r2=ev_r2,
        rmse=ev_rmse,
        raw_slope=raw_slope,
        raw_intercept=raw_intercept,
        raw_r2=raw_r2,
        raw_rmse=raw_rmse,
        meets_targets=meets_targets(ev_slope, ev_intercept, ev_r2, ev_rmse, float(truth.mean())),
        created=end if now is None else now,
        sensor=sensor,
    )


def calibration_args(cal: Calibration, effective: float) -> dict[str, Any]:
    """The ``set_calibration`` command's args for a fit (see the module docstring)."""
    if cal.sensor is None:
        raise ColocationError(f"{cal.station}: no sensor name on its {cal.quantity} readings")
    args: dict[str, Any] = {
        "sensor": cal.sensor,
        "quantity": cal.quantity,
        "kind": "linear" if cal.kappa is None else "rh",
        "slope": cal.slope,
        "offset": cal.offset,
        "source": "colocation",
        "fit": {
            "r2": round(cal.r2, 4),
            "rmse": round(cal.rmse, 4),
            "n": cal.n,
            "reference": cal.reference,
            "window_start": to_iso(cal.window_start, ms=False),
            "window_end": to_iso(cal.window_end, ms=False),
        },
        "effective": to_iso(effective, ms=False),
    }
    if cal.kappa is not None:
        args["kappa"] = cal.kappa
    return args


def push(commander: Commander, cal: Calibration, now: float) -> Calibration:
    """Send the fit to the station's gateway; record the command against the calibration."""
    rec = commander.send(cal.station, "set_calibration", calibration_args(cal, now))
    if cal.seq is not None:
        commander.store.set_calibration_command(cal.seq, rec.id)
    return replace(cal, command_id=rec.id)


def pairs(stations: list[Station], fusion: Fusion, radius_m: float) -> list[tuple[str, str]]:
    """(micro station, nearest reference within ``radius_m``) for every confirmed micro."""
    origin = fusion.origin
    refs = [
        (s, station_xy(s, origin))
        for s in stations
        if s.kind in REFERENCE_KINDS and s.status == "confirmed"
    ]
    out = []
    for s in stations:
        if s.kind not in CALIBRATED_KINDS or s.status != "confirmed":
            continue
        xy = station_xy(s, origin)
        if xy is None:
            continue
        best = min(
            ((math.hypot(xy[0] - r[0], xy[1] - r[1]), ref.id) for ref, r in refs if r is not None),
            default=None,
        )
        if best is not None and best[0] <= radius_m:
            out.append((s.id, best[1]))
    return out

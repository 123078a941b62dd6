"""Files of the inversion (DESIGN 4.3): OBS.csv, MET.csv and SITES.csv in, RESULT.json, the
gridded inventory (CSV or NPZ) and a PNG map out.

Readers check every row and stop at the first bad one with an ``InputError`` whose
one-line message names the file, the line and the column (``OBS.csv:17: column 'value':
'abc' is not a number``). Columns beyond the contract are allowed; the readers use these
when present: OBS ``kind`` (reference | micro | dust | met); MET ``sigma_theta_deg``,
``mixing_height_m``, ``obukhov_m``, ``cloud_okta``. Times are ISO 8601 at the start of an
hour; a time without an offset is taken as UTC, one with an offset is converted.
The same checks apply to rows handed over as dicts (``obs_from_dicts`` and friends), so
the hourly job and the twin benches validate exactly as the command line does.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cloud.inversion_types import (
    SITE_KINDS,
    STATION_KINDS,
    Inventory,
    InversionResult,
    MetRow,
    ObsRow,
    SiteRow,
)
from protocols.errors import InputError
from protocols.timefmt import parse_iso, to_iso

OBS_REQUIRED = ("time", "station", "x_m", "y_m", "z_m", "value")
MET_REQUIRED = ("time", "wind_speed_ms", "wind_dir_deg")
SITES_REQUIRED = ("site", "x_m", "y_m", "kind")


class _Rows:
    """Cells of one source (file or list of dicts) with ``where`` for error messages."""

    def __init__(self, name: str, rows: Iterable[tuple[int, Mapping[str, Any]]],
                 header: Sequence[str], required: Sequence[str]) -> None:
        self.name = name
        self.rows = rows
        self.header = [h.strip() for h in header]
        missing = [c for c in required if c not in self.header]
        if missing:
            raise InputError(f"{name}: missing column(s) {', '.join(missing)}",
                             file=name, column=missing[0])

    def fail(self, line: int, column: str, reason: str) -> InputError:
        return InputError(f"{self.name}:{line}: column '{column}': {reason}",
                          file=self.name, line=line, column=column)

    def text(self, line: int, row: Mapping[str, Any], col: str, *, required: bool = True) -> str:
        v = row.get(col)
        s = "" if v is None else str(v).strip()
        if required and not s:
            raise self.fail(line, col, "is empty")
        return s

    def number(self, line: int, row: Mapping[str, Any], col: str, *, required: bool = True,
               low: float = -math.inf, high: float = math.inf) -> float | None:
        s = self.text(line, row, col, required=required)
        if not s:
            return None
        try:
            v = float(s)
        except ValueError:
            raise self.fail(line, col, f"{s!r} is not a number") from None
        if not math.isfinite(v):
            raise self.fail(line, col, f"{s!r} is not a finite number")
        if not low <= v <= high:
            raise self.fail(line, col, f"{s} is outside {low:g}..{high:g}")
        return v

    def time(self, line: int, row: Mapping[str, Any], col: str = "time") -> int:
        s = self.text(line, row, col)
        try:
            epoch = parse_iso(s)
        except InputError:
            raise self.fail(line, col, f"{s!r} is not an ISO 8601 time") from None
        if epoch % 3600 != 0:
            raise self.fail(line, col, f"{s!r} is not the start of an hour")
        return int(epoch)


def _read_csv(path: Path, required: Sequence[str]) -> _Rows:
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"{name}: no such file", file=name) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{name}: cannot read: {exc}", file=name) from None
    reader = csv.reader(text.splitlines())
    try:
        header = next(reader)
    except StopIteration:
        raise InputError(f"{name}: the file is empty", file=name) from None
    except csv.Error as exc:
        raise InputError(f"{name}:1: {exc}", file=name, line=1) from None
    header = [h.strip() for h in header]

    def rows() -> Iterable[tuple[int, Mapping[str, Any]]]:
        try:
            for cells in reader:
                if not any(c.strip() for c in cells):
                    continue
                if len(cells) > len(header):
                    raise InputError(
                        f"{name}:{reader.line_num}: {len(cells)} cells for {len(header)} columns",
                        file=name, line=reader.line_num)
                yield reader.line_num, dict(zip(header, cells, strict=False))
        except csv.Error as exc:
            raise InputError(f"{name}:{reader.line_num}: {exc}", file=name,
                             line=reader.line_num) from None

    return _Rows(name, rows(), header, required)


def _dict_rows(name: str, rows: Sequence[Mapping[str, Any]], required: Sequence[str]) -> _Rows:
    header = list(rows[0]) if rows else list(required)
    return _Rows(name, ((i + 2, r) for i, r in enumerate(rows)), header, required)


def _parse_obs(src: _Rows) -> list[ObsRow]:
    out: list[ObsRow] = []
    seen: dict[tuple[int, str], int] = {}
    for line, row in src.rows:
        t = src.time(line, row)
        station = src.text(line, row, "station")
        kind = src.text(line, row, "kind", required=False) or None
        if kind is not None and kind not in STATION_KINDS:
            raise src.fail(line, "kind", f"{kind!r} is not one of {', '.join(STATION_KINDS)}")
        if (t, station) in seen:
            raise src.fail(line, "station", f"{station!r} already has a value for this hour "
                           f"(line {seen[t, station]})")
        seen[t, station] = line
        out.append(ObsRow(
            time=t, station=station,
            x_m=src.number(line, row, "x_m"),  # type: ignore[arg-type]
            y_m=src.number(line, row, "y_m"),  # type: ignore[arg-type]
            z_m=src.number(line, row, "z_m", low=0.0, high=1000.0),  # type: ignore[arg-type]
            value=src.number(line, row, "value", low=-1e6, high=1e7),  # type: ignore[arg-type]
            sigma=src.number(line, row, "sigma", required=False, low=1e-9),
            kind=kind))
    if not out:
        raise InputError(f"{src.name}: no observations", file=src.name)
    return out


def _parse_met(src: _Rows) -> list[MetRow]:
    out: list[MetRow] = []
    seen: dict[int, int] = {}
    for line, row in src.rows:
        t = src.time(line, row)
        if t in seen:
            raise src.fail(line, "time", f"hour already given (line {seen[t]})")
        seen[t] = line
        stab = src.text(line, row, "stability", required=False).upper() or None
        if stab is not None and stab not in ("A", "B", "C", "D", "E", "F"):
            raise src.fail(line, "stability", f"{stab!r} is not a Pasquill class A-F")
        out.append(MetRow(
            time=t,
            wind_speed_ms=src.number(line, row, "wind_speed_ms", low=0.0, high=75.0),  # type: ignore[arg-type]
            wind_dir_deg=src.number(line, row, "wind_dir_deg", low=0.0, high=360.0) % 360.0,  # type: ignore[operator]
            stability=stab,
            sigma_theta_deg=src.number(line, row, "sigma_theta_deg", required=False,
                                       low=0.0, high=180.0),
            mixing_height_m=src.number(line, row, "mixing_height_m", required=False,
                                       low=1.0, high=10000.0),
            obukhov_m=src.number(line, row, "obukhov_m", required=False),
            cloud_okta=src.number(line, row, "cloud_okta", required=False, low=0.0, high=8.0)))
    if not out:
        raise InputError(f"{src.name}: no meteorology", file=src.name)
    return out


def _parse_sites(src: _Rows) -> list[SiteRow]:
    out: list[SiteRow] = []
    seen: dict[str, int] = {}
    for line, row in src.rows:
        site = src.text(line, row, "site")
        if site in seen:
            raise src.fail(line, "site", f"{site!r} already listed (line {seen[site]})")
        seen[site] = line
        kind = src.text(line, row, "kind")
        if kind not in SITE_KINDS:
            raise src.fail(line, "kind", f"{kind!r} is not one of {', '.join(SITE_KINDS)}")
        out.append(SiteRow(
            site=site,
            x_m=src.number(line, row, "x_m"),  # type: ignore[arg-type]
            y_m=src.number(line, row, "y_m"),  # type: ignore[arg-type]
            h_m=src.number(line, row, "h_m", required=False, low=0.0, high=500.0),
            kind=kind))
    return out


def read_obs(path: Path) -> list[ObsRow]:
    return _parse_obs(_read_csv(path, OBS_REQUIRED))


def read_met(path: Path) -> list[MetRow]:
    return _parse_met(_read_csv(path, MET_REQUIRED))


def read_sites(path: Path) -> list[SiteRow]:
    return _parse_sites(_read_csv(path, SITES_REQUIRED))


def obs_from_dicts(rows: Sequence[Mapping[str, Any]], name: str = "obs") -> list[ObsRow]:
    return _parse_obs(_dict_rows(name, rows, OBS_REQUIRED))


def met_from_dicts(rows: Sequence[Mapping[str, Any]], name: str = "met") -> list[MetRow]:
    return _parse_met(_dict_rows(name, rows, MET_REQUIRED))


def sites_from_dicts(rows: Sequence[Mapping[str, Any]], name: str = "sites") -> list[SiteRow]:
    return _parse_sites(_dict_rows(name, rows, SITES_REQUIRED))


def parse_domain(text: str) -> tuple[float, float, float, float]:
    """``X0,Y0,X1,Y1`` in metres -> a tuple; a one-line ``InputError`` when malformed."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        vals = [float(p) for p in parts]
    except ValueError:
        vals = []
    if len(vals) != 4 or not all(math.isfinite(v) for v in vals):
        raise InputError(f"--domain {text!r} is not X0,Y0,X1,Y1 (four numbers, metres)")
    x0, y0, x1, y1 = vals
    if x1 <= x0 or y1 <= y0:
        raise InputError(f"--domain {text!r}: X1 must exceed X0 and Y1 exceed Y0")
    return x0, y0, x1, y1


def iso(t: int) -> str:
    return to_iso(t, ms=False)


def result_json(result: InversionResult, **extra: Any) -> dict[str, Any]:
    """RESULT.json's content: the contract's keys first, then the extras."""
    x0, y0, x1, y1, cell = result.grid
    out: dict[str, Any] = {
        "sources": [s.to_json() for s in result.sources],
        "background_ug_m3": round(result.background_ug_m3, 3),
        "residual_rms_ug_m3": round(result.residual_rms_ug_m3, 3),
        "method": "gaussian-plume likelihood scan + greedy sources (BIC), Bayesian inventory",
        "background_by_hour": [{"time": iso(t), "background_ug_m3": round(b, 3)}
                               for t, b in result.background_by_hour],
        "gradient_ug_m3_per_km": [round(g, 4) for g in result.gradient_ug_m3_per_km],
        "hours_used": [iso(t) for t in result.hours_used],
        "calm_hours": [iso(t) for t in result.calm_hours],
        "hours_without_met": [iso(t) for t in result.hours_without_met],
        "stability": [{"time": iso(t), "class": c, "from": how}
                      for t, c, how in result.stability_by_hour],
        "n_obs": result.n_obs,
        "noise_scale": round(result.noise_scale, 4),
        "grid": {"x0": x0, "y0": y0, "x1": x1, "y1": y1, "cell_m": cell},
        "warnings": list(result.warnings),
    }
    out.update(extra)
    return out


def _atomic_write(path: Path, data: bytes) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise InputError(f"{path}: cannot write: {exc.strerror or exc}", file=str(path)) from None


def write_result(path: Path, result: InversionResult, **extra: Any) -> None:
    text = json.dumps(result_json(result, **extra), indent=2, sort_keys=False) + "\n"
    _atomic_write(path, text.encode())


def write_inventory(path: Path, inv: Inventory) -> None:
    """The inventory grid: ``.npz`` (arrays) or CSV (one row per cell, cell centres)."""
    path = Path(path)
    if path.suffix.lower() == ".npz":
        import io

        buf = io.BytesIO()
        np.savez_compressed(buf, mean_g_s=inv.mean, sigma_g_s=inv.sigma,
                            prior_mean_g_s=inv.prior_mean, prior_sigma_g_s=inv.prior_sigma,
                            x0=inv.x0, y0=inv.y0, cell_m=inv.cell)
        _atomic_write(path, buf.getvalue())
        return
    lines = ["x_m,y_m,rate_g_s,sigma_g_s,prior_g_s,prior_sigma_g_s"]
    for j in range(inv.ny):
        for i in range(inv.nx):
            lines.append(
                f"{inv.x0 + (i + 0.5) * inv.cell:.1f},{inv.y0 + (j + 0.5) * inv.cell:.1f},"
                f"{inv.mean[j, i]:.6g},{inv.sigma[j, i]:.6g},"
                f"{inv.prior_mean[j, i]:.6g},{inv.prior_sigma[j, i]:.6g}")
    _atomic_write(path, ("\n".join(lines) + "\n").encode())


def read_inventory_csv(path: Path) -> list[dict[str, float]]:
    """The inventory CSV back as rows of floats (for tools and tests)."""
    with Path(path).open(newline="") as fh:
        return [{k: float(v) for k, v in r.items()} for r in csv.DictReader(fh)]

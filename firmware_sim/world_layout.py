"""Where things are in a generated district: stations, registered sites, hidden sources.

The ambient network (reference, micro and met stations) sits on a jittered square grid at
``spacing_m`` (one station per grid square, placed within +-30 % of the square's centre),
as city networks are planned; construction-site dust monitors stand at their sites' fence
lines (40-80 m from the site's registered point). Sites are spread uniformly. Emitting
sources sit on registered sites of the requested kinds (within 40 m of the registered
point, which is the site's centroid, not its dustiest corner) unless ``off_registry`` asks
for some that are on no register; all keep ``source_margin_m`` from the domain's edge.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from firmware_sim.world_fields import key
from protocols.errors import InputError

INLET_M = {"reference": 12.0, "micro": 4.0, "dust": 3.0, "met": 10.0}
_PREFIX = {"reference": "R", "micro": "M", "dust": "D", "met": "W"}
DEFAULT_KINDS = {"reference": 0.1, "micro": 0.6, "dust": 0.25, "met": 0.05}
DEFAULT_SITE_KINDS = {"construction": 0.35, "industrial": 0.4, "restaurant": 0.25}
_SITE_PREFIX = {"construction": "C", "industrial": "I", "restaurant": "F", "traffic": "T",
                "other": "O"}
_PROFILE = {"construction": "workday", "industrial": "constant", "restaurant": "meals",
            "traffic": "traffic", "other": "constant"}
# PM10 rate range (g/s) and release height range (m) of a source by kind
_RATE = {"construction": (0.4, 1.6), "industrial": (0.5, 2.5), "restaurant": (0.05, 0.3),
         "traffic": (0.2, 0.8), "other": (0.2, 1.0)}
_HEIGHT = {"construction": (1.0, 4.0), "industrial": (15.0, 40.0), "restaurant": (8.0, 15.0),
           "traffic": (0.5, 1.5), "other": (1.0, 5.0)}


@dataclass(frozen=True)
class StationSpot:
    id: str
    kind: str
    x_m: float
    y_m: float
    z_m: float


@dataclass(frozen=True)
class Layout:
    domain: tuple[float, float, float, float]
    stations: tuple[StationSpot, ...]
    sites: tuple[tuple[str, str, float, float, float], ...]
    sources: tuple[dict[str, Any], ...]


def _counts(fracs: dict[str, float], n: int) -> dict[str, int]:
    total = sum(fracs.values())
    counts = {k: round(n * v / total) for k, v in fracs.items()}
    first = max(fracs, key=lambda k: fracs[k])
    counts[first] += n - sum(counts.values())
    return counts


def build_layout(
    seed: int,
    *,
    n_stations: int | None = None,
    spacing_m: float = 550.0,
    domain: tuple[float, float, float, float] | None = None,
    kinds: dict[str, float] | None = None,
    dust_at_sites: bool = True,
    sites_per_km2: float = 6.0,
    site_kinds: dict[str, float] | None = None,
    n_sources: int = 1,
    source_kinds: tuple[str, ...] = ("construction",),
    off_registry: int = 0,
    source_margin_m: float | None = None,
    rate_range_g_s: tuple[float, float] | None = None,
    stations: list[dict[str, Any]] | None = None,
    sources: list[dict[str, Any]] | None = None,
) -> Layout:
    """Lay out a district (see the module docstring). ``rate_range_g_s`` overrides the
    per-kind PM10 rate range of generated sources. ``stations`` / ``sources`` given as
    dicts replace the generated ones (for hand-checkable worlds)."""
    rng = np.random.default_rng(key(seed, "layout"))
    kinds = dict(kinds or DEFAULT_KINDS)
    unknown = set(kinds) - set(INLET_M)
    if unknown:
        raise InputError(f"unknown station kinds {sorted(unknown)}")
    dust_frac = kinds.get("dust", 0.0) / sum(kinds.values()) if dust_at_sites else 0.0
    grid_kinds = {k: v for k, v in kinds.items() if not (dust_at_sites and k == "dust")}
    if domain is None:
        n_total = 64 if n_stations is None else int(n_stations)
        n_grid = max(1, n_total - round(n_total * dust_frac))
        side = math.ceil(math.sqrt(n_grid))
        domain = (0.0, 0.0, side * spacing_m, side * spacing_m)
        nx = ny = side
    else:
        width, height = domain[2] - domain[0], domain[3] - domain[1]
        if width <= 0 or height <= 0:
            raise InputError(f"domain {domain} has no area")
        if n_stations is None:
            nx, ny = max(1, round(width / spacing_m)), max(1, round(height / spacing_m))
            n_grid = nx * ny
            n_total = round(n_grid / (1.0 - dust_frac))
        else:
            n_total = int(n_stations)
            n_grid = max(1, n_total - round(n_total * dust_frac))
            spacing_m = math.sqrt(width * height / n_grid)
            nx, ny = max(1, round(width / spacing_m)), max(1, round(height / spacing_m))
            while nx * ny < n_grid:
                nx += 1
    x0, y0, x1, y1 = (float(v) for v in domain)
    dx, dy = (x1 - x0) / nx, (y1 - y0) / ny

    # registered sites
    area_km2 = (x1 - x0) * (y1 - y0) / 1e6
    site_counts = _counts(site_kinds or DEFAULT_SITE_KINDS, round(sites_per_km2 * area_km2))
    site_list: list[tuple[str, str, float, float, float]] = []
    for kind, count in site_counts.items():
        lo, hi = _HEIGHT[kind]
        for i in range(count):
            site_list.append((f"{_SITE_PREFIX[kind]}-{i + 1:03d}", kind,
                              round(float(rng.uniform(x0, x1)), 1),
                              round(float(rng.uniform(y0, y1)), 1),
                              round(float(rng.uniform(lo, hi)), 1)))

    # stations
    spots: list[StationSpot] = []
    if stations is not None:
        spots = [StationSpot(s["id"], s["kind"], float(s["x_m"]), float(s["y_m"]),
                             float(s.get("z_m", INLET_M[s["kind"]]))) for s in stations]
    else:
        cells = rng.permutation(nx * ny)[:n_grid]
        counts = _counts(grid_kinds, n_grid)
        assigned = [k for k, c in counts.items() for _ in range(c)]
        order = rng.permutation(len(assigned))
        numbers: dict[str, int] = {}
        for cell, j in zip(sorted(cells), order, strict=True):
            kind = assigned[j]
            cx, cy = x0 + (cell % nx + 0.5) * dx, y0 + (cell // nx + 0.5) * dy
            px = cx + float(rng.uniform(-0.3, 0.3)) * dx
            py = cy + float(rng.uniform(-0.3, 0.3)) * dy
            numbers[kind] = numbers.get(kind, 0) + 1
            spots.append(StationSpot(f"GX-{_PREFIX[kind]}-{numbers[kind]:03d}", kind,
                                     round(px, 1), round(py, 1), INLET_M[kind]))

    # hidden sources
    margin = 0.75 * spacing_m if source_margin_m is None else float(source_margin_m)
    if 2 * margin >= min(x1 - x0, y1 - y0):
        margin = 0.25 * min(x1 - x0, y1 - y0)
    found: list[dict[str, Any]] = []
    if sources is not None:
        found = [dict({"profile": "constant", "site": None, "kind": "other"}, **s) for s in sources]
    used: set[str] = set()
    for i in range(0 if sources is not None else n_sources):
        kind = source_kinds[i % len(source_kinds)]
        lo, hi = _RATE[kind] if rate_range_g_s is None else rate_range_g_s
        rate = float(rng.uniform(lo, hi))
        hlo, hhi = _HEIGHT[kind]
        inside = [s for s in site_list if s[1] == kind and s[0] not in used
                  and x0 + margin <= s[2] <= x1 - margin and y0 + margin <= s[3] <= y1 - margin]
        on_registry = i < n_sources - int(off_registry) and inside
        if on_registry:
            site = inside[int(rng.integers(len(inside)))]
            used.add(site[0])
            ang, r = rng.uniform(0, 2 * math.pi), 40.0 * math.sqrt(rng.uniform())
            x, y = site[2] + r * math.sin(ang), site[3] + r * math.cos(ang)
            h, sid = site[4], site[0]
        else:
            x = float(rng.uniform(x0 + margin, x1 - margin))
            y = float(rng.uniform(y0 + margin, y1 - margin))
            h, sid = float(rng.uniform(hlo, hhi)), None
        found.append({"x_m": round(float(x), 1), "y_m": round(float(y), 1), "h_m": round(h, 1),
                      "rate_g_s": round(rate, 3), "profile": _PROFILE[kind], "site": sid,
                      "kind": kind})
    # construction-site dust monitors: at the emitting sites first, as in a district where
    # every site must run one
    if stations is None and dust_at_sites:
        emitting = [f["site"] for f in found if f["site"]]
        building = [s for s in site_list if s[1] == "construction"]
        building.sort(key=lambda s: (s[0] not in emitting, emitting.index(s[0])
                                     if s[0] in emitting else 0))
        rest = building[len([b for b in building if b[0] in emitting]):]
        monitored = [building[i] for i in range(len(building) - len(rest))]
        monitored += [rest[i] for i in rng.permutation(len(rest))]
        for i, (_, _, sx, sy, _) in enumerate(monitored[: max(0, n_total - n_grid)]):
            ang, r = rng.uniform(0, 2 * math.pi), rng.uniform(40.0, 80.0)
            spots.append(StationSpot(
                f"GX-D-{i + 1:03d}", "dust",
                round(float(np.clip(sx + r * math.sin(ang), x0, x1)), 1),
                round(float(np.clip(sy + r * math.cos(ang), y0, y1)), 1), INLET_M["dust"]))
    spots.sort(key=lambda s: s.id)
    return Layout((x0, y0, x1, y1), tuple(spots), tuple(site_list), tuple(found))

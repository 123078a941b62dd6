"""Oracle statistics for the twin experiments: how much evidence a window holds for its
true source, measured the way the inversion's detector measures it.

For each twin (the same worlds, windows and configuration as ``bench/inversion_twins.py``)
this rebuilds the inversion's window (H blocks, error model, station offsets taken against
the no-source fit) and computes the detection statistic -- ``(cost(no source) -
cost(source)) / s2``, ``cost`` -2 log marginal likelihood, ``s2`` the fit's reduced
chi-square, as ``cloud.inversion._locate`` does -- for:

* ``scan``: the detector's own first search (best cell of the exact refit shortlist);
* ``cell``: the cell that holds the true source (the inversion's H column, best rates);
* ``point``: a small volume source at the true position (the refinement's columns);
* ``point_true_rate``: the same column with the true hourly rates given (no rate fitted);
* ``truth_physics``: the column the twin generator's physics gives (minute-by-minute
  plumes with meander and the true class, hourly means, per unit window-mean rate), its
  rates fitted as the inversion fits rates; ``truth_physics_true_rate`` with the true
  hourly rates given (the signal known exactly), both under the inversion's error model;
* ``ideal_lambda``: the non-centrality ``s' P s`` of the true signal under the generator's
  own hourly noise (white, by kind) with every hour's background and gradient and every
  station's constant offset projected out -- the expected statistic of a matched filter
  that knows the signal's shape is ``1 + ideal_lambda``; ``ideal_stat`` its realised value
  on the window's data, ``ideal_stat_without_source`` on the same data with the source's
  contribution taken off, ``ideal_noise_scale`` the reduced chi-square of those source-free
  data under that noise model (about 1: the white noise is the noise that matters).

With ``--ideal-scan`` the matched filter scans every cell instead (columns: the
inversion's H, and with ``--physics-step N`` also the generator's plume physics for a
source at each cell centre, every N-th minute: slow), on the window's data and on the
same data without the source (a null window): ``<columns>_y`` the best cell's statistic,
``<columns>_y_dist_m`` its distance from the truth, ``<columns>_y_without_source``.

Plus the twin's true rate, distance from the source to the nearest station, its largest
true hourly enhancement at a station, and whether the inversion (run as the bench runs
it) placed it within 250 m. In ``null`` windows only ``scan`` is computed.

    python bench/inversion_oracle.py [--twins 100] [--seed 1000] [--scenario single]
        [--seeds 1013,2080] [--misses-only] [--ideal-scan [--physics-step 3]]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import emit
from bench.inversion_twins import SCENARIOS, make_twin
from cloud.inversion import (
    _cell_heights,
    _hour_mets,
    _log_prior,
    _scaled,
    _shortlist,
    _threshold,
    _Window,
    invert,
)
from cloud.inversion_matrix import Grid, MatrixCache
from cloud.inversion_scan import Scanner, Stack, profile
from firmware_sim.world import World
from firmware_sim.world_sensors import SPECS


def _cost_fixed(st: Stack, src: np.ndarray, f: float) -> tuple[float, float]:
    """(cost, chi2) of the model with the sources' prediction ``src`` given outright:
    the hourly background and gradient fitted at weights 1 / (sigma^2 + (f src)^2)."""
    s2 = st.sigma**2 + (f * src) ** 2
    w = 1.0 / s2
    a = st.design()
    r = st.y - src
    prior = st.nuisance_prior() + 1e-9 * np.eye(a.shape[1])
    chi2 = 0.0
    for t in range(st.n_hours):
        lo, hi = st.off[t], st.off[t + 1]
        at, wt, rt = a[lo:hi], w[lo:hi], r[lo:hi]
        m = (at * wt[:, None]).T @ at + prior
        beta = np.linalg.solve(m, (at * wt[:, None]).T @ rt)
        res = rt - at @ beta
        chi2 += float(np.sum(wt * res**2) + beta @ st.nuisance_prior() @ beta)
    return chi2 + float(np.sum(np.log(s2))), chi2


def _ideal_design(st: Stack, station_ids: list[str]) -> np.ndarray:
    """The ideal detector's nuisance columns: each hour's background and gradient, and a
    constant offset per station (one station's left out: with the hourly backgrounds it
    would make the design singular)."""
    a_h = st.design()
    hours = st.hour_index()
    blocks = [a_h * (hours == t)[:, None] for t in range(st.n_hours)]
    ids = np.array(station_ids)
    blocks.append(np.column_stack([(ids == s).astype(float)
                                   for s in sorted(set(station_ids))[1:]]))
    return np.hstack(blocks)


def _ideal(st: Stack, signal: np.ndarray, sd: np.ndarray, station_ids: list[str]
           ) -> tuple[float, float]:
    """(non-centrality, realised statistic) of a matched filter for ``signal`` under white
    noise ``sd``, with per-hour background + gradient and per-station offsets as nuisance."""
    a = _ideal_design(st, station_ids)
    w = 1.0 / sd**2
    sw = np.sqrt(w)
    q, _ = np.linalg.qr(a * sw[:, None])
    def proj(v: np.ndarray) -> np.ndarray:
        v = v * sw
        return v - q @ (q.T @ v)
    ps = proj(signal)
    lam = float(ps @ ps)
    if lam <= 0:
        return 0.0, 0.0
    py = proj(st.y)
    amp = float(ps @ py) / lam
    return lam, float(max(amp, 0.0) ** 2 * lam)


def _physics_columns(world: World, hours: list[int], grid: Grid, h_m: float,
                     step: int = 1) -> np.ndarray:
    """The generator's physics for a unit source at every cell centre: hourly means of
    minute plumes (every ``step``-th minute), (T, n_stations, J)."""
    from firmware_sim import truth as physics

    cx, cy = grid.centres()
    xy = np.column_stack([cx, cy])
    hgt = np.full(cx.size, h_m)
    ones = np.ones(cx.size)
    out = np.zeros((len(hours), len(world.stations), cx.size))
    for t, h in enumerate(hours):
        minutes = np.arange(h // 60, h // 60 + 60, step)
        sp, dr = world.weather.minute_wind(minutes)
        cls_ = world._hour(h)[2]
        for i, m in enumerate(minutes):
            out[t] += physics.plume_minute(
                ones, xy, hgt, world._rec, wind_speed=float(sp[i]),
                wind_from_deg=float(dr[i]), stability=cls_, sigma_set=world.sigma_set,
                mixing_height=float(world.weather.mixing_height_m(m * 60.0)))
        out[t] /= len(minutes)
    return out


def _ideal_scan(st: Stack, cols: np.ndarray, y: np.ndarray, sd: np.ndarray,
                station_ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Matched-filter statistic of every column (n, J) on data ``y``: white noise ``sd``,
    per-hour background + gradient and per-station offsets projected out, one amplitude
    >= 0 per column. Returns (stat, lambda) per column."""
    a = _ideal_design(st, station_ids)
    sw = 1.0 / sd
    q, _ = np.linalg.qr(a * sw[:, None])
    pc = cols * sw[:, None]
    pc -= q @ (q.T @ pc)
    py = y * sw
    py -= q @ (q.T @ py)
    lam = np.einsum("nj,nj->j", pc, pc)
    num = np.maximum(pc.T @ py, 0.0)
    stat = np.where(lam > 1e-9, num**2 / np.maximum(lam, 1e-30), 0.0)
    return stat, lam


def _noise_scale(st: Stack, y: np.ndarray, sd: np.ndarray, station_ids: list[str]) -> float:
    """Reduced chi-square of ``y`` against white noise ``sd`` after the ideal nuisance
    (hourly background + gradient, station offsets) is projected out."""
    a = _ideal_design(st, station_ids) / sd[:, None]
    q, _ = np.linalg.qr(a)
    rank = a.shape[1]
    r = y / sd
    r = r - q @ (q.T @ r)
    return float(r @ r) / max(1, st.n - rank)


def ideal_scan(seed: int, scenario: str, physics_step: int = 0) -> dict[str, Any]:
    """A scan by an idealised detector over every cell: the generator's physics (or the
    inversion's H) as columns, the generator's white noise by kind as the error model,
    constant rate, station offsets and hourly background + gradient as nuisance. In a
    single-source window the data are scanned twice: as they are, and with the source's
    own contribution taken off (the same window's noise alone: a null window)."""
    world, hours, obs, met, cfg = make_twin(seed, scenario)
    grid = Grid(*world.domain, cell=cfg.cell_m)
    mets, _, _, _ = _hour_mets(sorted({r.time for r in obs}), met, cfg)
    win = _Window(obs, mets, grid, _cell_heights(grid, (), cfg), cfg, MatrixCache())
    st = win.stack
    hidx = st.hour_index()
    index = {s.id: i for i, s in enumerate(world.stations)}
    rows = np.array([index[sid] for sid in win.station_ids])
    kinds = {s.id: s.kind for s in world.stations}
    sd = np.array([math.hypot(SPECS[kinds[sid]].fused_noise_abs,
                              SPECS[kinds[sid]].fused_noise_rel * max(v, 0.0))
                   for sid, v in zip(win.station_ids, st.y, strict=True)])
    variants = [("inversion_H", st.columns(np.arange(st.n_cells)))]
    if physics_step:
        variants.append(("physics", _physics_columns(world, win.hours, grid, cfg.release_height_m,
                                                     physics_step)[hidx, rows, :]))
    cx, cy = grid.centres()
    out: dict[str, Any] = {"seed": seed}
    truth = world.truth(hours)
    data = {"y": st.y}
    if truth:
        minutes = np.concatenate([np.arange(h // 60, h // 60 + 60) for h in win.hours])
        plumes = world._plumes(minutes)[:, :, 0].reshape(len(win.hours), 60, -1).mean(axis=1)
        from firmware_sim.world_fields import key, normals

        slope = np.array([1.0 + SPECS[kinds[sid]].fused_slope_sd
                          * float(normals(key(world.seed, "fused", sid, "pm10"), np.arange(2))[0])
                          for sid in win.station_ids])
        data["y_without_source"] = st.y - slope * plumes[hidx, rows]
    for name, cols in variants:
        for dname, y in data.items():
            stat, _ = _ideal_scan(st, cols, y, sd, win.station_ids)
            j = int(np.argmax(stat))
            tag = f"{name}_{dname}"
            out[tag] = round(float(stat[j]), 2)
            if truth and dname == "y":
                out[tag + "_dist_m"] = round(math.hypot(cx[j] - truth[0].x_m,
                                                        cy[j] - truth[0].y_m), 1)
    return out


def analyse(seed: int, scenario: str, run_inversion: bool = True) -> dict[str, Any]:
    world, hours, obs, met, cfg = make_twin(seed, scenario)
    out: dict[str, Any] = {"seed": seed}
    if run_inversion:
        res = invert(obs, met, world.domain, config=cfg)
    grid = Grid(*world.domain, cell=cfg.cell_m)
    mets, _, _, _ = _hour_mets(sorted({r.time for r in obs}), met, cfg)
    cell_h = _cell_heights(grid, (), cfg)
    log_prior = _log_prior(grid, (), cfg)
    win = _Window(obs, mets, grid, cell_h, cfg, MatrixCache())
    st, f, tau = win.stack, cfg.model_error, cfg.rate_tau
    out["threshold"] = round(_threshold(cfg, st.n_cells), 2)
    # the detector's first search, as cloud.inversion._locate does it
    cur = profile(st, None, None, f=f, tau=tau)
    win.remove_offsets(cur.pred[0])
    cur = profile(st, None, None, f=f, tau=tau)
    excess = np.maximum(st.y - cur.pred[0], 0.0)
    scanner = Scanner(st, 1.0 / (st.sigma**2 + (f * excess) ** 2), tau)
    dj, qhat = scanner.scores(st.y)
    short = _shortlist(0.5 * dj + log_prior, cfg.shortlist, grid, [])
    prof = profile(st, st.columns(short), None, f=f, tau=tau, q0=qhat[short][:, None])
    s2 = _scaled(prof, st.n)
    post = -prof.cost / (2.0 * s2) + log_prior[short]
    b = int(np.argmax(post))
    out["scan"] = round(float(cur.cost[0] - prof.cost[b]) / s2, 2)
    cx, cy = grid.centres()
    truth = world.truth(hours)
    if not truth:
        if run_inversion:
            out["found"] = len(res.sources)
        return out
    tr = truth[0]
    out["scan_dist_m"] = round(math.hypot(cx[short[b]] - tr.x_m, cy[short[b]] - tr.y_m), 1)
    out["rate_g_s"] = round(tr.rate_g_s, 2)
    out["nearest_station_m"] = round(min(math.hypot(s.x_m - tr.x_m, s.y_m - tr.y_m)
                                         for s in world.stations), 1)
    if run_inversion:
        d = [math.hypot(s.x_m - tr.x_m, s.y_m - tr.y_m) for s in res.sources]
        out["found_dist_m"] = round(min(d), 1) if d else None
        out["hit"] = bool(d and min(d) <= 250)

    def stat_profile(col: np.ndarray, q0: float) -> float:
        p = profile(st, col[:, None], None, f=f, tau=tau, q0=np.array([[q0]]))
        return round(float(cur.cost[0] - p.cost[0]) / _scaled(p, st.n), 2)

    def stat_fixed(src: np.ndarray) -> float:
        cost, chi2 = _cost_fixed(st, src, f)
        s2f = max(0.25, chi2 / max(1, st.n - st.n_hours * st.design().shape[1]))
        return round(float(cur.cost[0] - cost) / s2f, 2)

    q_mean = tr.rate_g_s
    true_cell = grid.cell_of(tr.x_m, tr.y_m)
    out["cell"] = stat_profile(st.columns(np.array([true_cell]))[:, 0], q_mean)
    pcol = win.point_columns(np.array([tr.x_m]), np.array([tr.y_m]), grid.cell / 3)[:, 0]
    out["point"] = stat_profile(pcol, q_mean)
    # true hourly rates, per row
    minutes = np.concatenate([np.arange(h // 60, h // 60 + 60) for h in win.hours])
    rates_h = world.source_rates(minutes)[:, 0].reshape(len(win.hours), 60).mean(axis=1)
    hidx = st.hour_index()
    out["point_true_rate"] = stat_fixed(pcol * rates_h[hidx])
    # the generator's physics: hourly means of minute plumes at the stations, as observed
    # (the station's fused slope applies to it too, but that is noise to every model)
    plumes = world._plumes(minutes)[:, :, 0].reshape(len(win.hours), 60, -1).mean(axis=1)
    index = {s.id: i for i, s in enumerate(world.stations)}
    rows = np.array([index[sid] for sid in win.station_ids])
    signal = plumes[hidx, rows]
    out["max_hourly_ug_m3"] = round(float(signal.max()), 1)
    out["truth_physics"] = stat_profile(signal / q_mean, q_mean)
    out["truth_physics_true_rate"] = stat_fixed(signal)
    # the generator's own hourly noise (white part), by kind, at the true hourly mean
    kinds = {s.id: s.kind for s in world.stations}
    true_mean = st.y + win.offsets  # near enough for the relative part
    sd = np.array([math.hypot(SPECS[kinds[sid]].fused_noise_abs,
                              SPECS[kinds[sid]].fused_noise_rel * max(v, 0.0))
                   for sid, v in zip(win.station_ids, true_mean, strict=True)])
    lam, ideal = _ideal(st, signal, sd, win.station_ids)
    out["ideal_lambda"] = round(lam, 2)
    out["ideal_stat"] = round(ideal, 2)
    # the same window without its source (the station's fused slope applied to the plume
    # taken off): the matched filter's realised statistic there, and how much more noise
    # the data carry than that white noise (unmodelled local traffic, residual slopes):
    # the reduced chi-square of the source-free data after the nuisance is projected out
    from firmware_sim.world_fields import key, normals

    slope = np.array([1.0 + SPECS[kinds[sid]].fused_slope_sd
                      * float(normals(key(world.seed, "fused", sid, "pm10"), np.arange(2))[0])
                      for sid in win.station_ids])
    y0 = st.y + win.offsets - slope * signal
    stat0, _ = _ideal_scan(st, signal[:, None], y0, sd, win.station_ids)
    out["ideal_stat_without_source"] = round(float(stat0[0]), 2)
    out["ideal_noise_scale"] = round(_noise_scale(st, y0, sd, win.station_ids), 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--twins", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1000)
    ap.add_argument("--scenario", default="single", choices=sorted(SCENARIOS))
    ap.add_argument("--seeds", type=str, default="", help="comma-separated seeds instead")
    ap.add_argument("--ideal-scan", action="store_true",
                    help="scan every cell with the idealised detector instead (slow)")
    ap.add_argument("--physics-step", type=int, default=0,
                    help="with --ideal-scan: also scan the generator's physics, every "
                         "N-th minute of each hour (slow; 0: not)")
    ap.add_argument("--misses-only", action="store_true",
                    help="list only the twins the inversion misses (> 250 m)")
    args = ap.parse_args()
    seeds = ([int(s) for s in args.seeds.split(",")] if args.seeds
             else list(range(args.seed, args.seed + args.twins)))
    t0 = time.perf_counter()
    rows = []
    for s in seeds:
        r = (ideal_scan(s, args.scenario, args.physics_step) if args.ideal_scan
             else analyse(s, args.scenario))
        print(r, file=sys.stderr, flush=True)
        rows.append(r)
    summary: dict[str, Any] = {"twins": len(rows)}
    for k in [k for k in rows[0] if k == "scan" or (k.startswith(("physics", "inversion_H"))
                                                     and not k.endswith("dist_m"))]:
        v = np.array([r[k] for r in rows])
        summary[k + "_max"] = float(v.max())
        summary[k + "_p95"] = round(float(np.percentile(v, 95)), 2)
    if "hit" in rows[0]:
        summary["hits_within_250m"] = int(sum(r["hit"] for r in rows))
    listed = [r for r in rows if not args.misses_only or not r.get("hit", True)]
    emit("inversion_oracle", {"scenario": args.scenario, "summary": summary, "twins": listed,
                              "wall_seconds": round(time.perf_counter() - t0, 1)})


if __name__ == "__main__":
    main()

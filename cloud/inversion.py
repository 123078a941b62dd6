"""Hourly source localisation and emission estimates from station-hours and the wind.

``invert(obs, met, domain, sites=..., config=...)`` takes a window of hours and returns the
sources it finds (cell centres, rates with sigmas, confidences, registered sites they tie
to), the background and the fit's residual, and optionally a gridded inventory.

The method (details in ``cloud.inversion_scan`` and the README's inversion section):

1. every hour with a usable wind gets a block of the source-receptor matrix H (cells as
   area sources, Briggs sigmas for the hour's class, meander from sigma_theta), cached;
2. a likelihood scan over all cells for the best single source, the hourly background and
   a spatial gradient estimated jointly with it; the best ``shortlist`` cells refitted
   exactly with plume-proportional model error;
3. the best cell by posterior (likelihood x prior, the prior raised on registered sites)
   is accepted when the likelihood-ratio statistic, scaled by the fit's reduced
   chi-square, beats BIC's price for three parameters (x, y, rate): ``3 ln n``; then the
   next source is sought with the accepted ones in the model (greedy), until one fails;
4. each source's position is refined on a sub-cell lattice in its 3 x 3 neighbourhood and
   reported at the centre of the cell that holds the refined point; its confidence is the
   posterior mass of that cell and its 8 neighbours, the other sources held fixed; its
   rate sigma combines the fit's curvature with the spread of rates over the posterior.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cloud.inversion_matrix import Grid, HourMet, MatrixCache, point_responses
from cloud.inversion_scan import Profile, Scanner, Stack, profile
from cloud.inversion_types import (
    FoundSource,
    InversionConfig,
    InversionResult,
    MetRow,
    ObsRow,
    SiteRow,
)
from cloud.met import derive_stability, excess_meander_deg, is_calm


def _hour_mets(
    hours: Sequence[int], met: Sequence[MetRow], cfg: InversionConfig
) -> tuple[dict[int, HourMet], list[int], list[int], list[tuple[int, str, str]]]:
    by_time = {m.time: m for m in met}
    usable: dict[int, HourMet] = {}
    calm: list[int] = []
    missing: list[int] = []
    classes: list[tuple[int, str, str]] = []
    for h in hours:
        m = by_time.get(h)
        if m is None:
            missing.append(h)
            continue
        stab = derive_stability(
            m.wind_speed_ms, h + 1800, given=m.stability, obukhov_m=m.obukhov_m,
            sigma_theta_deg=m.sigma_theta_deg, cloud_okta=m.cloud_okta, lat_lon=cfg.lat_lon,
            z0_m=cfg.z0_m, class_from_sigma_theta=cfg.class_from_sigma_theta)
        classes.append((h, stab.letter, stab.method))
        if is_calm(m.wind_speed_ms):
            calm.append(h)
            continue
        usable[h] = HourMet(
            wind_speed_ms=m.wind_speed_ms,
            wind_dir_deg=m.wind_dir_deg % 360.0,
            stability=stab.letter,
            meander_deg=excess_meander_deg(m.sigma_theta_deg, stab.letter),
            mixing_height_m=m.mixing_height_m,
        )
    return usable, calm, missing, classes


def _cell_heights(grid: Grid, sites: Sequence[SiteRow], cfg: InversionConfig) -> np.ndarray:
    h = np.full(grid.size, cfg.release_height_m)
    per_cell: dict[int, list[float]] = {}
    for s in sites:
        j = grid.cell_of(s.x_m, s.y_m)
        if j is not None and s.h_m is not None:
            per_cell.setdefault(j, []).append(s.h_m)
    for j, hs in per_cell.items():
        h[j] = float(np.median(hs))
    return h


def _log_prior(grid: Grid, sites: Sequence[SiteRow], cfg: InversionConfig) -> np.ndarray:
    lp = np.zeros(grid.size)
    for s in sites:
        j = grid.cell_of(s.x_m, s.y_m)
        if j is not None:
            lp[j] = math.log(cfg.site_prior)
    return lp


@dataclass(frozen=True)
class _Found:
    """A source the search accepted: its cell, position (refined where configured), test
    statistic, the shortlist it won, its column of responses and the profile it won with."""

    cell: int
    x: float
    y: float
    stat: float
    short: np.ndarray
    col: np.ndarray
    profile: Profile


class _Window:
    """The window's stacked data plus what is needed to add point-source columns."""

    def __init__(
        self,
        obs: Sequence[ObsRow],
        mets: dict[int, HourMet],
        grid: Grid,
        cell_h: np.ndarray,
        cfg: InversionConfig,
        cache: MatrixCache,
    ) -> None:
        self.grid, self.cfg, self.cell_h = grid, cfg, cell_h
        by_hour: dict[int, list[ObsRow]] = {}
        for r in obs:
            if r.time in mets:
                by_hour.setdefault(r.time, []).append(r)
        self.hours = sorted(by_hour)
        self.mets = [mets[h] for h in self.hours]
        self.recs: list[np.ndarray] = []
        blocks: list[np.ndarray] = []
        ys: list[float] = []
        sig: list[float] = []
        xs: list[float] = []
        yy: list[float] = []
        cx0, cy0 = 0.5 * (grid.x0 + grid.x1), 0.5 * (grid.y0 + grid.y1)
        for h, m in zip(self.hours, self.mets, strict=True):
            rows = sorted(by_hour[h], key=lambda r: r.station)
            rec = np.array([[r.x_m, r.y_m, r.z_m] for r in rows], dtype=float)
            self.recs.append(rec)
            blocks.append(cache.block(grid, rec, m, cell_h, terrain=cfg.terrain,
                                      sigma_z0_m=cfg.sigma_z0_m))
            ys.extend(r.value for r in rows)
            for r in rows:
                if r.sigma is not None:
                    s = r.sigma
                else:
                    a, rel = cfg.error_for(r.kind)
                    s = math.hypot(a, rel * r.value)
                sig.append(math.hypot(s, cfg.representativeness_ug_m3))
            xs.extend((r.x_m - cx0) / 1000.0 for r in rows)
            yy.extend((r.y_m - cy0) / 1000.0 for r in rows)
        off = np.concatenate([[0], np.cumsum([b.shape[0] for b in blocks])]).astype(np.int64)
        self.station_ids = [r.station for h in self.hours
                            for r in sorted(by_hour[h], key=lambda r: r.station)]
        self.stack = Stack(blocks, off, np.array(ys, dtype=float), np.array(sig, dtype=float),
                           np.array(xs), np.array(yy), gradient=cfg.gradient)
        self.offsets = np.zeros(self.stack.n)

    def remove_offsets(self, pred: np.ndarray) -> None:
        """Estimate each station's constant offset from its median residual against
        ``pred`` (robust to the few hours a plume passes), shrunk towards zero by its prior
        sigma, and take it off the data."""
        s_off = self.cfg.station_offset_ug_m3
        if s_off <= 0:
            return
        st = self.stack
        resid = st.y + self.offsets - pred
        ids = np.array(self.station_ids)
        new = np.zeros(st.n)
        for sid in np.unique(ids):
            rows = np.flatnonzero(ids == sid)
            med = float(np.median(resid[rows]))
            var_med = 1.57 * float(np.mean(st.sigma[rows] ** 2)) / rows.size
            new[rows] = med * s_off**2 / (s_off**2 + var_med)
        st.y = st.y + self.offsets - new
        self.offsets = new

    def point_columns(self, px: np.ndarray, py: np.ndarray, size_m: float) -> np.ndarray:
        """Columns (n, P) of small volume sources at points, heights from their cells."""
        h = np.array([self.cell_h[self.grid.cell_of(x, y) or 0] for x, y in zip(px, py,
                                                                               strict=True)])
        cols = [point_responses(px, py, h, rec, m, terrain=self.cfg.terrain,
                                sigma_y0_m=size_m / 4.3, sigma_z0_m=self.cfg.sigma_z0_m)
                for rec, m in zip(self.recs, self.mets, strict=True)]
        return np.vstack(cols).astype(np.float64)


def _threshold(cfg: InversionConfig, n_cells: int) -> float:
    """The likelihood-ratio statistic a new source must beat: the chi-square (1 dof)
    quantile at family-wise level ``alpha`` over all cells, halved for the rate's
    boundary at zero (Bonferroni: ``P(max > c) <= J/2 P(chi2_1 > c) = alpha``)."""
    if cfg.threshold is not None:
        return cfg.threshold
    from scipy.stats import chi2

    return float(chi2.isf(2.0 * cfg.alpha / max(n_cells, 1), 1))


def _hourly_prediction(st: Stack, cols: np.ndarray, hourly: np.ndarray) -> np.ndarray:
    """The sources' prediction per row from their hourly rates (S, T)."""
    pred: np.ndarray = np.einsum("ns,sn->n", cols, hourly[:, st.hour_index()])
    return pred


def _shortlist(score: np.ndarray, k: int, grid: Grid, exclude: Sequence[int]) -> np.ndarray:
    s = score.copy()
    s[list(exclude)] = -np.inf
    k = min(k, int(np.isfinite(s).sum()))
    top = np.argpartition(-s, k - 1)[:k]
    top = top[np.argsort(-s[top])]
    extra = [grid.neighbours(int(j), 1) for j in top[:5]]
    cells = np.unique(np.concatenate([top, *extra]))
    return cells[~np.isin(cells, list(exclude))]


def _scaled(prof: Profile, n: int) -> float:
    return max(0.25, float(np.min(prof.chi2)) / max(1, n - prof.params))


def _with(cols: np.ndarray | None, new: np.ndarray) -> np.ndarray:
    return new[:, None] if cols is None else np.hstack([cols, new[:, None]])


def _refine(win: _Window, cell: int, others: np.ndarray | None, q0: np.ndarray,
            log_prior: np.ndarray) -> tuple[int, float, float, np.ndarray]:
    """Sub-cell search over the 3 x 3 neighbourhood of ``cell`` (a 3 x 3 lattice of small
    volume sources per cell), each point's likelihood averaged over the rate-spread
    hypotheses (``rate_tau`` and ``refine_rate_taus``), then the decision: the reported
    cell is the one whose centre has the highest posterior probability of lying within
    one cell width of the source, the refined position is the posterior mean. Returns
    (cell, x, y, column of the most likely point)."""
    g, cfg = win.grid, win.cfg
    cx, cy = g.centres()
    cells = g.neighbours(cell, 1)
    offs = ((np.arange(3) + 0.5) / 3 - 0.5) * g.cell
    ox, oy = np.meshgrid(offs, offs)
    px = (cx[cells][:, None] + ox.ravel()[None, :]).ravel()
    py = (cy[cells][:, None] + oy.ravel()[None, :]).ravel()
    cols = win.point_columns(px, py, g.cell / 3)
    prof = profile(win.stack, cols, others, f=cfg.model_error, tau=cfg.rate_tau, q0=q0)
    s2 = _scaled(prof, win.stack.n)
    # the likelihood averaged over the rate-spread hypotheses (Bayesian model averaging,
    # equal prior weights, every cost scaled by the same reduced chi-square)
    lls = np.array([-prof.cost / (2.0 * s2)] + [
        -profile(win.stack, cols, others, f=cfg.model_error, tau=t, q0=q0).cost / (2.0 * s2)
        for t in cfg.refine_rate_taus if t != cfg.rate_tau])
    top = lls.max(axis=0)
    ll = top + np.log(np.mean(np.exp(lls - top), axis=0))
    logp = ll + np.repeat(log_prior[cells], ox.size)
    p = np.exp(logp - logp.max())
    p /= p.sum()
    near = np.hypot(px[None, :] - cx[cells][:, None], py[None, :] - cy[cells][:, None])
    mass = (near <= g.cell) @ p
    # a sharp posterior on a lattice point at a cell centre is exactly one cell width from
    # four neighbours' centres: (near-)ties go to the centre nearest the source on average
    mass -= 1e-3 * (near @ p) / g.cell
    best_cell = int(cells[int(np.argmax(mass))])
    b = int(np.argmax(logp))
    return best_cell, float(p @ px), float(p @ py), cols[:, b]


def _locate(win: _Window, log_prior: np.ndarray, cfg: InversionConfig
            ) -> tuple[list[_Found], Profile, np.ndarray | None]:
    st, g, f, tau = win.stack, win.grid, cfg.model_error, cfg.rate_tau
    penalty = _threshold(cfg, st.n_cells)
    found: list[_Found] = []
    cols: np.ndarray | None = None
    cur = profile(st, None, None, f=f, tau=tau)
    if cfg.station_offset_ug_m3 > 0:
        win.remove_offsets(cur.fitted())
        cur = profile(st, None, None, f=f, tau=tau)
    # stage-1 weights, fixed for the whole search: the observed excess over the background
    # stands in for the plume the model error scales with
    excess = np.maximum(st.y - cur.fitted(), 0.0)
    scanner = Scanner(st, 1.0 / (st.sigma**2 + (f * excess) ** 2), tau)
    surface = None
    for _ in range(cfg.max_sources):
        known = _hourly_prediction(st, cols, cur.hourly[0]) if cols is not None else 0.0
        dj, qhat = scanner.scores(st.y - known)
        score = 0.5 * dj + log_prior
        chosen = [s.cell for s in found]
        short = _shortlist(score, cfg.shortlist, g, chosen)
        if short.size == 0:
            break
        q0 = np.hstack([np.broadcast_to(cur.rates[0], (short.size, cur.rates.shape[1])),
                        qhat[short][:, None]])
        prof = profile(st, st.columns(short), cols, f=f, tau=tau, q0=q0)
        s2 = _scaled(prof, st.n)
        post = -prof.cost / (2.0 * s2) + log_prior[short]
        b = int(np.argmax(post))
        stat = float(cur.cost[0] - prof.cost[b]) / s2
        if surface is None:
            surface = (0.5 * dj - 0.5 * dj.max()) / s2 + log_prior
        if stat < penalty or prof.rates[b, -1] <= 0:
            break
        cell = int(short[b])
        cx, cy = g.centres()
        px, py = float(cx[cell]), float(cy[cell])
        col = st.columns(np.array([cell]))[:, 0]
        if cfg.refine:
            cell, px, py, col = _refine(win, cell, cols, prof.rates[b], log_prior)
        found.append(_Found(cell, px, py, stat, short, col, prof))
        cols = _with(cols, col)
        cur = profile(st, None, cols, f=f, tau=tau, q0=prof.rates[b][None, :])
    if found and cfg.station_offset_ug_m3 > 0:
        # the offsets were taken against a fit without sources, so a station the plume
        # crosses in several hours had part of the plume taken off as its offset (rates
        # came out ~10 % low): take them again against the fit with the sources found
        # and refit the rates (positions and the detection are left as they are)
        win.remove_offsets(cur.fitted())
        cur = profile(st, None, cols, f=f, tau=tau, q0=cur.rates[0][None, :])
    return found, cur, surface


def _confidence(win: _Window, found: list[_Found], cols: np.ndarray,
                final: Profile, log_prior: np.ndarray, cfg: InversionConfig
                ) -> list[tuple[float, float]]:
    """(confidence, rate sigma) per source: its posterior over its shortlist, others fixed."""
    st, g = win.stack, win.grid
    out = []
    s2 = _scaled(final, st.n)
    for i, src in enumerate(found):
        cell = src.cell
        if len(found) == 1:  # alone, its search already weighed these cells, nothing fixed
            cells, prof = src.short, src.profile
        else:
            cells = np.unique(np.concatenate([src.short, g.neighbours(cell, 1)]))
            others = np.delete(cols, i, axis=1)
            q_others = np.delete(final.rates[0], i)
            q0 = np.hstack([np.broadcast_to(q_others, (cells.size, q_others.size)),
                            np.full((cells.size, 1), final.rates[0][i])])
            prof = profile(st, st.columns(cells), others, f=cfg.model_error,
                           tau=cfg.rate_tau, q0=q0)
        logp = -prof.cost / (2.0 * s2) + log_prior[cells]
        p = np.exp(logp - logp.max())
        p /= p.sum()
        near = np.isin(cells, g.neighbours(cell, 1))
        conf = float(p[near].sum())
        q = prof.rates[:, -1]
        qbar = float(np.sum(p * q))
        var_loc = float(np.sum(p * (q - qbar) ** 2))
        var_fit = s2 * float(final.rate_var[0][i])
        out.append((conf, math.sqrt(var_fit + var_loc)))
    return out


def invert(
    obs: Sequence[ObsRow],
    met: Sequence[MetRow],
    domain: tuple[float, float, float, float],
    *,
    sites: Sequence[SiteRow] = (),
    config: InversionConfig | None = None,
    cache: MatrixCache | None = None,
) -> InversionResult:
    """Locate sources in ``domain`` from a window of hourly observations and met."""
    cfg = config or InversionConfig()
    grid = Grid(*domain, cell=cfg.cell_m)
    cache = cache or MatrixCache()
    hours = sorted({r.time for r in obs})
    mets, calm, missing, classes = _hour_mets(hours, met, cfg)
    cell_h = _cell_heights(grid, sites, cfg)
    log_prior = _log_prior(grid, sites, cfg)
    warnings: list[str] = []
    if calm:
        warnings.append(f"{len(calm)} calm hour(s) (wind < 1 m/s) left out")
    if missing:
        warnings.append(f"{len(missing)} hour(s) without met left out")
    base = {"calm_hours": tuple(calm), "hours_without_met": tuple(missing),
                "stability_by_hour": tuple(classes),
                "grid": (grid.x0, grid.y0, grid.x1, grid.y1, grid.cell)}
    if not mets:
        values = [r.value for r in obs]
        bg = float(np.median(values)) if values else 0.0
        rms = float(np.sqrt(np.mean((np.array(values) - bg) ** 2))) if values else 0.0
        warnings.append("no usable hour: nothing located")
        return InversionResult((), bg, rms, n_obs=len(obs), warnings=tuple(warnings),
                               **base)  # type: ignore[arg-type]
    win = _Window(obs, mets, grid, cell_h, cfg, cache)
    st = win.stack
    found, final, surface = _locate(win, log_prior, cfg)
    sources: list[FoundSource] = []
    model = None
    if found:
        cols = np.column_stack([s.col for s in found])
        model = _hourly_prediction(st, cols, final.hourly[0])
        conf = _confidence(win, found, cols, final, log_prior, cfg)
        cx, cy = grid.centres()
        for i, (s, (c, qs)) in enumerate(zip(found, conf, strict=True)):
            cell = s.cell
            ci, cj = cell % grid.nx, cell // grid.nx
            sources.append(FoundSource(
                x_m=float(cx[cell]), y_m=float(cy[cell]), rate_g_s=float(final.rates[0][i]),
                rate_sigma_g_s=qs, confidence=c,
                site=_tie(s.x, s.y, sites, cfg),
                cell=cell, x_refined_m=s.x, y_refined_m=s.y, significance=s.stat,
                edge=ci in (0, grid.nx - 1) or cj in (0, grid.ny - 1)))
        sources.sort(key=lambda s: -s.rate_g_s)
    pred = final.fitted()
    rms = float(np.sqrt(np.mean((st.y - pred) ** 2)))
    bg_hours = final.background[0]
    inventory = None
    if cfg.inventory:
        from cloud.inventory import gridded_inventory

        inventory = gridded_inventory(win.stack, grid, sites, cfg, model=model)
    post = None
    if surface is not None:
        p = np.exp(surface - surface.max())
        post = (p / p.sum()).reshape(grid.ny, grid.nx)
    return InversionResult(
        sources=tuple(sources),
        background_ug_m3=float(np.mean(bg_hours)),
        residual_rms_ug_m3=rms,
        background_by_hour=tuple((h, float(b)) for h, b in zip(win.hours, bg_hours,
                                                                strict=True)),
        gradient_ug_m3_per_km=(float(np.mean(final.gradient[0][:, 0])),
                               float(np.mean(final.gradient[0][:, 1]))),
        hours_used=tuple(win.hours),
        n_obs=st.n,
        noise_scale=math.sqrt(_scaled(final, st.n)),
        warnings=tuple(warnings),
        surface=post,
        inventory=inventory,
        **base,  # type: ignore[arg-type]
    )


def _tie(x: float, y: float, sites: Sequence[SiteRow], cfg: InversionConfig) -> str | None:
    best, best_d = None, cfg.site_tie_m
    for s in sites:
        d = math.hypot(s.x_m - x, s.y_m - y)
        if d <= best_d:
            best, best_d = s.site, d
    return best

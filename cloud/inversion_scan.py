"""The statistics of source localisation: a likelihood scan over every cell, then an exact
refit with plume-proportional model error for a shortlist.

The model for station-hour ``i`` in hour ``t``::

    y_i = b_t + g_t . (x_i, y_i) + sum_k q_kt H_ik + e_i,
    e_i ~ N(0, s_i^2),   s_i^2 = sigma_i^2 + (f * sum_k q_kt H_ik)^2

``b_t`` is the background of each hour and ``g_t`` its spatial gradient (both free: a
linear regional field per hour, estimated jointly with the sources), ``q_kt >= 0`` the
rate of source ``k`` in hour ``t``, ``sigma_i`` the observation error and ``f`` the
relative error of the plume model itself (a plume is rarely better than a factor of two
at a point in an hour; ``f`` lets a station in the middle of a plume disagree with the
model without ruling the true cell out).

Rates vary by hour (a building site stops at night, a kitchen peaks at meals) around the
source's window mean ``q_k``, tied to it by a random-effects prior
``q_kt ~ N(q_k, (tau q_k)^2)``: hours whose plume hits no station fall back to the mean,
hours that see the source follow it. The cost of a hypothesis is -2 log of its marginal
likelihood: chi-square + sum log s_i^2 + the prior's quadratic + each hour's Occam factor
``log(1 + (tau q_k)^2 I_kt)`` (``I_kt``: the hour's information on the rate), so a cell
cannot buy a better fit with hourly freedom it has no data for.

Everything is projected per hour: with ``A_t`` the hour's nuisance design (1, x, y) and
``P_t = W_t - W_t A_t (A_t' W_t A_t)^-1 A_t' W_t``, a cell's hourly information is
``d_tj = h_tj' P_t h_tj`` and its hourly score ``n_tj = h_tj' W_t r_t`` (``r_t``: residual
of the hour's nuisance fit). Stage 1 (``Scanner``) holds the weights fixed and scores every
cell in closed form from those (one pass over H per source sought); stage 2 (``profile``)
refits each shortlisted cell exactly, the error model reweighted iteratively.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

GRADIENT_PRIOR = 10.0  # ug/m3 per km


@dataclass
class Stack:
    """The window's data, rows grouped by hour (block ``t`` holds rows ``off[t]:off[t+1]``)."""

    blocks: list[np.ndarray]  # H per hour, (m_t, J) float32
    off: np.ndarray  # (T + 1,) row offsets
    y: np.ndarray  # (n,) observations
    sigma: np.ndarray  # (n,) observation errors
    gx: np.ndarray  # (n,) station x, km from the domain centre
    gy: np.ndarray  # (n,) station y, km from the domain centre
    gradient: bool = True

    @property
    def n(self) -> int:
        return int(self.y.size)

    @property
    def n_hours(self) -> int:
        return len(self.blocks)

    @property
    def n_cells(self) -> int:
        return int(self.blocks[0].shape[1]) if self.blocks else 0

    def columns(self, cells: np.ndarray) -> np.ndarray:
        """H[:, cells] for the whole window: (n, len(cells)) float64."""
        return np.vstack([b[:, cells] for b in self.blocks]).astype(np.float64)

    def hour_index(self) -> np.ndarray:
        return np.repeat(np.arange(self.n_hours), np.diff(self.off))

    def design(self) -> np.ndarray:
        """The per-hour nuisance columns (n, p): 1, and x, y (km) with a gradient."""
        cols = [np.ones(self.n)]
        if self.gradient:
            cols += [self.gx, self.gy]
        return np.column_stack(cols)

    def nuisance_prior(self) -> np.ndarray:
        """Prior precision of (background, gradient): flat for the background, a weak
        10 ug/m3-per-km prior on the gradient so an hour with few stations stays defined."""
        p = 3 if self.gradient else 1
        return np.diag([0.0] + [1.0 / GRADIENT_PRIOR**2] * (p - 1))


def _hour_sums(st: Stack, arr: np.ndarray) -> np.ndarray:
    """Sums over each hour's rows along the last axis: (..., n) -> (..., T)."""
    return np.add.reduceat(arr, st.off[:-1], axis=-1)


def _solve_small(m: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Batched solve of small systems, tolerant of singular hours (few stations)."""
    p = m.shape[-1]
    ridge = 1e-9 * (np.trace(m, axis1=-2, axis2=-1)[..., None, None] / p + 1e-12)
    return np.linalg.solve(m + ridge * np.eye(p), v[..., None])[..., 0]


def _occam_scores(n_tj: np.ndarray, d_tj: np.ndarray, tau: float) -> tuple[np.ndarray, np.ndarray]:
    """Closed-form random-effects score per cell from hourly n and d, shape (T, J).

    Returns (score = chi-square gain - shrinkage cost - Occam factors, window-mean rate)."""
    d = np.maximum(d_tj, 1e-30)
    qhat = n_tj / d
    qbar = np.sum(n_tj, axis=0) / np.sum(d, axis=0)
    for _ in range(2):
        sp2 = (tau * np.maximum(qbar, 1e-9)) ** 2
        u = 1.0 / (1.0 / d + sp2[None, :])
        qbar = np.sum(u * qhat, axis=0) / np.sum(u, axis=0)
    sp2 = (tau * np.maximum(qbar, 1e-9)) ** 2
    u = 1.0 / (1.0 / d + sp2[None, :])
    gain = np.sum(n_tj * qhat, axis=0) - np.sum(u * (qhat - qbar) ** 2, axis=0)
    gain -= np.sum(np.log1p(sp2[None, :] * d), axis=0)
    gain = np.where(qbar > 0, np.maximum(gain, 0.0), 0.0)
    return gain, np.maximum(qbar, 0.0)


class Scanner:
    """Stage 1: every cell scored with weights ``w`` held fixed (their hourly information
    is computed once; each search then costs one pass over H)."""

    def __init__(self, st: Stack, w: np.ndarray, tau: float) -> None:
        self.st, self.w, self.tau = st, w, tau
        a = st.design()
        self.a = a
        hours = st.hour_index()
        moments = _hour_sums(st, (w[:, None, None] * a[:, :, None] * a[:, None, :]).T).T
        self.minv = np.linalg.inv(moments + st.nuisance_prior() + 1e-9 * np.eye(a.shape[1]))
        self.hours = hours
        d = np.zeros((st.n_hours, st.n_cells))
        for t, blk in enumerate(st.blocks):
            lo, hi = st.off[t], st.off[t + 1]
            wt = w[lo:hi].astype(np.float32)
            c = ((wt[:, None] * a[lo:hi]).T.astype(np.float32) @ blk).astype(np.float64)
            hwh = (wt @ (blk * blk)).astype(np.float64)
            d[t] = hwh - np.einsum("pj,pq,qj->j", c, self.minv[t], c)
        self.d = np.maximum(d, 1e-30)

    def residual(self, y: np.ndarray) -> np.ndarray:
        """y minus its per-hour weighted nuisance fit."""
        st, a, w = self.st, self.a, self.w
        ay = _hour_sums(st, (w[:, None] * a * y[:, None]).T).T  # (T, p)
        beta = np.einsum("tpq,tq->tp", self.minv, ay)
        res: np.ndarray = y - np.einsum("np,np->n", a, beta[self.hours])
        return res

    def scores(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(score, window-mean rate) of a new source in every cell, for data ``y`` (the
        known sources' prediction already taken off)."""
        wr = (self.w * self.residual(y)).astype(np.float32)
        n_tj = np.zeros((self.st.n_hours, self.st.n_cells))
        for t, blk in enumerate(self.st.blocks):
            lo, hi = self.st.off[t], self.st.off[t + 1]
            n_tj[t] = wr[lo:hi] @ blk
        return _occam_scores(n_tj, self.d, self.tau)


# a cell's response below this (ug/m3 per g/s) is taken as zero in the exact refits: even
# a 10 g/s source would add under 1 ug/m3 there, well inside any station's error
NEGLIGIBLE = 0.1


@dataclass
class Profile:
    """Stage-2 results for K hypotheses (index 0..K-1)."""

    cost: np.ndarray  # (K,) -2 log marginal likelihood (up to a constant)
    chi2: np.ndarray  # (K,)
    rates: np.ndarray  # (K, S) window-mean rates: the fixed sources, then the candidate
    rate_var: np.ndarray  # (K, S) their variances (from the fit's curvature)
    hourly: np.ndarray  # (K, S, T) hourly rates
    background: np.ndarray  # (K, T) hourly background at the domain centre
    gradient: np.ndarray  # (K, T, 2) hourly gradient, ug/m3 per km east and north
    pred: np.ndarray | None  # (1, n) fitted values (for a single hypothesis only)
    params: int  # number of fitted parameters

    def fitted(self) -> np.ndarray:
        """The fitted values (n,) of a single-hypothesis profile (``cand=None``)."""
        if self.pred is None:
            raise ValueError("a profile of several hypotheses keeps no fitted values")
        row: np.ndarray = self.pred[0]
        return row


def profile(
    st: Stack,
    cand: np.ndarray | None,
    fixed: np.ndarray | None,
    *,
    f: float,
    tau: float = 0.8,
    q0: np.ndarray | None = None,
    iterations: int = 2,
) -> Profile:
    """Stage 2: exact fits of the ``fixed`` sources (n, k) plus each candidate column of
    ``cand`` (n, K) -- or, with ``cand=None``, of the fixed sources alone (K = 1).

    ``q0`` (K, S) or (S,): starting window-mean rates (S = k + 1, or k without candidates).
    Rows that no hypothesis reaches (all their columns below ``NEGLIGIBLE``) weigh the same
    in every hypothesis, so their part of each hour's moments is summed once; only the
    reached rows are worked per hypothesis.
    """
    n_t = st.n_hours
    hours_all = st.hour_index()
    a_all = st.design()
    p = a_all.shape[1]
    srcs = np.zeros((st.n, 0)) if fixed is None else np.where(fixed >= NEGLIGIBLE, fixed, 0.0)
    if cand is not None:
        cand = np.where(cand >= NEGLIGIBLE, cand, 0.0)
    reach = np.zeros(st.n, dtype=bool)
    if srcs.size:
        reach |= np.any(srcs > 0, axis=1)
    if cand is not None:
        reach |= np.any(cand > 0, axis=1)
    act = np.flatnonzero(reach)
    pas = np.flatnonzero(~reach)
    act_hours = hours_all[act]
    present = np.flatnonzero(np.bincount(act_hours, minlength=n_t))  # hours with reached rows
    starts = np.searchsorted(act_hours, present)
    a = a_all[act]
    y = st.y[act]
    s2obs = st.sigma[act] ** 2
    # the unreached rows: fixed weights 1 / sigma^2
    wp = 1.0 / st.sigma[pas] ** 2
    ap, yp = a_all[pas], st.y[pas]
    def pas_sum(v: np.ndarray) -> np.ndarray:
        return _hour_sums_rows(st, pas, v)

    aa_p = pas_sum(wp[:, None, None] * ap[:, :, None] * ap[:, None, :])  # (T, p, p)
    ay_p = pas_sum(wp[:, None] * ap * yp[:, None])  # (T, p)
    yy_p = pas_sum(wp * yp * yp)  # (T,)
    logdet_p = float(np.sum(np.log(st.sigma[pas] ** 2)))
    def hsum(v: np.ndarray) -> np.ndarray:  # (..., n_a) -> (..., T)
        out = np.zeros((*v.shape[:-1], n_t))
        if present.size:
            out[..., present] = np.add.reduceat(v, starts, axis=-1)
        return out


    if cand is None:
        h = srcs[act].T[None, :, :]  # (K, S, n_a)
    else:
        h = np.concatenate([np.broadcast_to(srcs[act].T[None], (cand.shape[1], srcs.shape[1],
                                                                 act.size)),
                            cand[act].T[:, None, :]], axis=1)
    n_k, n_s, n_a = h.shape
    hours = hours_all[act]
    qbar = np.ones((n_k, n_s))
    if q0 is not None:
        qbar = np.maximum(np.broadcast_to(np.asarray(q0, float), (n_k, n_s)), 1e-6).copy()
    q_ht = np.repeat(qbar[:, :, None], n_t, axis=2)  # (K, S, T)
    at = a.T  # (p, n_a)
    prior_p = st.nuisance_prior() + 1e-9 * np.eye(p)
    for it in range(iterations + 1):
        src = np.einsum("ksn,ksn->kn", h, q_ht[:, :, hours]) if n_s else np.zeros((n_k, n_a))
        s2 = s2obs[None, :] + (f * src) ** 2
        w = 1.0 / s2
        wa = w[:, None, :] * at[None]  # (K, p, n_a)
        aa = hsum(wa[:, :, None, :] * at[None, None, :, :]) + aa_p.transpose(1, 2, 0)[None]
        ay = hsum(wa * y) + ay_p.T[None]  # (K, p, T)
        minv = np.linalg.inv(aa.transpose(0, 3, 1, 2) + prior_p)  # (K, T, p, p)
        if n_s == 0 or it == iterations:
            break
        ah = hsum(wa[:, :, None, :] * h[:, None, :, :])  # (K, p, S, T)
        wh = w[:, None, :] * h
        hh = hsum(wh[:, :, None, :] * h[:, None, :, :])  # (K, S, S, T)
        hy = hsum(wh * y)  # (K, S, T)
        ah_t = ah.transpose(0, 3, 1, 2)  # (K, T, p, S)
        proj = np.einsum("ktps,ktpq->ktqs", ah_t, minv)  # Minv A'Wh: (K, T, p, S)
        hph = hh.transpose(0, 3, 1, 2) - np.einsum("ktps,ktpr->ktsr", proj, ah_t)
        hpy = hy.transpose(0, 2, 1) - np.einsum("ktps,ktp->kts", proj, ay.transpose(0, 2, 1))
        gram: np.ndarray = np.zeros((n_k, n_s, n_t, n_s, n_t))
        idx = np.arange(n_t)
        gram[:, :, idx, :, idx] = hph.transpose(1, 0, 2, 3)  # block-diagonal in hours
        sc2 = np.maximum(tau * qbar, 1e-6) ** 2  # (K, S)
        tri = np.eye(n_t) - 1.0 / n_t
        for s in range(n_s):
            gram[:, s, :, s, :] += tri[None] / sc2[:, s, None, None]
        gram = gram.reshape(n_k, n_s * n_t, n_s * n_t)
        rhs = hpy.transpose(0, 2, 1).reshape(n_k, n_s * n_t)
        q_ht = np.maximum(_solve_small(gram, rhs).reshape(n_k, n_s, n_t), 0.0)
        qbar = np.maximum(q_ht.mean(axis=2), 1e-6)
    # the nuisance at the final rates, and the costs
    if n_s:
        ah = hsum(wa[:, :, None, :] * h[:, None, :, :])  # (K, p, S, T)
        ay_res = ay - np.einsum("kpst,kst->kpt", ah, q_ht)
    else:
        ay_res = ay
    beta = np.einsum("ktpq,kqt->ktp", minv, ay_res)  # (K, T, p)
    resid = y[None, :] - src - np.einsum("np,knp->kn", a, beta[:, hours, :])
    chi2 = np.sum(w * resid**2, axis=1)
    # unreached rows: sum w (y - a.b)^2 = yy - 2 b.ay + b' aa b, hour by hour
    chi2 += np.sum(yy_p[None] - 2.0 * np.einsum("ktp,tp->kt", beta, ay_p)
                   + np.einsum("ktp,tpq,ktq->kt", beta, aa_p, beta), axis=1)
    # the gradient prior's own term
    chi2 += np.einsum("ktp,pq,ktq->k", beta, st.nuisance_prior(), beta)
    cost = chi2 + np.sum(np.log(s2), axis=1) + logdet_p
    var = np.zeros((n_k, n_s))
    qbar = q_ht.mean(axis=2) if n_s else np.zeros((n_k, 0))
    if n_s:
        info = _hourly_information(h, w, wa, minv, hsum)  # (K, S, T)
        sc2 = np.maximum(tau * qbar, 1e-6) ** 2
        dev = q_ht - qbar[:, :, None]
        cost += np.sum(np.sum(dev**2, axis=2) / sc2, axis=1)
        cost += np.sum(np.log1p(sc2[:, :, None] * info), axis=(1, 2))
        var = _rate_variance(info, sc2, n_t)
    pred = None
    if n_k == 1:
        pred = np.einsum("np,knp->kn", a_all, beta[:, hours_all, :])
        pred[:, act] += src
    grad = beta[:, :, 1:3] if p == 3 else np.zeros((n_k, n_t, 2))
    return Profile(cost, chi2, qbar, var, q_ht, beta[:, :, 0], grad, pred,
                   n_t * p + n_s * n_t)


def _hour_sums_rows(st: Stack, rows: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Sums of per-row values ``v`` (len(rows), ...) by hour: (T, ...)."""
    out = np.zeros((st.n_hours, *v.shape[1:]))
    np.add.at(out, st.hour_index()[rows], v)
    return out


def _hourly_information(h: np.ndarray, w: np.ndarray, wa: np.ndarray, minv: np.ndarray,
                        hsum: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Each hour's information on each source's rate, the hour's nuisance projected out."""
    wh = w[:, None, :] * h
    hh = hsum(wh * h)  # (K, S, T)
    ah = hsum(wa[:, :, None, :] * h[:, None, :, :])  # (K, p, S, T)
    ah_t = ah.transpose(0, 3, 1, 2)  # (K, T, p, S)
    quad = np.einsum("ktps,ktpq,ktqs->kst", ah_t, minv, ah_t)
    info: np.ndarray = np.maximum(hh - quad, 0.0)
    return info


def _rate_variance(info: np.ndarray, sc2: np.ndarray, n_t: int) -> np.ndarray:
    """Variance of each source's window-mean rate ``1' C 1 / T^2``, ``C`` the posterior
    covariance of its hourly rates under the random-effects prior (couplings between
    sources left out)."""
    n_k, n_s, _ = info.shape
    tri = np.eye(n_t) - 1.0 / n_t
    out = np.zeros((n_k, n_s))
    for s in range(n_s):
        prior = tri[None] / np.maximum(sc2[:, s], 1e-300)[:, None, None]
        prec = np.nan_to_num(info[:, s, :, None]) * np.eye(n_t)[None] + prior
        # a relative ridge: a cell no station sees (no information in any hour) gets an
        # enormous variance instead of a singular matrix
        scale = np.maximum(np.abs(np.diagonal(prec, axis1=1, axis2=2)).max(axis=1), 1e-300)
        prec += (1e-12 * scale)[:, None, None] * np.eye(n_t)[None]
        ones = np.ones((n_k, n_t, 1))
        try:
            cov1 = np.linalg.solve(prec, ones)[:, :, 0]
        except np.linalg.LinAlgError:  # still singular somewhere: the pseudo-inverse
            cov1 = (np.linalg.pinv(prec) @ ones)[:, :, 0]
        out[:, s] = cov1.sum(axis=1) / n_t**2
    return out

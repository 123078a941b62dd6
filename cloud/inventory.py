"""A Bayesian gridded emission inventory: every cell's rate (g/s) with its posterior sigma.

    x = x_a + B H' (H B H' + R)^-1 (y - b - H x_a),   P = (H' R^-1 H + B^-1)^-1

``B = D C D``: ``D`` the prior sigmas (larger on cells holding a registered site, whose
kind also sets a small prior mean), ``C`` an exponential correlation of length ``L``, taken
separable (``exp(-|dx| / L) exp(-|dy| / L)``, a Kronecker product of two AR(1)
correlations). B is never formed: ``C^(1/2) = L_y (x) L_x`` is applied by the AR(1)
recursion ``z_i = rho z_(i-1) + sqrt(1 - rho^2) e_i`` along each axis (and its transpose by
the reverse recursion), so applying it costs O(cells).

In the whitened variable ``x = x_a + D C^(1/2) v`` the estimate minimises
``|v|^2 + |R^(-1/2) (d - H D C^(1/2) v)|^2``; ``k`` steps of Golub-Kahan bidiagonalisation
(each one pass of H and one of H') give the solution in the Krylov subspace and a
low-rank update of the prior covariance, ``P ~ B - (S V) (I - (I + T)^-1) (S V)'`` with
``S = D C^(1/2)``, ``T = B_k' B_k``; its diagonal is the posterior variance per cell (an
upper bound: directions the k steps did not reach keep their prior variance). Each hour's
background and gradient are estimated with the field (broad priors: 50 ug/m3, 10 ug/m3
per km), as in the localisation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from cloud.inversion_matrix import Grid
from cloud.inversion_scan import Stack
from cloud.inversion_types import Inventory, InversionConfig, SiteRow

# prior mean rate (g/s) of a cell by the kind of registered site it holds
PRIOR_RATE = {"construction": 0.1, "industrial": 0.2, "restaurant": 0.02, "traffic": 0.05,
              "other": 0.05}
_BACKGROUND_SIGMA = 50.0  # ug/m3: prior of each hour's background
_GRADIENT_SIGMA = 10.0  # ug/m3 per km: prior of each hour's gradient


def _ar1_apply(field: np.ndarray, rho: float, axis: int, transpose: bool) -> np.ndarray:
    """L e (or L' e) along one axis, L the Cholesky factor of rho^|i-j|."""
    a = np.moveaxis(field, axis, 0).copy()
    c = math.sqrt(max(0.0, 1.0 - rho * rho))
    n = a.shape[0]
    if not transpose:
        for i in range(1, n):
            a[i] = rho * a[i - 1] + c * a[i]
    else:
        for i in range(n - 2, -1, -1):
            a[i] = a[i] + rho * a[i + 1]
        a[1:] *= c
    return np.moveaxis(a, 0, axis)


class _Operator:
    """G = R^-1/2 [H S, A sigma_A] and its transpose, over the window's blocks; ``A`` is
    each hour's nuisance design (1, x, y), ``sigma_A`` its broad prior."""

    def __init__(self, st: Stack, grid: Grid, sd: np.ndarray, rho: float, r_inv_sqrt: np.ndarray):
        self.st, self.grid, self.sd, self.rho = st, grid, sd, rho
        self.r = r_inv_sqrt
        self.n_cells = grid.size
        self.a = st.design()
        self.p = self.a.shape[1]
        self.sa = np.array([_BACKGROUND_SIGMA] + [_GRADIENT_SIGMA] * (self.p - 1))
        self.n = self.n_cells + st.n_hours * self.p

    def s(self, v: np.ndarray) -> np.ndarray:
        f = v.reshape(self.grid.ny, self.grid.nx)
        f = _ar1_apply(_ar1_apply(f, self.rho, 1, False), self.rho, 0, False)
        out: np.ndarray = self.sd * f.ravel()
        return out

    def s_t(self, x: np.ndarray) -> np.ndarray:
        f = (self.sd * x).reshape(self.grid.ny, self.grid.nx)
        f = _ar1_apply(_ar1_apply(f, self.rho, 0, True), self.rho, 1, True)
        return f.ravel()

    def matvec(self, v: np.ndarray) -> np.ndarray:
        x = self.s(v[: self.n_cells]).astype(np.float32)
        ctrl = v[self.n_cells :].reshape(self.st.n_hours, self.p) * self.sa
        out = np.empty(self.st.n)
        for t, blk in enumerate(self.st.blocks):
            a, b = self.st.off[t], self.st.off[t + 1]
            out[a:b] = blk @ x + self.a[a:b] @ ctrl[t]
        return self.r * out

    def rmatvec(self, u: np.ndarray) -> np.ndarray:
        ur = self.r * u
        ur32 = ur.astype(np.float32)
        acc = np.zeros(self.n_cells)
        ctrl = np.empty((self.st.n_hours, self.p))
        for t, blk in enumerate(self.st.blocks):
            a, b = self.st.off[t], self.st.off[t + 1]
            acc += ur32[a:b] @ blk
            ctrl[t] = (ur[a:b] @ self.a[a:b]) * self.sa
        return np.concatenate([self.s_t(acc), ctrl.ravel()])


def _bidiagonalise(op: _Operator, b: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Golub-Kahan with full reorthogonalisation: V (k, n), B (k + 1, k), beta_1."""
    beta1 = float(np.linalg.norm(b))
    vs: list[np.ndarray] = []
    alphas: list[float] = []
    betas: list[float] = []
    if beta1 == 0.0:
        return np.zeros((0, op.n)), np.zeros((1, 0)), 0.0
    u = b / beta1
    v = op.rmatvec(u)
    us = [u]
    for _ in range(k):
        for w in vs:
            v -= (w @ v) * w
        alpha = float(np.linalg.norm(v))
        if alpha < 1e-12:
            break
        v = v / alpha
        vs.append(v)
        alphas.append(alpha)
        u = op.matvec(v) - alpha * u
        for w in us:
            u -= (w @ u) * w
        beta = float(np.linalg.norm(u))
        betas.append(beta)
        if beta < 1e-12:
            break
        u = u / beta
        us.append(u)
        v = op.rmatvec(u) - beta * v
    m = len(alphas)
    bmat = np.zeros((m + 1, m))
    for i in range(m):
        bmat[i, i] = alphas[i]
        bmat[i + 1, i] = betas[i] if i < len(betas) else 0.0
    return np.array(vs).reshape(m, op.n), bmat, beta1


def gridded_inventory(
    st: Stack,
    grid: Grid,
    sites: Sequence[SiteRow],
    cfg: InversionConfig,
    *,
    model: np.ndarray | None = None,
) -> Inventory:
    """The inventory for the window in ``st``; ``model`` (n,) is the sources' fitted
    contribution, which sets the model-error part of R as in the localisation."""
    prior_mean = np.zeros(grid.size)
    sd = np.full(grid.size, cfg.inventory_sigma_g_s)
    for s in sites:
        j = grid.cell_of(s.x_m, s.y_m)
        if j is not None:
            prior_mean[j] += PRIOR_RATE.get(s.kind, 0.05)
            sd[j] = math.hypot(sd[j], cfg.inventory_site_sigma_g_s)
    rho = math.exp(-grid.cell / cfg.inventory_corr_m) if cfg.inventory_corr_m > 0 else 0.0
    var = st.sigma**2
    if model is not None:
        var = var + (cfg.model_error * model) ** 2
    r_inv_sqrt = 1.0 / np.sqrt(var)
    op = _Operator(st, grid, sd, rho, r_inv_sqrt)
    xa32 = prior_mean.astype(np.float32)
    hxa = np.concatenate([blk @ xa32 for blk in st.blocks]).astype(np.float64)
    # centre each hour on its mean so the background controls start near zero
    hours = st.hour_index()
    d = st.y - hxa
    ybar = np.add.reduceat(d, st.off[:-1]) / np.diff(st.off)
    d = d - ybar[hours]
    vmat, bmat, beta1 = _bidiagonalise(op, r_inv_sqrt * d, cfg.inventory_iterations)
    m = vmat.shape[0]
    mean = prior_mean.copy()
    post_var = sd**2
    if m:
        tmat = bmat.T @ bmat
        inv = np.linalg.inv(np.eye(m) + tmat)
        rhs = bmat.T @ np.eye(m + 1, 1)[:, 0] * beta1
        coef = inv @ rhs
        mean = prior_mean + op.s((vmat.T @ coef)[: grid.size])
        sv = np.column_stack([op.s(vmat[i, : grid.size]) for i in range(m)])  # (J, m)
        reduction = np.einsum("ja,ab,jb->j", sv, np.eye(m) - inv, sv)
        post_var = np.maximum(sd**2 - reduction, 0.0)
    shape = (grid.ny, grid.nx)
    return Inventory(
        nx=grid.nx, ny=grid.ny, x0=grid.x0, y0=grid.y0, cell=grid.cell,
        mean=mean.reshape(shape), sigma=np.sqrt(post_var).reshape(shape),
        prior_mean=prior_mean.reshape(shape), prior_sigma=sd.reshape(shape), iterations=m)

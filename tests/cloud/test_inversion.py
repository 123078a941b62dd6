"""The inversion on identical twins (data made with its own forward model), its algebra
against brute force, and its handling of calms, gaps, sites and the inventory."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cloud.inventory import _ar1_apply
from cloud.inversion import invert
from cloud.inversion_matrix import Grid, HourMet, MatrixCache, hour_block, point_responses
from cloud.inversion_scan import GRADIENT_PRIOR, Scanner, Stack, profile
from cloud.inversion_types import InversionConfig, MetRow, SiteRow
from tests.cloud._synthetic import DOMAIN, T0, make

FAST = InversionConfig(inventory=False)


def _near(found, x: float, y: float) -> float:
    return min(math.hypot(s.x_m - x, s.y_m - y) for s in found)


def test_a_single_source_is_found_in_its_cell_with_its_rate() -> None:
    obs, met = make([(1450.0, 1550.0, 2.0)], noise=0.5)
    res = invert(obs, met, DOMAIN, config=FAST)
    assert len(res.sources) == 1
    s = res.sources[0]
    assert (s.x_m, s.y_m) == (1450.0, 1550.0)  # the cell centre holding the source
    assert s.rate_g_s == pytest.approx(2.0, rel=0.1)
    assert 0 < s.rate_sigma_g_s < 0.5
    assert s.confidence > 0.9
    assert s.site is None
    assert res.background_ug_m3 == pytest.approx(40.0 + np.mean(5 * np.sin(np.arange(8))),
                                                  abs=1.0)
    assert res.residual_rms_ug_m3 < 2.0
    assert res.gradient_ug_m3_per_km == pytest.approx((2.0, -1.0), abs=0.5)


@pytest.mark.parametrize("taus", [(), (0.1,), (0.1, 0.3)])
def test_the_refinement_places_a_source_on_a_cell_centre_in_its_own_cell(taus) -> None:
    # a sharp posterior on a cell centre is exactly one cell width from four neighbours'
    # centres: the tie must go to the cell itself, whatever rate spreads are averaged over
    obs, met = make([(1450.0, 1550.0, 2.0)], noise=0.5)
    res = invert(obs, met, DOMAIN, config=InversionConfig(inventory=False,
                                                          refine_rate_taus=taus))
    (s,) = res.sources
    assert (s.x_m, s.y_m) == (1450.0, 1550.0)
    assert math.hypot(s.x_refined_m - 1450.0, s.y_refined_m - 1550.0) < 20.0


def test_two_sources_are_found_largest_first() -> None:
    obs, met = make([(850.0, 950.0, 1.0), (2150.0, 2050.0, 3.0)], noise=0.5, seed=2)
    res = invert(obs, met, DOMAIN, config=FAST)
    assert len(res.sources) == 2
    assert _near(res.sources, 850.0, 950.0) < 100
    assert _near(res.sources, 2150.0, 2050.0) < 100
    assert res.sources[0].rate_g_s > res.sources[1].rate_g_s


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_noise_alone_is_not_a_source(seed: int) -> None:
    obs, met = make([], noise=3.0, seed=seed)
    res = invert(obs, met, DOMAIN, config=FAST)
    assert res.sources == ()


def test_a_registered_site_ties_the_source_and_raises_its_prior() -> None:
    obs, met = make([(1450.0, 1550.0, 2.0)], noise=0.5)
    sites = [SiteRow("C-007", 1470.0, 1530.0, 2.0, "construction"),
             SiteRow("I-001", 400.0, 2600.0, 30.0, "industrial")]
    res = invert(obs, met, DOMAIN, sites=sites, config=FAST)
    assert [s.site for s in res.sources] == ["C-007"]
    far = [SiteRow("C-008", 2600.0, 300.0, 2.0, "construction")]
    res = invert(obs, met, DOMAIN, sites=far, config=FAST)
    assert res.sources[0].site is None  # a source may be anywhere, not only on the register


def test_calm_and_unmet_hours_are_left_out_and_reported() -> None:
    obs, met = make([(1450.0, 1550.0, 2.0)], noise=0.5, hours=9)
    met[3] = MetRow(met[3].time, 0.4, 120.0, "F")  # calm
    del met[5]  # no met for this hour
    res = invert(obs, met, DOMAIN, config=FAST)
    assert res.calm_hours == (T0 + 3 * 3600,)
    assert res.hours_without_met == (T0 + 5 * 3600,)
    assert len(res.hours_used) == 7
    assert _near(res.sources, 1450.0, 1550.0) < 100
    assert any("calm" in w for w in res.warnings)


def test_a_lone_station_hour_is_its_own_background() -> None:
    obs, met = make([], hours=1)
    res = invert(obs[:1], met, DOMAIN, config=FAST)
    assert res.sources == ()
    assert res.background_ug_m3 == pytest.approx(obs[0].value)


def test_no_usable_hour_gives_an_empty_result_not_an_error() -> None:
    obs, met = make([(1450.0, 1550.0, 2.0)], hours=2)
    res = invert(obs, [MetRow(m.time, 0.2, 0.0, "F") for m in met], DOMAIN, config=FAST)
    assert res.sources == ()
    assert math.isfinite(res.background_ug_m3)


def _one_hour_stack(seed: int) -> tuple[Stack, np.ndarray]:
    rng = np.random.default_rng(seed)
    m, j = 30, 12
    block = rng.uniform(0, 5, (m, j)).astype(np.float32)
    block[rng.uniform(size=(m, j)) < 0.5] = 0
    gx, gy = rng.uniform(-2, 2, m), rng.uniform(-2, 2, m)
    y = 50 + 3 * gx - gy + 2.0 * block[:, 4] + rng.normal(0, 1, m)
    sig = rng.uniform(1, 3, m)
    st = Stack([block], np.array([0, m]), y, sig, gx, gy, gradient=True)
    return st, 1.0 / sig**2


def _wls(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, float]:
    """Weighted least squares with the gradient's weak prior as two pseudo-observations
    (columns 1 and 2 of ``x`` are the gradient); returns (coefficients, objective)."""
    sw = np.sqrt(w)
    prior = np.zeros((2, x.shape[1]))
    prior[0, 1] = prior[1, 2] = 1.0 / GRADIENT_PRIOR
    xa = np.vstack([x * sw[:, None], prior])
    ya = np.concatenate([y * sw, [0.0, 0.0]])
    coef, *_ = np.linalg.lstsq(xa, ya, rcond=None)
    return coef, float(np.sum((ya - xa @ coef) ** 2))


def test_scan_information_matches_brute_force_least_squares() -> None:
    st, w = _one_hour_stack(7)
    scanner = Scanner(st, w, tau=0.8)
    wr = w * scanner.residual(st.y)
    a = st.design()

    def chi2(x: np.ndarray) -> float:
        return _wls(x, st.y, w)[1]

    base = chi2(a)
    for j in range(st.n_cells):
        h = st.blocks[0][:, j].astype(float)
        n = float(wr @ h)
        drop = base - chi2(np.column_stack([a, h]))
        assert n * n / scanner.d[0, j] == pytest.approx(drop, rel=1e-4, abs=1e-6), j


def test_profile_without_model_error_is_weighted_least_squares() -> None:
    st, w = _one_hour_stack(8)
    h = st.blocks[0][:, 4:5].astype(float)
    prof = profile(st, None, h, f=0.0, tau=0.8, q0=np.array([2.0]))
    a = np.column_stack([st.design(), h[:, 0]])
    coef, objective = _wls(a, st.y, w)
    assert prof.rates[0, 0] == pytest.approx(coef[-1], rel=1e-6)
    assert prof.chi2[0] == pytest.approx(objective, rel=1e-6)
    assert prof.pred is not None
    np.testing.assert_allclose(prof.pred[0], a @ coef, rtol=1e-6)


def test_cells_are_area_sources_without_a_singularity() -> None:
    grid = Grid(0.0, 0.0, 1000.0, 1000.0, 100.0)
    met = HourMet(3.0, 270.0, "D")
    # receptors: at a cell's centre, at its corner, and 20 m inside its east edge
    # (at the release height, where a point source is at its most singular)
    rec = np.array([[450.0, 450.0, 2.0], [500.0, 500.0, 2.0], [480.0, 450.0, 2.0]])
    block = hour_block(grid, rec, met, np.full(grid.size, 2.0))
    assert np.all(np.isfinite(block))
    j = grid.cell_of(450.0, 450.0)
    assert j is not None
    assert 0 < block[0, j] < 20_000
    assert block[2, j] > block[0, j]  # more of the cell lies upwind of the east edge
    # a point source 1 m upwind of the receptor: the singularity the cell average avoids
    point = point_responses(np.array([449.0]), np.array([450.0]), 2.0, rec[:1], met,
                            terrain="urban", dtype=np.float64)
    assert point[0, 0] > 100 * block[0, j]


def test_blocks_are_cached_by_hour() -> None:
    obs, met = make([(1450.0, 1550.0, 2.0)], hours=6)
    cache = MatrixCache()
    invert(obs, met, DOMAIN, config=FAST, cache=cache)
    assert cache.built == 6
    invert(obs, met, DOMAIN, config=FAST, cache=cache)
    assert cache.built == 6
    assert cache.reused >= 6


def test_ar1_operator_is_the_cholesky_factor_of_exponential_correlation() -> None:
    rho, ny, nx = 0.6, 4, 5
    eye = np.eye(ny * nx)
    s = np.column_stack([_ar1_apply(_ar1_apply(e.reshape(ny, nx), rho, 1, False), rho, 0,
                                    False).ravel() for e in eye])
    st = np.column_stack([_ar1_apply(_ar1_apply(e.reshape(ny, nx), rho, 0, True), rho, 1,
                                     True).ravel() for e in eye])
    cy = rho ** np.abs(np.subtract.outer(np.arange(ny), np.arange(ny)))
    cx = rho ** np.abs(np.subtract.outer(np.arange(nx), np.arange(nx)))
    np.testing.assert_allclose(s @ s.T, np.kron(cy, cx), atol=1e-12)
    np.testing.assert_allclose(st, s.T, atol=1e-12)


def test_inventory_puts_the_emission_near_the_source_and_shrinks_uncertainty() -> None:
    obs, met = make([(1450.0, 1550.0, 2.0)], noise=0.5)
    cfg = InversionConfig(inventory=True, inventory_iterations=60, inventory_sigma_g_s=0.5)
    res = invert(obs, met, DOMAIN, config=cfg)
    inv = res.inventory
    assert inv is not None
    assert inv.mean.shape == (30, 30)
    assert np.all(inv.sigma <= inv.prior_sigma + 1e-12)
    assert float(np.mean(inv.sigma / inv.prior_sigma)) < 0.99
    jy, jx = np.unravel_index(int(np.argmax(inv.mean)), inv.mean.shape)
    x, y = inv.x0 + (jx + 0.5) * inv.cell, inv.y0 + (jy + 0.5) * inv.cell
    assert math.hypot(x - 1450.0, y - 1550.0) <= 150
    near = inv.mean[12:19, 11:18].sum()  # the 700 m x 700 m around the source
    assert near > 0.1  # positive there; a smooth prior spreads and damps a point source


def test_cells_no_station_sees_do_not_make_the_rate_variance_singular() -> None:
    """Two hours from a demo run: most cells have no information in either hour. The rate
    variance solve used to raise 'Singular matrix' and lose the hour."""
    from pathlib import Path

    from cloud.invert_io import read_met, read_obs

    cases = Path(__file__).resolve().parent.parent / "cases" / "inversion"
    obs = read_obs(cases / "dark_cells_OBS.csv")
    met = read_met(cases / "dark_cells_MET.csv")
    res = invert(obs, met, (0.0, 0.0, 2200.0, 2200.0))
    assert res.n_obs == len(obs) == 36
    for s in res.sources:
        assert math.isfinite(s.rate_g_s) and s.rate_sigma_g_s >= 0


def test_the_rate_variance_of_a_cell_no_station_sees_is_finite() -> None:
    """A candidate cell with no information in any hour and a rate near 0 made the
    random-effects precision singular in floating point ("Singular matrix" from a real
    window, which failed the whole hour); a well-posed cell keeps its exact variance."""
    from cloud.inversion_scan import _rate_variance

    info = np.zeros((2, 1, 2))
    info[1] = 4.0
    sc2 = np.array([[1e-12], [0.25]])
    var = _rate_variance(info, sc2, 2)
    assert np.all(np.isfinite(var))
    assert abs(var[1, 0] - 0.125) < 1e-9  # 1' (4 I + 4 tri)^-1 1 / 2^2

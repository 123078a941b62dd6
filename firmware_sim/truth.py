"""The synthetic world's own dispersion physics: the truth that twin experiments invert.

Written independently of ``cloud.dispersion`` on purpose (firmware_sim may not import
cloud, and a twin experiment that used the inversion's own code for its truth would hide
model error). Two truth models, each driven minute by minute:

* ``plume_minute`` -- a steady Gaussian plume per minute along that minute's wind (so an
  hour's mean is the average of 60 meandering plumes, not one wide plume);
* ``puff_minute`` -- Gaussian puffs released every minute, advected along the minute
  winds (curved trajectories, transport delay after a wind shift), sampled by integrating
  each puff's passage over the minute (the "integrated puff" of CALPUFF), so no gaps
  appear between puffs.

Three sigma sets: ``briggs-urban`` and ``briggs-rural`` (Briggs 1973) and ``pg-martin``
(Martin 1976's fit to the Pasquill-Gifford curves, x in km, sigma in m). Wind speeds below
``U_FLOOR_MS`` are raised to it. Concentrations are in ug/m3 for rates in g/s.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray
from scipy.special import erf

Array = NDArray[np.float64]
U_FLOOR_MS = 0.5
SIGMA_SETS = ("briggs-urban", "briggs-rural", "pg-martin")
CLASSES = "ABCDEF"


def _urban_sy(x: Array, k: int) -> Array:
    a = (0.32, 0.32, 0.22, 0.16, 0.11, 0.11)[k]
    return a * x / np.sqrt(1.0 + 4e-4 * x)


def _urban_sz(x: Array, k: int) -> Array:
    if k <= 1:
        return 0.24 * x * np.sqrt(1.0 + 1e-3 * x)
    if k == 2:
        return 0.20 * x
    if k == 3:
        return 0.14 * x / np.sqrt(1.0 + 3e-4 * x)
    return 0.08 * x / np.sqrt(1.0 + 1.5e-3 * x)


def _rural_sy(x: Array, k: int) -> Array:
    a = (0.22, 0.16, 0.11, 0.08, 0.06, 0.04)[k]
    return a * x / np.sqrt(1.0 + 1e-4 * x)


def _rural_sz(x: Array, k: int) -> Array:
    forms: tuple[Callable[[Array], Array], ...] = (
        lambda v: 0.20 * v,
        lambda v: 0.12 * v,
        lambda v: 0.08 * v / np.sqrt(1.0 + 2e-4 * v),
        lambda v: 0.06 * v / np.sqrt(1.0 + 1.5e-3 * v),
        lambda v: 0.03 * v / (1.0 + 3e-4 * v),
        lambda v: 0.016 * v / (1.0 + 3e-4 * v),
    )
    return forms[k](x)


# Martin (1976): sy = a x_km^0.894; sz = c x_km^d + f, two ranges split at 1 km
_MARTIN_A = (213.0, 156.0, 104.0, 68.0, 50.5, 34.0)
_MARTIN_NEAR = ((440.8, 1.941, 9.27), (106.6, 1.149, 3.3), (61.0, 0.911, 0.0),
                (33.2, 0.725, -1.7), (22.8, 0.678, -1.3), (14.35, 0.740, -0.35))
_MARTIN_FAR = ((459.7, 2.094, -9.6), (108.2, 1.098, 2.0), (61.0, 0.911, 0.0),
               (44.5, 0.516, -13.0), (55.4, 0.305, -34.0), (62.6, 0.180, -48.6))


def _martin_sy(x: Array, k: int) -> Array:
    return _MARTIN_A[k] * (x / 1000.0) ** 0.894


def _martin_sz(x: Array, k: int) -> Array:
    km = x / 1000.0
    c1, d1, f1 = _MARTIN_NEAR[k]
    c2, d2, f2 = _MARTIN_FAR[k]
    near = c1 * km**d1 + f1
    far = c2 * km**d2 + f2
    # the fit's negative offsets make sz < 0 within a few metres: keep a small floor there
    return np.maximum(np.where(km < 1.0, near, far), 0.05 * np.minimum(x, 20.0) + 0.1)


_SETS = {
    "briggs-urban": (_urban_sy, _urban_sz),
    "briggs-rural": (_rural_sy, _rural_sz),
    "pg-martin": (_martin_sy, _martin_sz),
}


def sigma_yz(x_m: Array, stability: str, sigma_set: str) -> tuple[Array, Array]:
    """Lateral and vertical spread (m) after travelling ``x_m`` metres."""
    fy, fz = _SETS[sigma_set]
    k = CLASSES.index(stability)
    x = np.maximum(np.asarray(x_m, dtype=float), 1.0)
    return fy(x, k), np.minimum(fz(x, k), 5000.0)


def _reflections(z: Array, h: Array | float, sz: Array, lid: float) -> Array:
    """Ground image always; mixing-lid images (two orders) and the well-mixed limit."""
    def g(d: Array) -> Array:
        return np.exp(-0.5 * (d / sz) ** 2)

    total = g(z - h) + g(z + h)
    if float(np.max(sz)) < 0.25 * lid:  # the nearest image is exp(-32) away or further
        return total
    for n in (1, 2):
        for s in (2.0 * n * lid, -2.0 * n * lid):
            total = total + g(z - h + s) + g(z + h + s)
    return np.where(sz > 1.6 * lid, math.sqrt(2.0 * math.pi) * sz / lid, total)


def plume_minute(
    rate_g_s: Array,
    src_xy: Array,
    src_h: Array,
    rec_xyz: Array,
    *,
    wind_speed: float,
    wind_from_deg: float,
    stability: str,
    sigma_set: str,
    mixing_height: float,
) -> Array:
    """Concentration (ug/m3) at each receptor from each source for one minute's wind.

    ``src_xy`` (n, 2), ``src_h`` (n,), ``rate_g_s`` (n,), ``rec_xyz`` (m, 3); returns the
    (m, n) contributions.
    """
    u = max(wind_speed, U_FLOOR_MS)
    to = math.radians(wind_from_deg + 180.0)
    ex, ey = math.sin(to), math.cos(to)  # unit vector the air moves along
    dx = rec_xyz[:, None, 0] - src_xy[None, :, 0]
    dy = rec_xyz[:, None, 1] - src_xy[None, :, 1]
    down = dx * ex + dy * ey
    cross = -dx * ey + dy * ex
    sy, sz = sigma_yz(down, stability, sigma_set)
    vert = _reflections(rec_xyz[:, None, 2], src_h[None, :], sz, mixing_height)
    c = np.exp(-0.5 * (cross / sy) ** 2) * vert / (2.0 * math.pi * u * sy * sz)
    c = np.where(down > 0.0, c, 0.0)
    result: Array = 1e6 * c * np.asarray(rate_g_s, dtype=float)[None, :]
    return result


def puff_minute(
    puff_mass_g: Array,
    puff_xy: Array,
    puff_travel_m: Array,
    puff_h: Array,
    rec_xyz: Array,
    *,
    step_vec: tuple[float, float],
    stability: str,
    sigma_set: str,
    mixing_height: float,
    dt_s: float = 60.0,
) -> Array:
    """Mean concentration (ug/m3) at each receptor over one step, summed over the puffs
    given (all of one source), as they move by ``step_vec`` (m); returns (m,).

    Each puff starts the step at ``puff_xy`` having travelled ``puff_travel_m``; its spread
    is taken at the point of its path nearest the receptor. With a puff's passage
    integrated in time, consecutive puffs tile their path and a steady wind gives back
    the steady plume exactly.
    """
    length = math.hypot(*step_vec)
    if length < 1e-6:
        length = U_FLOOR_MS * dt_s
        step_vec = (0.0, length)
    ex, ey = step_vec[0] / length, step_vec[1] / length
    dx = rec_xyz[:, None, 0] - puff_xy[None, :, 0]
    dy = rec_xyz[:, None, 1] - puff_xy[None, :, 1]
    along = dx * ex + dy * ey
    cross = -dx * ey + dy * ex
    travel = puff_travel_m[None, :] + np.clip(along, 0.0, length)
    sy, sz = sigma_yz(travel, stability, sigma_set)
    vert = _reflections(rec_xyz[:, None, 2], puff_h[None, :], sz, mixing_height)
    r2 = math.sqrt(2.0)
    sweep = erf(along / (r2 * sy)) - erf((along - length) / (r2 * sy))
    c = np.exp(-0.5 * (cross / sy) ** 2) * vert * sweep / (4.0 * math.pi * sy * sz * length)
    result: Array = 1e6 * (c @ np.asarray(puff_mass_g, dtype=float))
    return result

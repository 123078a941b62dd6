"""The forward model: a steady Gaussian plume with ground (and mixing-lid) reflection.

Concentration in ug/m3 from a continuous point release of ``q`` g/s, in a frame where
``x`` is the downwind and ``y`` the crosswind distance (m) from the source, ``z`` the
receptor height and ``h`` the release height (m)::

    C = q 1e6 / (2 pi u sy sz) exp(-y^2 / 2 sy^2) V(z, h, sz)
    V = exp(-(z - h)^2 / 2 sz^2) + exp(-(z + h)^2 / 2 sz^2)      (image below ground)

With a mixing height ``zi`` the lid reflects too (images at +-2 n zi); once
``sz > 1.6 zi`` the plume is well mixed: ``C = q 1e6 / (sqrt(2 pi) u sy zi) exp(...)``
(the ISC3 convention). Upwind (``x <= 0``) the concentration is zero.

Dispersion parameters are Briggs (1973): the open-country ("rural") set and the
McElroy-Pooler St Louis ("urban") set, each ``c x (1 + d x)^e``. The coefficients below
were checked against independently computed values (urban D at 1000 m: sy 135.2 m,
sz 122.8 m; rural D at 100 m: 8.0 / 5.6 m) and against the published transcription traps
(urban E-F sz uses d = 0.0015, urban D sy divides by sqrt(1 + 0.0004 x)).

Three widenings serve the hourly inversion:

* ``meander_deg`` -- sub-hour wind-direction meander beyond what the class's sy already
  holds adds ``(x sin(meander))^2`` to ``sy^2`` (see ``cloud.met.excess_meander_deg``);
* ``sigma_y0_m`` / ``sigma_z0_m`` -- initial spreads of a source of finite size (a grid
  cell as a volume source: side / 4.3, as in ISC3), added in quadrature;
* wind speeds below ``U_MIN_MS`` are raised to it (EPA: steady-state models treat calms
  as 1 m/s; the inversion leaves calm hours out altogether).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from protocols.errors import InputError

STABILITY_CLASSES = ("A", "B", "C", "D", "E", "F")
TERRAINS = ("rural", "urban")
U_MIN_MS = 1.0
# beyond this many sigmas the crosswind factor is below 1e-9 and taken as zero
_Y_CUTOFF = 6.5
_LID_REACH = 0.4  # lid images are added where sz > _LID_REACH * zi
_X_MIN_M = 1.0  # the Briggs forms are not meant for x -> 0; a source has some size

# sigma = c x (1 + d x)^e, one row per class A..F: (c, d, e)
_SIGMA_Y: dict[str, tuple[tuple[float, float, float], ...]] = {
    "rural": tuple((c, 0.0001, -0.5) for c in (0.22, 0.16, 0.11, 0.08, 0.06, 0.04)),
    "urban": tuple((c, 0.0004, -0.5) for c in (0.32, 0.32, 0.22, 0.16, 0.11, 0.11)),
}
_SIGMA_Z: dict[str, tuple[tuple[float, float, float], ...]] = {
    "rural": (
        (0.20, 0.0, 0.0),
        (0.12, 0.0, 0.0),
        (0.08, 0.0002, -0.5),
        (0.06, 0.0015, -0.5),
        (0.03, 0.0003, -1.0),
        (0.016, 0.0003, -1.0),
    ),
    "urban": (
        (0.24, 0.001, 0.5),
        (0.24, 0.001, 0.5),
        (0.20, 0.0, 0.0),
        (0.14, 0.0003, -0.5),
        (0.08, 0.0015, -0.5),
        (0.08, 0.0015, -0.5),
    ),
}

FloatArray = NDArray[np.floating[Any]]


def class_index(stability: str) -> int:
    """'A'..'F' (any case) -> 0..5; anything else is an ``InputError``."""
    s = str(stability).strip().upper()
    if s not in STABILITY_CLASSES:
        raise InputError(f"stability class {stability!r} is not one of A-F", value=stability)
    return STABILITY_CLASSES.index(s)


def _terrain(terrain: str) -> str:
    if terrain not in TERRAINS:
        raise InputError(f"terrain {terrain!r} is not 'rural' or 'urban'", value=terrain)
    return terrain


def _briggs(x: FloatArray, coeffs: tuple[float, float, float]) -> FloatArray:
    c, d, e = coeffs
    s = c * x
    if d == 0.0 or e == 0.0:
        return s
    base = 1.0 + d * x
    if e in (-0.5, 0.5):
        root: FloatArray = np.sqrt(base)
        return s / root if e == -0.5 else s * root
    if e == -1.0:
        return s / base
    return s * base**e


def sigmas(
    x_m: ArrayLike, stability: str, terrain: str = "urban"
) -> tuple[FloatArray, FloatArray]:
    """Briggs sigma_y and sigma_z (m) at downwind distance ``x_m`` for one class."""
    ci = class_index(stability)
    t = _terrain(terrain)
    x = np.asarray(x_m, dtype=float)
    return _briggs(x, _SIGMA_Y[t][ci]), _briggs(x, _SIGMA_Z[t][ci])


def sigma_coefficients(stability: str, terrain: str = "urban") -> dict[str, tuple[float, ...]]:
    """The (c, d, e) of ``sigma = c x (1 + d x)^e`` for one class: for documentation."""
    ci = class_index(stability)
    t = _terrain(terrain)
    return {"sigma_y": _SIGMA_Y[t][ci], "sigma_z": _SIGMA_Z[t][ci]}


def vertical_factor(
    z: FloatArray, h: float | FloatArray, sz: FloatArray, zi: float | None
) -> FloatArray:
    """The bracket V(z, h, sz): ground reflection, and mixing-lid images where zi is set.

    Lid images matter only once sz reaches a fair fraction of zi, so they are added only
    where ``sz > 0.4 zi`` (below, the first image is ``exp(-12.5)`` or less), two orders
    of them (the third is below ``exp(-7)`` before the well-mixed form takes over).
    """
    inv2 = -0.5 / (sz * sz)
    v = np.exp((z - h) ** 2 * inv2) + np.exp((z + h) ** 2 * inv2)
    if zi is None or zi <= 0:
        return v
    deep = np.flatnonzero(sz > _LID_REACH * zi)
    if deep.size == 0:
        return v
    zd = z if np.ndim(z) == 0 else np.asarray(z).ravel()[deep]
    hd = h if np.ndim(h) == 0 else np.asarray(h).ravel()[deep]
    szd = sz.ravel()[deep]
    inv2d = inv2.ravel()[deep]
    extra = np.zeros_like(szd)
    for n in (1, 2):
        for sign in (1.0, -1.0):
            off = sign * 2.0 * n * zi
            extra += np.exp((zd - hd + off) ** 2 * inv2d) + np.exp((zd + hd + off) ** 2 * inv2d)
    vd = v.ravel()[deep] + extra
    mixed = szd > 1.6 * zi
    vd = np.where(mixed, math.sqrt(2.0 * math.pi) * szd / zi, vd)
    v = v.copy()
    v.ravel()[deep] = vd
    return v


def _exp_bracket(
    ys: FloatArray,
    sy2: FloatArray,
    z: FloatArray | float,
    h: FloatArray | float,
    sz: FloatArray,
    zi: float | None,
    dtype: np.dtype[Any],
) -> FloatArray:
    """exp(-y^2 / 2 sy^2) V(z, h, sz) with one exponential per entry where it can.

    ``V = 2 exp(-(z^2 + h^2) / 2 sz^2) cosh(z h / sz^2)`` exactly; where ``a = z h / sz^2``
    is below 0.3 (nearly everywhere) cosh is its series to a^4 (relative error < 3e-5),
    elsewhere both exponentials are taken in full, and lid images are added by
    ``vertical_factor`` where the lid is within reach.
    """
    inv_sz2 = dtype.type(1.0) / (sz * sz)
    zh = z * h
    a = zh * inv_sz2
    arg = (ys * ys / sy2 + (z * z + h * h) * inv_sz2) * dtype.type(-0.5)
    a2 = a * a
    series = dtype.type(2.0) + a2 * (dtype.type(1.0) + a2 * dtype.type(1.0 / 12.0))
    out: FloatArray = np.exp(arg) * series
    exact = a > 0.3
    if zi is not None and zi > 0:
        exact |= sz > _LID_REACH * zi
    big = np.flatnonzero(exact)
    if big.size:
        zb = z if np.ndim(z) == 0 else np.asarray(z).ravel()[big]
        hb = h if np.ndim(h) == 0 else np.asarray(h).ravel()[big]
        vb = vertical_factor(zb, hb, sz[big], zi)  # type: ignore[arg-type]
        out[big] = np.exp(ys[big] ** 2 / sy2[big] * dtype.type(-0.5)) * vb
    return out


def plume_kernel(
    x: FloatArray,
    y: FloatArray,
    *,
    z: FloatArray | float,
    h_m: FloatArray | float,
    u_ms: float,
    class_idx: int,
    terrain: str,
    mixing_height_m: float | None = None,
    meander_rad: float = 0.0,
    sigma_y0_m: float = 0.0,
    sigma_z0_m: float = 0.0,
) -> FloatArray:
    """Unit-rate (1 g/s) plume in ug/m3 for one class and wind; the inversion's fast path.

    ``x`` and ``y`` are flat arrays of equal length; ``z`` and ``h_m`` are scalars or
    flat arrays of that length. Only entries downwind and within the crosswind cut-off
    are computed; the rest are zero. The dtype of ``x`` is kept (float32 is safe here:
    distances to 10 km at 1 mm, concentrations to 7 significant digits).
    """
    x = np.asarray(x).ravel()
    dtype = x.dtype if x.dtype in (np.float32, np.float64) else np.dtype(np.float64)
    x = x.astype(dtype, copy=False)
    y = np.asarray(y, dtype=dtype).ravel()
    out = np.zeros(x.shape, dtype=dtype)
    idx = np.flatnonzero(x > 0)
    if idx.size == 0:
        return out
    xs, ys = np.maximum(x[idx], dtype.type(_X_MIN_M)), y[idx]
    sy2 = _briggs(xs, _SIGMA_Y[terrain][class_idx]) ** 2
    if meander_rad > 0:
        sy2 = sy2 + (xs * dtype.type(math.sin(min(meander_rad, math.pi / 3)))) ** 2
    if sigma_y0_m > 0:
        sy2 = sy2 + dtype.type(sigma_y0_m**2)
    keep = np.flatnonzero(ys * ys < dtype.type(_Y_CUTOFF**2) * sy2)
    if keep.size == 0:
        return out
    idx, xs, ys, sy2 = idx[keep], xs[keep], ys[keep], sy2[keep]
    sz = _briggs(xs, _SIGMA_Z[terrain][class_idx])
    if sigma_z0_m > 0:
        sz = np.sqrt(sz * sz + dtype.type(sigma_z0_m**2))
    zz = z if np.ndim(z) == 0 else np.asarray(z, dtype=dtype).ravel()[idx]
    hh = h_m if np.ndim(h_m) == 0 else np.asarray(h_m, dtype=dtype).ravel()[idx]
    conc = _exp_bracket(ys, sy2, zz, hh, sz, mixing_height_m, dtype)
    conc *= dtype.type(1e6 / (2.0 * math.pi * max(float(u_ms), U_MIN_MS))) / (np.sqrt(sy2) * sz)
    out[idx] = conc
    return out


def _sigma_sq(x: FloatArray, coeffs: tuple[float, float, float]) -> FloatArray:
    """sigma^2 = c^2 x^2 (1 + d x)^(2e), without a square root."""
    c, d, e = coeffs
    s2 = x * x * type(x.flat[0])(c * c)
    if d == 0.0 or e == 0.0:
        return s2
    base = 1.0 + d * x
    if e == -0.5:
        return s2 / base
    if e == 0.5:
        return s2 * base
    if e == -1.0:
        return s2 / (base * base)
    return s2 * base ** (2 * e)  # pragma: no cover - every Briggs form is one of the above


_LOG2E = 1.4426950408889634


def unit_plume_dense(
    down: FloatArray,
    cross: FloatArray,
    z: FloatArray | float,
    h: FloatArray | float | np.floating[Any],
    *,
    u_ms: float,
    class_idx: int,
    terrain: str,
    mixing_height_m: float | None = None,
    meander_rad: float = 0.0,
    sigma_y0_m: float = 0.0,
    sigma_z0_m: float = 0.0,
) -> FloatArray:
    """Unit-rate plume (ug/m3 per g/s) on dense float32 arrays, no masks: the same physics
    as ``plume_kernel``, written for the inversion's cache-sized chunks. ``z`` and ``h``
    broadcast against ``down``/``cross``; upwind entries come out zero."""
    f = np.float32
    xd = np.maximum(down, f(_X_MIN_M))
    sy2 = _sigma_sq(xd, _SIGMA_Y[terrain][class_idx])
    if meander_rad > 0:
        sm = f(math.sin(min(meander_rad, math.pi / 3)))
        sy2 += xd * xd * (sm * sm)
    sy2 += f(sigma_y0_m**2)
    sz2 = _sigma_sq(xd, _SIGMA_Z[terrain][class_idx]) + f(sigma_z0_m**2)
    k = f(-0.5 * _LOG2E)
    inv_sz2 = f(1.0) / sz2
    lateral = cross * cross / sy2
    v = np.exp2((lateral + (z - h) ** 2 * inv_sz2) * k)
    v += np.exp2((lateral + (z + h) ** 2 * inv_sz2) * k)
    zi = mixing_height_m
    if zi is not None and zi > 0 and float(np.max(sz2)) > (_LID_REACH * zi) ** 2:
        # images of a near-ground plume in the lid: z and h are small beside 2 n zi
        img = sum(np.exp2(lateral * k + f(-0.5 * _LOG2E * (2 * n * zi) ** 2) * inv_sz2)
                  for n in (1, 2))
        v += f(4.0) * img
        mixed = sz2 > f((1.6 * zi) ** 2)
        if np.any(mixed):
            well = np.exp2(lateral * k) * np.sqrt(sz2) * f(math.sqrt(2.0 * math.pi) / zi)
            v = np.where(mixed, well, v)
    v /= np.sqrt(sy2 * sz2)
    v *= f(1e6 / (2.0 * math.pi * max(float(u_ms), U_MIN_MS)))
    v *= down > 0
    return v


def plume(
    q_g_s: ArrayLike,
    x_m: ArrayLike,
    y_m: ArrayLike,
    z_m: ArrayLike,
    *,
    h_m: ArrayLike,
    u_ms: ArrayLike,
    stability: str | Sequence[str],
    terrain: str = "urban",
    mixing_height_m: float | None = None,
    meander_deg: float = 0.0,
    sigma_y0_m: float = 0.0,
    sigma_z0_m: float = 0.0,
) -> FloatArray:
    """Steady Gaussian plume concentration (ug/m3) with ground reflection; zero upwind.

    All array arguments broadcast, the wind speed and the class included. ``stability`` is
    a Pasquill class "A".."F" (or an array of them); ``terrain`` picks the Briggs "rural"
    or "urban" sigma set. Winds below ``U_MIN_MS`` count as 1 m/s. Keyword extras:
    ``mixing_height_m`` (lid reflection), ``meander_deg`` (extra sub-hour meander),
    ``sigma_y0_m``/``sigma_z0_m`` (initial source size).
    """
    t = _terrain(terrain)
    u_arr = np.asarray(u_ms, dtype=float)
    if not np.all(np.isfinite(u_arr)) or np.any(u_arr < 0):
        raise InputError(f"wind speed {u_ms!r} m/s is not a non-negative number", value=u_ms)
    stab = np.asarray(stability)
    q, x, y, z, h, u, s = np.broadcast_arrays(
        np.asarray(q_g_s, dtype=float),
        np.asarray(x_m, dtype=float),
        np.asarray(y_m, dtype=float),
        np.asarray(z_m, dtype=float),
        np.asarray(h_m, dtype=float),
        u_arr,
        stab,
    )
    out = np.zeros(x.shape, dtype=float)
    for letter in np.unique(s):
        ci = class_index(str(letter))
        sel = s == letter
        out[sel] = plume_kernel(
            x[sel],
            y[sel],
            z=z[sel],
            h_m=h[sel],
            u_ms=1.0,
            class_idx=ci,
            terrain=t,
            mixing_height_m=mixing_height_m,
            meander_rad=math.radians(meander_deg),
            sigma_y0_m=sigma_y0_m,
            sigma_z0_m=sigma_z0_m,
        )
    result: FloatArray = out * q / np.maximum(u, U_MIN_MS)
    return result

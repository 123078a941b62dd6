"""Meteorology for the forward model: Pasquill stability from what the data offer, calms,
sigma_theta and the sub-hour meander it implies.

Stability, best source first (``derive_stability``):

1. an explicit class (MET.csv ``stability``);
2. the Obukhov length ``L`` (Golder 1972 form, ``L_class = a z0^b``): the class whose
   ``1/L`` is nearest;
3. sigma_theta, the standard deviation of the wind direction over the hour (EPA-454/R-99-005
   section 6.4.4 sigma_A method: A >= 22.5 deg, B 17.5, C 12.5, D 7.5, E 3.8, F below; the
   thresholds scale with ``(z0 / 0.15 m)^0.2``), then the EPA wind-speed adjustment (by day
   strong winds push towards D; at night weak winds push A-C towards E/F) [recalled table];
4. wind speed with insolation (Pasquill's table): insolation from the solar elevation at the
   domain's latitude and longitude and the hour, reduced by cloud when cloud is given;
   mixed classes (A-B, B-C, C-D) take the more neutral letter; the night column is
   ">= 4/8 cloud" when cloud is given and says so, else "<= 3/8";
5. nothing usable: D (neutral), the conservative default.

Calms: hours with wind below ``CALM_MS`` (1 m/s) carry no usable direction; the inversion
leaves them out and reports them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from cloud.dispersion import STABILITY_CLASSES

CALM_MS = 1.0
# sigma_A category boundaries (deg) for z0 = 15 cm, EPA-454/R-99-005 6.4.4: A >= 22.5 ...
_SIGMA_A_BOUNDS = (22.5, 17.5, 12.5, 7.5, 3.8)
# a class's typical hourly sigma_theta (deg): the middle of its sigma_A band; the part of a
# measured sigma_theta above this is meander that the class's Briggs sigma_y does not hold
TYPICAL_SIGMA_THETA_DEG = {"A": 25.0, "B": 20.0, "C": 15.0, "D": 10.0, "E": 5.6, "F": 2.5}
# Golder (1972) / Pasquill (1974): L = a z0^b per class; D is infinite (1/L = 0)
_GOLDER = {"A": (-11.4, 0.10), "B": (-26.0, 0.17), "C": (-123.0, 0.30), "E": (123.0, 0.30),
           "F": (26.0, 0.17)}


@dataclass(frozen=True)
class Stability:
    """A derived class and how it was found (``given``, ``obukhov``, ``sigma_theta``,
    ``insolation``, ``default``)."""

    letter: str
    method: str


def solar_elevation_deg(t_epoch_s: float, lat_deg: float, lon_deg: float) -> float:
    """Solar elevation (deg) at a UTC epoch time (NOAA general solar position formulas)."""
    dt = datetime.fromtimestamp(t_epoch_s, tz=UTC)
    doy = dt.timetuple().tm_yday
    hour = dt.hour + dt.minute / 60 + dt.second / 3600
    g = 2 * math.pi / 365 * (doy - 1 + (hour - 12) / 24)
    eqtime = 229.18 * (
        0.000075
        + 0.001868 * math.cos(g)
        - 0.032077 * math.sin(g)
        - 0.014615 * math.cos(2 * g)
        - 0.040849 * math.sin(2 * g)
    )
    decl = (
        0.006918
        - 0.399912 * math.cos(g)
        + 0.070257 * math.sin(g)
        - 0.006758 * math.cos(2 * g)
        + 0.000907 * math.sin(2 * g)
        - 0.002697 * math.cos(3 * g)
        + 0.00148 * math.sin(3 * g)
    )
    tst = hour * 60 + eqtime + 4 * lon_deg
    ha = math.radians(tst / 4 - 180)
    lat = math.radians(lat_deg)
    cos_zen = math.sin(lat) * math.sin(decl) + math.cos(lat) * math.cos(decl) * math.cos(ha)
    return math.degrees(math.asin(max(-1.0, min(1.0, cos_zen))))


def _shift(letter: str, steps: int) -> str:
    i = STABILITY_CLASSES.index(letter) + steps
    return STABILITY_CLASSES[max(0, min(5, i))]


# EPA wind-speed adjustment of a sigma_A class: (upper wind bound, class) steps, then D
_DAY_STEPS = {"A": ((3.0, "A"), (4.0, "B"), (6.0, "C")), "B": ((4.0, "B"), (6.0, "C")),
              "C": ((6.0, "C"),), "D": (), "E": (), "F": ()}
_NIGHT_STEPS = {"A": ((2.9, "F"), (3.6, "E")), "B": ((2.4, "F"), (3.0, "E")),
                "C": ((2.4, "E"),), "D": ((math.inf, "D"),), "E": ((math.inf, "E"),),
                "F": ((math.inf, "F"),)}


def stability_from_sigma_theta(
    sigma_theta_deg: float, u_ms: float, *, daytime: bool, z0_m: float = 0.15
) -> str:
    """EPA sigma_A method with its wind-speed adjustment (by day E and F become D)."""
    scale = (z0_m / 0.15) ** 0.2
    letter = "F"
    for cls, bound in zip(STABILITY_CLASSES, _SIGMA_A_BOUNDS, strict=False):
        if sigma_theta_deg >= bound * scale:
            letter = cls
            break
    steps = _DAY_STEPS[letter] if daytime else _NIGHT_STEPS[letter]
    return next((cls for top, cls in steps if u_ms < top), "D")


def insolation_class(elevation_deg: float, cloud_okta: float | None = None) -> str:
    """'strong' | 'moderate' | 'slight' by day, 'night' below the horizon, 'overcast'.

    Elevation > 60 deg strong, 35-60 moderate, 15-35 slight (Turner's insolation classes);
    with the sun below 15 deg the net radiation is near zero and the hour counts as
    'overcast' (neutral, D); more than 4/8 cloud lowers the class one step, 8/8 makes it
    'overcast'.
    """
    if elevation_deg <= 0:
        return "night"
    if elevation_deg <= 15:
        return "overcast"
    order = ("slight", "moderate", "strong")
    i = 2 if elevation_deg > 60 else 1 if elevation_deg > 35 else 0
    if cloud_okta is not None:
        if cloud_okta >= 8:
            return "overcast"
        if cloud_okta > 4:
            i = max(0, i - 1)
    return order[i]


# Pasquill's table: rows by 10 m wind (upper bounds), columns strong, moderate, slight,
# night >= 4/8 cloud, night <= 3/8 cloud; mixed classes resolved to the more neutral letter
_PASQUILL = (
    (2.0, ("A", "B", "B", "E", "F")),
    (3.0, ("B", "B", "C", "E", "F")),
    (5.0, ("B", "C", "C", "D", "E")),
    (6.0, ("C", "D", "D", "D", "D")),
    (math.inf, ("C", "D", "D", "D", "D")),
)


def stability_from_insolation(u_ms: float, insolation: str, cloud_okta: float | None = None) -> str:
    if insolation == "overcast":
        return "D"
    if insolation == "night":
        col = 3 if cloud_okta is not None and cloud_okta >= 4 else 4
    else:
        col = ("strong", "moderate", "slight").index(insolation)
    for top, row in _PASQUILL:
        if u_ms < top:
            return row[col]
    return "D"  # pragma: no cover - the last row is open-ended


def stability_from_obukhov(obukhov_m: float, z0_m: float) -> str:
    """The class whose Golder ``1/L`` is nearest to ``1/obukhov_m``."""
    inv = 0.0 if not math.isfinite(obukhov_m) or obukhov_m == 0 else 1.0 / obukhov_m
    best, best_d = "D", abs(inv)
    for letter, (a, b) in _GOLDER.items():
        d = abs(inv - 1.0 / (a * z0_m**b))
        if d < best_d:
            best, best_d = letter, d
    return best


def derive_stability(
    u_ms: float,
    t_epoch_s: float,
    *,
    given: str | None = None,
    obukhov_m: float | None = None,
    sigma_theta_deg: float | None = None,
    cloud_okta: float | None = None,
    lat_lon: tuple[float, float] | None = None,
    z0_m: float = 1.0,
    class_from_sigma_theta: bool = True,
) -> Stability:
    """The best class the data support (see the module docstring for the order).

    ``t_epoch_s`` is the middle of the hour; ``lat_lon`` places the domain for the sun.
    ``z0_m`` is the roughness length used by the Obukhov mapping (urban default 1 m).
    ``class_from_sigma_theta=False`` skips step 3: for a sigma_theta taken over the whole
    hour, which holds the hour's meander and would make the air look too unstable (it then
    only widens the plume, ``excess_meander_deg``).
    """
    if given:
        return Stability(given.strip().upper(), "given")
    if obukhov_m is not None and math.isfinite(obukhov_m):
        return Stability(stability_from_obukhov(obukhov_m, z0_m), "obukhov")
    elevation = solar_elevation_deg(t_epoch_s, *lat_lon) if lat_lon else None
    if class_from_sigma_theta and sigma_theta_deg is not None and math.isfinite(sigma_theta_deg):
        # without a position the sun is unknown: use the daytime adjustment, the milder one
        daytime = elevation is None or elevation > 0
        return Stability(
            stability_from_sigma_theta(sigma_theta_deg, u_ms, daytime=daytime), "sigma_theta"
        )
    if elevation is not None:
        ins = insolation_class(elevation, cloud_okta)
        return Stability(stability_from_insolation(u_ms, ins, cloud_okta), "insolation")
    if u_ms >= 6.0:
        return Stability("D", "wind")
    return Stability("D", "default")


def excess_meander_deg(sigma_theta_deg: float | None, stability: str) -> float:
    """The part of an hour's sigma_theta above the class's typical value (deg), or 0."""
    if sigma_theta_deg is None or not math.isfinite(sigma_theta_deg):
        return 0.0
    typ = TYPICAL_SIGMA_THETA_DEG[stability]
    return math.sqrt(max(0.0, sigma_theta_deg**2 - typ**2))


def yamartino_sigma_theta(directions_deg: Iterable[float]) -> float:
    """sigma_theta (deg) of wind-direction samples by Yamartino's single-pass estimator."""
    d = np.radians(np.asarray(list(directions_deg), dtype=float))
    if d.size == 0:
        return math.nan
    sa, ca = float(np.mean(np.sin(d))), float(np.mean(np.cos(d)))
    eps = math.sqrt(max(0.0, 1.0 - (sa * sa + ca * ca)))
    return math.degrees(math.asin(min(1.0, eps)) * (1.0 + 0.1547 * eps**3))


def vector_mean_direction(
    directions_deg: Iterable[float], speeds: Iterable[float] | None = None
) -> float:
    """The direction (deg, from north) of the mean wind vector; speeds weight when given."""
    d = np.radians(np.asarray(list(directions_deg), dtype=float))
    w = np.ones_like(d) if speeds is None else np.asarray(list(speeds), dtype=float)
    ang = math.degrees(math.atan2(float(np.sum(w * np.sin(d))), float(np.sum(w * np.cos(d)))))
    return ang % 360.0


def is_calm(u_ms: float) -> bool:
    return not math.isfinite(u_ms) or u_ms < CALM_MS

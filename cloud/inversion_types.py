"""The inversion's boundary types: input rows, configuration, found sources, the result.

Input rows are what OBS.csv, MET.csv and SITES.csv hold (DESIGN 4.3), already parsed and
validated (``cloud.invert_io`` does that for files and for lists of dicts). Times are epoch
seconds, UTC, at the start of the hour.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from protocols.errors import InputError

SITE_KINDS = ("construction", "industrial", "restaurant", "traffic", "other")
STATION_KINDS = ("reference", "micro", "dust", "met")


@dataclass(frozen=True)
class ObsRow:
    time: int
    station: str
    x_m: float
    y_m: float
    z_m: float
    value: float
    sigma: float | None = None
    kind: str | None = None  # optional extra column: reference | micro | dust | met


@dataclass(frozen=True)
class MetRow:
    time: int
    wind_speed_ms: float
    wind_dir_deg: float
    stability: str | None = None
    sigma_theta_deg: float | None = None
    mixing_height_m: float | None = None
    obukhov_m: float | None = None
    cloud_okta: float | None = None


@dataclass(frozen=True)
class SiteRow:
    site: str
    x_m: float
    y_m: float
    h_m: float | None = None
    kind: str = "other"


@dataclass(frozen=True)
class InversionConfig:
    """Everything the inversion can be told; the defaults are the documented method."""

    cell_m: float = 100.0
    terrain: str = "urban"  # Briggs sigma set: urban | rural
    release_height_m: float = 2.0  # cells without a registered site's height
    sigma_z0_m: float = 2.0  # initial vertical spread of an area source
    model_error: float = 0.5  # f: relative error of the plume model at a point in an hour
    representativeness_ug_m3: float = 2.0  # added in quadrature to every observation error
    # observation error (absolute ug/m3, relative) by station kind when the data give none
    error_by_kind: tuple[tuple[str, float, float], ...] = (
        ("reference", 2.0, 0.03),
        ("micro", 5.0, 0.10),
        ("dust", 6.0, 0.10),
        ("", 5.0, 0.10),
    )
    rate_tau: float = 0.8  # hour-to-hour spread of a source's rate around its mean (0: constant)
    gradient: bool = True  # a spatial background gradient over the window
    station_offset_ug_m3: float = 4.0  # prior sigma of a station's constant offset (0: none)
    max_sources: int = 5
    alpha: float = 0.05  # family-wise false-alarm level of the test for one more source
    threshold: float | None = None  # or the statistic to beat, given outright
    shortlist: int = 48  # cells refitted exactly (stage 2) per search
    refine: bool = True  # sub-cell search in the 3 x 3 neighbourhood of each source
    # the sub-cell position posterior averages its likelihood over these hour-to-hour rate
    # spreads besides rate_tau (equal weights): a steady source's consistent amplitude
    # across hours then helps place it, a varying one is still placed by rate_tau
    refine_rate_taus: tuple[float, ...] = (0.1,)
    site_prior: float = 5.0  # prior odds of a cell holding a registered site vs any cell
    site_tie_m: float = 150.0  # a source within this of a registered site carries its id
    lat_lon: tuple[float, float] | None = None  # the domain's place, for the sun
    z0_m: float = 1.0  # roughness length (m) for the Obukhov-length mapping
    # read the class from MET sigma_theta_deg when no class or Obukhov length is given;
    # False for an hourly sigma_theta (it holds the meander): then it only widens the plume
    class_from_sigma_theta: bool = True
    window_hours: int = 12  # the hourly job's window
    inventory: bool = True
    inventory_sigma_g_s: float = 0.1  # prior sigma of a cell's rate, ordinary cells
    inventory_site_sigma_g_s: float = 0.5  # prior sigma of a cell holding a site
    inventory_corr_m: float = 200.0  # prior correlation length
    inventory_iterations: int = 40

    def __post_init__(self) -> None:
        if self.terrain not in ("urban", "rural"):
            raise InputError(f"terrain {self.terrain!r} is not 'urban' or 'rural'")
        if not (self.cell_m > 0 and math.isfinite(self.cell_m)):
            raise InputError(f"cell size {self.cell_m!r} is not a positive number")
        if self.model_error < 0 or self.max_sources < 0 or self.window_hours < 1:
            raise InputError("model_error and max_sources must be >= 0, window_hours >= 1")

    def error_for(self, kind: str | None) -> tuple[float, float]:
        table = {k: (a, r) for k, a, r in self.error_by_kind}
        return table.get(kind or "", table[""])


@dataclass(frozen=True)
class FoundSource:
    x_m: float  # cell centre
    y_m: float
    rate_g_s: float
    rate_sigma_g_s: float
    confidence: float  # posterior mass of the cell and its 8 neighbours
    site: str | None = None
    cell: int = -1
    x_refined_m: float | None = None
    y_refined_m: float | None = None
    significance: float = 0.0  # likelihood-ratio statistic (scaled) when it was added
    edge: bool = False  # in the outermost ring of cells: may be a source outside

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "x_m": round(self.x_m, 1),
            "y_m": round(self.y_m, 1),
            "rate_g_s": round(self.rate_g_s, 6),
            "rate_sigma_g_s": round(self.rate_sigma_g_s, 6),
            "confidence": round(self.confidence, 4),
        }
        if self.site is not None:
            out["site"] = self.site
        out["cell"] = self.cell
        if self.x_refined_m is not None and self.y_refined_m is not None:
            out["x_refined_m"] = round(self.x_refined_m, 1)
            out["y_refined_m"] = round(self.y_refined_m, 1)
        out["significance"] = round(self.significance, 2)
        if self.edge:
            out["edge"] = True
        return out


@dataclass(frozen=True)
class Inventory:
    """A gridded top-down inventory: posterior mean and sigma per cell (g/s)."""

    nx: int
    ny: int
    x0: float
    y0: float
    cell: float
    mean: np.ndarray  # (ny, nx)
    sigma: np.ndarray  # (ny, nx)
    prior_mean: np.ndarray  # (ny, nx)
    prior_sigma: np.ndarray  # (ny, nx)
    iterations: int = 0


@dataclass(frozen=True)
class InversionResult:
    sources: tuple[FoundSource, ...]
    background_ug_m3: float
    residual_rms_ug_m3: float
    background_by_hour: tuple[tuple[int, float], ...] = ()
    gradient_ug_m3_per_km: tuple[float, float] = (0.0, 0.0)
    hours_used: tuple[int, ...] = ()
    calm_hours: tuple[int, ...] = ()
    hours_without_met: tuple[int, ...] = ()
    n_obs: int = 0
    noise_scale: float = 1.0  # sqrt of the reduced chi-square of the final fit
    stability_by_hour: tuple[tuple[int, str, str], ...] = ()  # (time, class, how)
    warnings: tuple[str, ...] = ()
    surface: np.ndarray | None = field(default=None, repr=False)  # (ny, nx) posterior map
    inventory: Inventory | None = field(default=None, repr=False)
    grid: tuple[float, float, float, float, float] = (0.0, 0.0, 0.0, 0.0, 100.0)

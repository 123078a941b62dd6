"""Identical-twin data for the inversion's unit tests: observations made with the
inversion's own forward model, so exact recovery is the expected answer."""

from __future__ import annotations

import numpy as np

from cloud.inversion_matrix import HourMet, point_responses
from cloud.inversion_types import MetRow, ObsRow

T0 = 1748822400  # 2025-06-02T00:00Z
DOMAIN = (0.0, 0.0, 3000.0, 3000.0)
# eight hours of turning wind (from-directions), speeds and classes
WINDS = ((270.0, 3.0, "D"), (315.0, 2.5, "D"), (0.0, 3.5, "C"), (45.0, 2.0, "E"),
         (90.0, 3.0, "D"), (135.0, 4.0, "C"), (180.0, 2.5, "E"), (225.0, 3.0, "D"))


def stations(spacing: float = 500.0) -> list[tuple[str, float, float, float]]:
    out = []
    rng = np.random.default_rng(0)
    for j in range(6):
        for i in range(6):
            x = (i + 0.5) * spacing + rng.uniform(-100, 100)
            y = (j + 0.5) * spacing + rng.uniform(-100, 100)
            out.append((f"S{j}{i}", float(x), float(y), 4.0 if (i + j) % 5 else 12.0))
    return out


def make(
    sources: list[tuple[float, float, float]],
    *,
    noise: float = 0.0,
    seed: int = 1,
    hours: int = 8,
    background: float = 40.0,
    gradient: tuple[float, float] = (2.0, -1.0),
    h_m: float = 2.0,
) -> tuple[list[ObsRow], list[MetRow]]:
    """(obs, met) for sources (x, y, rate g/s), point sources at height ``h_m``."""
    rng = np.random.default_rng(seed)
    st = stations()
    rec = np.array([[x, y, z] for _, x, y, z in st])
    obs: list[ObsRow] = []
    met: list[MetRow] = []
    for k in range(hours):
        d, u, cls = WINDS[k % len(WINDS)]
        t = T0 + 3600 * k
        met.append(MetRow(t, u, d, cls))
        hm = HourMet(u, d, cls)
        conc = np.zeros(len(st))
        for x, y, q in sources:
            conc += q * point_responses(np.array([x]), np.array([y]), h_m, rec, hm,
                                        terrain="urban", sigma_y0_m=100 / 3 / 4.3,
                                        sigma_z0_m=2.0, dtype=np.float64)[:, 0]
        bg = background + 5.0 * np.sin(k) + gradient[0] * (rec[:, 0] - 1500) / 1000 \
            + gradient[1] * (rec[:, 1] - 1500) / 1000
        vals = bg + conc + noise * rng.standard_normal(len(st))
        for (sid, x, y, z), v in zip(st, vals, strict=True):
            obs.append(ObsRow(t, sid, x, y, z, float(v), sigma=max(noise, 1.0)))
    return obs, met

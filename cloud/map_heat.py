"""What the one-map page draws of an hour's inversion beyond RESULT.json: the likelihood
surface (posterior probability of the first source per cell) and the gridded inventory
(posterior mean and sigma per cell), kept sparse and rounded to three significant digits
so they can be stored with every hour's result (at most ``max_cells`` cells each: a few
kilobytes, about 25 kB at worst).

``heat_layers(result)`` returns the ``heat`` entry the hourly job saves beside the result::

    {"x0": m, "y0": m, "cell_m": 100,
     "surface": {"max": p, "cells": [[ix, iy, p], ...]},          # p sums to 1 over the grid
     "inventory": {"x0": m, "y0": m, "cell_m": 100, "unit": "g/s", "max": g,
                   "cells": [[ix, iy, mean, sigma], ...]}}

Cell ``(ix, iy)`` spans ``x0 + ix * cell_m`` to ``x0 + (ix + 1) * cell_m`` (east) and the same
in y (north). The surface keeps cells within ``surface_floor`` of its peak; the inventory
keeps cells whose mean is positive and at least ``inventory_floor`` of the largest.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from cloud.inversion_types import InversionResult


def _sig(v: float, digits: int = 3) -> float:
    """``v`` rounded to ``digits`` significant digits (JSON stays small and stable)."""
    if v == 0.0 or not math.isfinite(v):
        return 0.0
    return round(v, digits - 1 - math.floor(math.log10(abs(v))))


def _top(values: np.ndarray, keep: np.ndarray, max_cells: int) -> list[tuple[int, int]]:
    """(iy, ix) of the kept cells, the largest values first, at most ``max_cells``."""
    iy, ix = np.nonzero(keep)
    order = np.argsort(-values[iy, ix], kind="stable")[:max_cells]
    return [(int(iy[k]), int(ix[k])) for k in order]


def heat_layers(
    result: InversionResult,
    *,
    max_cells: int = 800,
    surface_floor: float = 1e-3,
    inventory_floor: float = 0.05,
) -> dict[str, Any]:
    """The sparse surface and inventory of ``result`` (either may be absent)."""
    x0, y0, _x1, _y1, cell = result.grid
    out: dict[str, Any] = {"x0": x0, "y0": y0, "cell_m": cell}
    surf = result.surface
    if surf is not None and surf.size and np.isfinite(surf).all() and float(surf.max()) > 0:
        peak = float(surf.max())
        cells = _top(surf, surf >= peak * surface_floor, max_cells)
        out["surface"] = {
            "max": _sig(peak),
            "cells": [[ix, iy, _sig(float(surf[iy, ix]))] for iy, ix in cells],
        }
    inv = result.inventory
    if inv is not None and inv.mean.size:
        mean = np.where(np.isfinite(inv.mean), inv.mean, 0.0)
        top = float(mean.max())
        cells = _top(mean, mean >= top * inventory_floor, max_cells) if top > 0 else []
        out["inventory"] = {
            "x0": inv.x0,
            "y0": inv.y0,
            "cell_m": inv.cell,
            "unit": "g/s",
            "max": _sig(max(top, 0.0)),
            "cells": [
                [ix, iy, _sig(float(mean[iy, ix])), _sig(float(inv.sigma[iy, ix]))]
                for iy, ix in cells
            ],
        }
    return out

"""The source-receptor matrix H: the concentration at each station-hour per unit emission
(1 g/s) from each grid cell, built vectorised and cached per hour.

One block per hour (rows: that hour's stations, columns: cells), float32. A block depends
only on the hour's meteorology, the stations' positions and the grid, so blocks are cached
under that key and reused by every window that contains the hour (the hourly job builds
one new block an hour).

Cells are area sources, not points: far from a receptor a cell acts as a volume source of
lateral size ``cell / 4.3`` (ISC3's rule) centred in the cell; within ``near_cells`` cell
widths of a receptor the cell is integrated over a ``sub x sub`` lattice of point
sources, so a receptor inside or beside a cell sees a finite, smooth response instead of
the point source's singularity.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from cloud.dispersion import class_index, plume_kernel, unit_plume_dense
from protocols.errors import InputError

F32 = np.float32


@dataclass(frozen=True)
class Grid:
    """A regular grid of square cells over the domain (x0, y0)-(x1, y1), row-major from
    the south-west corner: cell ``j`` is column ``j % nx``, row ``j // nx``."""

    x0: float
    y0: float
    x1: float
    y1: float
    cell: float = 100.0

    def __post_init__(self) -> None:
        if not (self.x1 > self.x0 and self.y1 > self.y0):
            raise InputError(f"domain {self.x0},{self.y0},{self.x1},{self.y1} has no area")
        if not (self.cell > 0 and math.isfinite(self.cell)):
            raise InputError(f"cell size {self.cell} is not a positive number")
        if self.nx * self.ny > 250_000:
            raise InputError(f"{self.nx} x {self.ny} cells is too many (at most 250,000)")

    @property
    def nx(self) -> int:
        return max(1, math.ceil((self.x1 - self.x0) / self.cell - 1e-9))

    @property
    def ny(self) -> int:
        return max(1, math.ceil((self.y1 - self.y0) / self.cell - 1e-9))

    @property
    def size(self) -> int:
        return self.nx * self.ny

    def centres(self) -> tuple[np.ndarray, np.ndarray]:
        """Cell-centre x and y (m), each of length ``size``."""
        xs = self.x0 + (np.arange(self.nx) + 0.5) * self.cell
        ys = self.y0 + (np.arange(self.ny) + 0.5) * self.cell
        gx, gy = np.meshgrid(xs, ys)
        return gx.ravel(), gy.ravel()

    def cell_of(self, x: float, y: float) -> int | None:
        """The index of the cell holding (x, y), or None outside the grid."""
        i = math.floor((x - self.x0) / self.cell)
        j = math.floor((y - self.y0) / self.cell)
        if 0 <= i < self.nx and 0 <= j < self.ny:
            return j * self.nx + i
        return None

    def neighbours(self, j: int, radius: int = 1) -> np.ndarray:
        """Cells within ``radius`` cells of ``j`` (a (2r+1)^2 block, clipped), ``j`` included."""
        ci, cj = j % self.nx, j // self.nx
        out = [
            b * self.nx + a
            for b in range(max(0, cj - radius), min(self.ny, cj + radius + 1))
            for a in range(max(0, ci - radius), min(self.nx, ci + radius + 1))
        ]
        return np.array(out, dtype=np.int64)


@dataclass(frozen=True)
class HourMet:
    """What the forward model needs of one hour (already validated, not calm)."""

    wind_speed_ms: float
    wind_dir_deg: float  # from
    stability: str
    meander_deg: float = 0.0
    mixing_height_m: float | None = None


def point_responses(
    src_x: np.ndarray,
    src_y: np.ndarray,
    src_h: np.ndarray | float,
    rec: np.ndarray,
    met: HourMet,
    *,
    terrain: str,
    sigma_y0_m: float = 0.0,
    sigma_z0_m: float = 0.0,
    dtype: type[np.floating[Any]] = F32,
) -> np.ndarray:
    """(n_receptors, n_sources) unit-rate concentrations for point/volume sources."""
    to = math.radians(met.wind_dir_deg + 180.0)
    ex, ey = dtype(math.sin(to)), dtype(math.cos(to))
    sx = np.asarray(src_x, dtype=dtype)[None, :]
    sy = np.asarray(src_y, dtype=dtype)[None, :]
    rx = rec[:, 0:1].astype(dtype)
    ry = rec[:, 1:2].astype(dtype)
    down = (rx - sx) * ex + (ry - sy) * ey
    n_src = down.shape[1]
    out = np.zeros(down.shape, dtype=dtype)
    rows, cols = np.nonzero(down > 0)
    if rows.size == 0:
        return out
    flat = rows * n_src + cols
    cross = (ry[rows, 0] - sy[0, cols]) * ex - (rx[rows, 0] - sx[0, cols]) * ey
    h = src_h if np.ndim(src_h) == 0 else np.asarray(src_h, dtype=dtype)[cols]
    out.ravel()[flat] = plume_kernel(
        down.ravel()[flat],
        cross,
        z=rec[:, 2].astype(dtype)[rows],
        h_m=h,
        u_ms=met.wind_speed_ms,
        class_idx=class_index(met.stability),
        terrain=terrain,
        mixing_height_m=met.mixing_height_m,
        meander_rad=math.radians(met.meander_deg),
        sigma_y0_m=sigma_y0_m,
        sigma_z0_m=sigma_z0_m,
    )
    return out


def hour_block(
    grid: Grid,
    rec: np.ndarray,
    met: HourMet,
    cell_h: np.ndarray | float,
    *,
    terrain: str = "urban",
    sigma_z0_m: float = 2.0,
    near_cells: float = 2.5,
    sub: int = 5,
) -> np.ndarray:
    """H for one hour: (n_receptors, n_cells) float32, ug/m3 per g/s from each cell."""
    cx, cy = grid.centres()
    block = _far_field(grid, rec, met, cell_h, terrain=terrain, sigma_z0_m=sigma_z0_m)
    # near field: integrate each cell near a receptor over a sub x sub lattice
    radius = near_cells * grid.cell
    span = math.ceil(near_cells) + 1
    pairs_r: list[np.ndarray] = []
    pairs_c: list[np.ndarray] = []
    for i in range(rec.shape[0]):
        ci = math.floor((rec[i, 0] - grid.x0) / grid.cell)
        cj = math.floor((rec[i, 1] - grid.y0) / grid.cell)
        a = np.arange(max(0, ci - span), min(grid.nx, ci + span + 1))
        b = np.arange(max(0, cj - span), min(grid.ny, cj + span + 1))
        if a.size == 0 or b.size == 0:
            continue
        cells = (b[:, None] * grid.nx + a[None, :]).ravel()
        d2 = (cx[cells] - rec[i, 0]) ** 2 + (cy[cells] - rec[i, 1]) ** 2
        cells = cells[d2 < radius * radius]
        pairs_r.append(np.full(cells.size, i))
        pairs_c.append(cells)
    if not pairs_r:
        return block
    pr, pc = np.concatenate(pairs_r), np.concatenate(pairs_c)
    offs = (np.arange(sub) + 0.5) / sub - 0.5
    ox, oy = (a.ravel() * grid.cell for a in np.meshgrid(offs, offs))
    n_sub = ox.size
    ph = cell_h if np.ndim(cell_h) == 0 else np.repeat(np.asarray(cell_h)[pc], n_sub)
    # one receptor per (pair, sub-point): evaluate pairwise, not as a full matrix
    vals = _pairwise(
        (cx[pc][:, None] + ox[None, :]).ravel(),
        (cy[pc][:, None] + oy[None, :]).ravel(),
        ph,
        np.repeat(rec[pr], n_sub, axis=0),
        met,
        terrain=terrain,
        sigma_y0_m=grid.cell / sub / 4.3,
        sigma_z0_m=sigma_z0_m,
    )
    block[pr, pc] = vals.reshape(pr.size, n_sub).mean(axis=1)
    return block


def _far_field(
    grid: Grid,
    rec: np.ndarray,
    met: HourMet,
    cell_h: np.ndarray | float,
    *,
    terrain: str,
    sigma_z0_m: float,
    chunk: int = 8,
) -> np.ndarray:
    """Every cell as a volume source at its centre, in chunks of receptors that fit in
    the processor's cache (several times faster than whole-matrix passes)."""
    cx, cy = (a.astype(F32) for a in grid.centres())
    h = F32(cell_h) if np.ndim(cell_h) == 0 else np.asarray(cell_h, dtype=F32)[None, :]
    to = math.radians(met.wind_dir_deg + 180.0)
    ex, ey = F32(math.sin(to)), F32(math.cos(to))
    out = np.empty((rec.shape[0], cx.size), dtype=F32)
    r32 = rec.astype(F32)
    for i in range(0, rec.shape[0], chunk):
        r = r32[i : i + chunk]
        dxr = r[:, 0:1] - cx
        dyr = r[:, 1:2] - cy
        down = dxr * ex
        down += dyr * ey
        cross = dyr * ex
        cross -= dxr * ey
        out[i : i + chunk] = unit_plume_dense(
            down, cross, r[:, 2:3], h,
            u_ms=met.wind_speed_ms, class_idx=class_index(met.stability), terrain=terrain,
            mixing_height_m=met.mixing_height_m, meander_rad=math.radians(met.meander_deg),
            sigma_y0_m=grid.cell / 4.3, sigma_z0_m=sigma_z0_m,
        )
    return out


def _pairwise(
    src_x: np.ndarray,
    src_y: np.ndarray,
    src_h: np.ndarray | float,
    rec: np.ndarray,
    met: HourMet,
    *,
    terrain: str,
    sigma_y0_m: float,
    sigma_z0_m: float,
) -> np.ndarray:
    """Unit-rate concentration for source k at receptor k (equal-length lists)."""
    to = math.radians(met.wind_dir_deg + 180.0)
    ex, ey = math.sin(to), math.cos(to)
    dx, dy = rec[:, 0] - src_x, rec[:, 1] - src_y
    return plume_kernel(
        (dx * ex + dy * ey).astype(F32),
        (dy * ex - dx * ey).astype(F32),
        z=rec[:, 2].astype(F32),
        h_m=src_h if np.ndim(src_h) == 0 else np.asarray(src_h, dtype=F32),
        u_ms=met.wind_speed_ms,
        class_idx=class_index(met.stability),
        terrain=terrain,
        mixing_height_m=met.mixing_height_m,
        meander_rad=math.radians(met.meander_deg),
        sigma_y0_m=sigma_y0_m,
        sigma_z0_m=sigma_z0_m,
    )


class MatrixCache:
    """Hour blocks kept by (met, receptors, grid, heights, terrain); least recently used
    blocks leave first. Share one cache between runs to build each hour once."""

    def __init__(self, max_blocks: int = 48) -> None:
        self.max_blocks = max_blocks
        self._blocks: OrderedDict[str, np.ndarray] = OrderedDict()
        self.built = 0
        self.reused = 0

    @staticmethod
    def key(grid: Grid, rec: np.ndarray, met: HourMet, cell_h: np.ndarray, terrain: str,
            sigma_z0_m: float) -> str:
        h = hashlib.sha256()
        h.update(repr((grid, met, terrain, sigma_z0_m)).encode())
        h.update(np.ascontiguousarray(rec, dtype=np.float64).tobytes())
        h.update(np.ascontiguousarray(cell_h, dtype=np.float64).tobytes())
        return h.hexdigest()

    def block(self, grid: Grid, rec: np.ndarray, met: HourMet, cell_h: np.ndarray, *,
              terrain: str, sigma_z0_m: float) -> np.ndarray:
        k = self.key(grid, rec, met, cell_h, terrain, sigma_z0_m)
        found = self._blocks.get(k)
        if found is not None:
            self._blocks.move_to_end(k)
            self.reused += 1
            return found
        made = hour_block(grid, rec, met, cell_h, terrain=terrain, sigma_z0_m=sigma_z0_m)
        made.setflags(write=False)
        self._blocks[k] = made
        self.built += 1
        while len(self._blocks) > self.max_blocks:
            self._blocks.popitem(last=False)
        return made

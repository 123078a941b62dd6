"""The inversion's PNG map: the likelihood surface of the first source, stations, the
hours' winds, registered sites and found sources; beside it the gridded inventory.

matplotlib is imported inside ``write_map`` (with the non-interactive Agg back end), so
importing this module costs nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cloud.inversion_types import InversionResult, MetRow, ObsRow, SiteRow
from protocols.errors import InputError

_KIND_STYLE = {"reference": ("s", "black"), "micro": ("o", "dimgray"), "dust": ("^", "saddlebrown"),
               "met": ("D", "navy"), None: ("o", "dimgray")}


def write_map(
    path: Path,
    result: InversionResult,
    obs: Sequence[ObsRow],
    met: Sequence[MetRow],
    sites: Sequence[SiteRow] = (),
) -> None:
    """Draw the map to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    x0, y0, x1, y1, _ = result.grid
    panels = 2 if result.inventory is not None else 1
    fig, axes = plt.subplots(1, panels, figsize=(6.5 * panels, 6.0), squeeze=False)
    ax = axes[0][0]
    if result.surface is not None:
        surf = np.log10(np.maximum(result.surface / max(result.surface.max(), 1e-300), 1e-6))
        im = ax.imshow(surf, origin="lower", extent=(x0, x1, y0, y1), cmap="magma_r",
                       vmin=-6, vmax=0, interpolation="nearest")
        fig.colorbar(im, ax=ax, shrink=0.8, label="log10 posterior (first source)")
    _stations(ax, obs)
    if sites:
        ax.scatter([s.x_m for s in sites], [s.y_m for s in sites], marker="x", s=14,
                   color="tab:blue", linewidths=0.8, label="registered sites")
    _sources(ax, result)
    _winds(ax, result, met, (x0, y0, x1, y1))
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_aspect("equal")
    ax.set_xlabel("x (m, east)")
    ax.set_ylabel("y (m, north)")
    ax.set_title("likelihood surface, stations, winds, sources")
    ax.legend(loc="upper right", fontsize=7, framealpha=0.8)
    if result.inventory is not None:
        inv = result.inventory
        ax2 = axes[0][1]
        lim = float(np.max(np.abs(inv.mean))) or 1.0
        im2 = ax2.imshow(inv.mean, origin="lower", cmap="RdBu_r", vmin=-lim, vmax=lim,
                         extent=(inv.x0, inv.x0 + inv.nx * inv.cell,
                                 inv.y0, inv.y0 + inv.ny * inv.cell), interpolation="nearest")
        fig.colorbar(im2, ax=ax2, shrink=0.8, label="posterior rate per cell (g/s)")
        _sources(ax2, result)
        ax2.set_aspect("equal")
        ax2.set_title("gridded inventory (posterior mean)")
        ax2.set_xlabel("x (m, east)")
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=110)
    except OSError as exc:
        raise InputError(f"{path}: cannot write: {exc}", file=str(path)) from None
    finally:
        plt.close(fig)


def _stations(ax: object, obs: Sequence[ObsRow]) -> None:
    seen: dict[str, ObsRow] = {}
    for r in obs:
        seen.setdefault(r.station, r)
    by_kind: dict[str | None, list[ObsRow]] = {}
    for r in seen.values():
        by_kind.setdefault(r.kind, []).append(r)
    for kind, rows in by_kind.items():
        marker, color = _KIND_STYLE.get(kind, _KIND_STYLE[None])
        ax.scatter([r.x_m for r in rows], [r.y_m for r in rows], marker=marker, s=16,  # type: ignore[attr-defined]
                   facecolors="none", edgecolors=color, label=f"stations ({kind or 'all'})")


def _sources(ax: object, result: InversionResult) -> None:
    for i, s in enumerate(result.sources):
        ax.scatter([s.x_m], [s.y_m], marker="*", s=180, color="cyan", edgecolors="black",  # type: ignore[attr-defined]
                   zorder=5, label="found sources" if i == 0 else None)
        label = f"{s.rate_g_s:.2f}±{s.rate_sigma_g_s:.2f} g/s"
        if s.site:
            label += f" ({s.site})"
        ax.annotate(label, (s.x_m, s.y_m), xytext=(6, 6), textcoords="offset points",  # type: ignore[attr-defined]
                    fontsize=7)


def _winds(ax: object, result: InversionResult, met: Sequence[MetRow],
           box: tuple[float, float, float, float]) -> None:
    """One arrow per hour used (towards where the wind blows), in the lower-left corner."""
    used = set(result.hours_used)
    rows = [m for m in met if m.time in used]
    if not rows:
        return
    x0, y0, x1, y1 = box
    size = 0.12 * min(x1 - x0, y1 - y0)
    ox, oy = x0 + 0.15 * (x1 - x0), y0 + 0.15 * (y1 - y0)
    top = max(m.wind_speed_ms for m in rows) or 1.0
    for m in rows:
        to = math.radians(m.wind_dir_deg + 180.0)
        length = size * m.wind_speed_ms / top
        ax.arrow(ox, oy, length * math.sin(to), length * math.cos(to), width=size * 0.01,  # type: ignore[attr-defined]
                 head_width=size * 0.06, color="tab:green", alpha=0.7, length_includes_head=True)
    ax.annotate("hourly winds", (ox, oy - 0.3 * size), fontsize=7, ha="center",  # type: ignore[attr-defined]
                color="tab:green")

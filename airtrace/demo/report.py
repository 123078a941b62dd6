"""The demo's report folder: a map PNG per inverted hour (stations, the hour's wind, the
likelihood surface, the sources found and the truth) and ``index.html`` tying them to the
summary. Drawn from what the central service stored (each hour's RESULT.json with its heat
layer) and from the world's truth; matplotlib with the Agg back end."""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

from airtrace.demo import tally

_KIND = {"reference": ("s", "black"), "micro": ("o", "dimgray"), "dust": ("^", "saddlebrown"),
         "met": ("D", "navy")}


def hour_map(path: Path, world: Any, result: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    x0, y0, x1, y1 = world.domain
    fig, ax = plt.subplots(figsize=(6.4, 6.0))
    heat = result.get("heat") or {}
    surf = heat.get("surface")
    if surf and surf.get("cells"):
        cell = float(heat.get("cell_m", 100.0))
        hx0, hy0 = float(heat.get("x0", x0)), float(heat.get("y0", y0))
        peak = float(surf.get("max") or 1.0) or 1.0
        cmap = plt.get_cmap("magma_r")
        for ix, iy, v in surf["cells"]:
            level = 1.0 + math.log10(max(v / peak, 1e-3)) / 3.0  # 1e-3..1 -> 0..1
            if level <= 0.05:
                continue
            ax.add_patch(Rectangle((hx0 + ix * cell, hy0 + iy * cell), cell, cell,
                                   color=cmap(level), alpha=0.15 + 0.75 * level, linewidth=0))
    for kind, (marker, color) in _KIND.items():
        pts = [s for s in world.stations if s.kind == kind]
        if pts:
            ax.scatter([s.x_m for s in pts], [s.y_m for s in pts], marker=marker, s=22,
                       facecolors="none", edgecolors=color, label=f"{kind} stations")
    ax.scatter([s.x_m for s in world.sites], [s.y_m for s in world.sites], marker="x", s=14,
               color="tab:blue", linewidths=0.8, label="registered sites")
    ax.scatter([s.x_m for s in world.sources], [s.y_m for s in world.sources], marker="o",
               s=160, facecolors="none", edgecolors="red", linewidths=2.0, label="truth (hidden)")
    for i, s in enumerate(result.get("sources", [])):
        ax.scatter([s["x_m"]], [s["y_m"]], marker="*", s=200, color="cyan", edgecolors="black",
                   zorder=5, label="found" if i == 0 else None)
        ax.annotate(f"{s['rate_g_s']:.2f}±{s['rate_sigma_g_s']:.2f} g/s"
                    + (f" {s['site']}" if s.get("site") else ""), (s["x_m"], s["y_m"]),
                    xytext=(6, 6), textcoords="offset points", fontsize=7)
    met = world.met(float(result["hour_start"]) + 1800.0)
    size = 0.12 * min(x1 - x0, y1 - y0)
    ox, oy = x0 + 0.12 * (x1 - x0), y0 + 0.12 * (y1 - y0)
    to = math.radians(met.wind_dir_deg + 180.0)
    ax.arrow(ox, oy, size * math.sin(to), size * math.cos(to), width=size * 0.03,
             head_width=size * 0.15, color="tab:green", length_includes_head=True)
    ax.annotate(f"wind {met.wind_speed_ms:.1f} m/s from {met.wind_dir_deg:.0f}°, "
                f"class {met.stability}", (x0 + 0.02 * (x1 - x0), y0 + 0.02 * (y1 - y0)),
                fontsize=7, color="darkgreen")
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_aspect("equal")
    ax.set_xlabel("x (m, east)")
    ax.set_ylabel("y (m, north)")
    hour = str(result.get("time") or _iso(result["hour_start"]))
    ax.set_title(f"{hour}: likelihood, stations, wind, sources", fontsize=9)
    ax.legend(loc="upper right", fontsize=6, framealpha=0.8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _iso(t: float) -> str:
    from protocols.timefmt import to_iso

    return to_iso(float(t), ms=False)


def write_report(demo: Any, summary: dict[str, Any]) -> None:
    out: Path = demo.out
    maps = out / "maps"
    maps.mkdir(parents=True, exist_ok=True)
    for old in maps.glob("*.png"):
        old.unlink()
    start, end = int(demo.world.start), int(demo.world.start) + demo.opts.hours * 3600
    results = [r for r in tally.inversion_results(demo.work / "cloud.db")
               if start <= r["hour"] < end]
    figures = []
    for r in results:
        name = f"hour-{_iso(r['hour'])[:13].replace(':', '')}.png"
        hour_map(maps / name, demo.world, r)
        figures.append((name, r))
    (out / "index.html").write_text(page(summary, figures), encoding="utf-8")


def page(summary: dict[str, Any], figures: list[tuple[str, dict[str, Any]]]) -> str:
    e = html.escape
    def num(v: Any, fmt: str = "{:.0f}") -> str:
        return "—" if v is None else fmt.format(v)

    rows = "".join(
        f"<tr><td>{e(str(s['kind']))}</td><td>{e(str(s['site'] or '(unregistered)'))}</td>"
        f"<td>{s['true_x_m']:.0f}, {s['true_y_m']:.0f}</td>"
        f"<td>{num(s['found_x_m'])}, {num(s['found_y_m'])}</td>"
        f"<td>{num(s['distance_m'])}</td><td>{num(s['rate_ratio'], '{:.2f}')}</td>"
        f"<td>{s['hours_found']}/{s['hours_inverted']}</td></tr>"
        for s in summary["sources"])
    events = "".join(f"<tr><td>{e(ev['id'])}</td><td>{e(ev['level'])}</td><td>{e(ev['state'])}</td>"
                     f"<td>{e(str(ev['site'] or ''))}</td><td>{e(ev['title'])}</td></tr>"
                     for ev in summary["events"])
    def labels(a: dict[str, Any]) -> str:
        return ", ".join(f"{k}={v}" for k, v in sorted(a["labels"].items()))

    alerts = "".join(f"<tr><td>{e(a['rule'])}</td><td>{e(a['level'])}</td><td>{e(a['state'])}</td>"
                     f"<td>{e(labels(a))}</td></tr>" for a in summary["alerts"])
    hours = "".join(
        f'<figure><img src="maps/{e(name)}" width="576" alt="{e(name)}"><figcaption>'
        f"{e(_iso(r['hour']))}: {len(r.get('sources', []))} source(s), {r.get('n_obs', 0)} "
        f"observations</figcaption></figure>" for name, r in reversed(figures))
    doc = {k: v for k, v in summary.items() if k not in ("per_station",)}
    chaos = ""
    if summary["chaos"]:
        chaos = "; chaos: killed and restarted " + e(" and ".join(summary["chaos"]))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>airtrace demo report</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:75em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.2em .5em;font-size:.9em}}
figure{{display:inline-block;margin:.5em}}
pre{{background:#f6f6f6;padding:1em;overflow:auto;max-height:30em}}</style></head><body>
<h1>airtrace demo</h1>
<p>{summary['stations']} stations, {summary['hours']} simulated hours (seed {summary['seed']}),
{summary['wall_s']:.0f} s of wall time{chaos}.</p>
<h2>Readings</h2>
<table><tr><th>produced</th><th>stored</th><th>lost</th><th>doubled</th></tr>
<tr><td>{summary['readings_produced']:,}</td><td>{summary['readings_stored']:,}</td>
<td>{summary['lost']}</td><td>{summary['doubled']}</td></tr></table>
<h2>Sources: found vs truth</h2>
<table><tr><th>kind</th><th>site</th><th>true x, y (m)</th><th>found x, y (m)</th>
<th>distance (m)</th><th>rate found / true</th><th>hours found</th></tr>{rows}</table>
<h2>Alerts</h2><table><tr><th>rule</th><th>level</th><th>state</th><th>labels</th></tr>{alerts}</table>
<h2>Events</h2><table><tr><th>id</th><th>level</th><th>state</th><th>site</th><th>title</th></tr>{events}</table>
<h2>Hour by hour</h2>{hours}
<h2>summary.json</h2><pre>{e(json.dumps(doc, indent=2))}</pre>
</body></html>
"""

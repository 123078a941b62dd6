"""The hourly inversion inside ``airtrace cloud run``: ``make_part(service)`` wires
``cloud.hourly.HourlyJob`` to the service -- its clock, the fusion's hourly OBS/MET rows,
the registry's sites, the store for results and the source listeners for hits.

Config, the ``[inversion]`` table (all optional besides ``enabled``)::

    [inversion]
    enabled = true
    quantity = "pm10"        # one quantity per job
    window_hours = 12        # hours per inversion
    lag_s = 60               # wait this long after an hour ends for late readings (later
                             # ones still count in the next hours' windows)
    rerun_hours = 6          # at each new hour, re-run those of the last 6 whose inputs
                             # changed since (a gateway's backlog); 0: never
    interval_s = 60          # how often the job looks at the clock
    terrain = "urban"        # Briggs sigma set: urban | rural
    max_sources = 5
    inventory = true         # also the gridded inventory (costs a few seconds an hour)

The grid is ``[domain] extent`` and ``cell_m``; without an extent, the stations' bounding
box plus 500 m, snapped to whole cells, hour by hour. ``[domain] origin_lat/origin_lon``
place the sites and let stability follow the sun when the met rows carry no class.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from cloud.hourly import HourlyJob, HourResult
from cloud.inversion_types import SITE_KINDS, InversionConfig, SiteRow
from cloud.map_heat import heat_layers
from protocols.geo import Origin, to_local

AUTO_MARGIN_M = 500.0


def auto_domain(obs: Sequence[Any], cell: float,
                margin: float = AUTO_MARGIN_M) -> tuple[float, float, float, float]:
    """The stations' bounding box plus ``margin``, snapped outwards to whole cells."""
    xs = [float(r["x_m"] if isinstance(r, dict) else r.x_m) for r in obs]
    ys = [float(r["y_m"] if isinstance(r, dict) else r.y_m) for r in obs]
    if not xs:
        return 0.0, 0.0, cell, cell
    return (math.floor((min(xs) - margin) / cell) * cell,
            math.floor((min(ys) - margin) / cell) * cell,
            math.ceil((max(xs) + margin) / cell) * cell,
            math.ceil((max(ys) + margin) / cell) * cell)


def registry_sites(store: Any, origin: Origin | None) -> list[SiteRow]:
    """Registered sites with a position, in the local frame."""
    if origin is None:
        return []
    out = []
    for s in store.sites():
        if s.lat is None or s.lon is None:
            continue
        x, y = to_local(s.lat, s.lon, origin)
        kind = s.kind if s.kind in SITE_KINDS else "other"
        out.append(SiteRow(site=s.id, x_m=x, y_m=y, h_m=s.h_m, kind=kind))
    return out


def make_part(service: Any) -> Any:
    """The hook ``cloud.service`` calls when ``[inversion] enabled``."""
    from cloud.service import JobPart

    t = service.cfg.part_table("inversion")
    quantity = t.text("quantity", "pm10")
    window = t.integer("window_hours", 12, min=1, max=72)
    lag = t.number("lag_s", 60.0, min=0.0)
    interval = t.number("interval_s", 60.0, min=1.0)
    rerun = t.integer("rerun_hours", 6, min=0, max=72)
    terrain = t.text("terrain", "urban", choices=("urban", "rural"))
    max_sources = t.integer("max_sources", 5, min=0, max=50)
    inventory = t.flag("inventory", True)
    t.done()
    dom = service.cfg.domain
    origin = Origin(dom.origin_lat, dom.origin_lon) if dom.has_origin else None
    config = InversionConfig(
        cell_m=dom.cell_m, terrain=terrain, window_hours=window, max_sources=max_sources,
        inventory=inventory, lat_lon=(dom.origin_lat, dom.origin_lon) if origin else None,
        class_from_sigma_theta=False)  # fusion's sigma_theta spans the hour: meander only

    def fetch(first: int, last: int) -> tuple[list[Any], list[Any], list[Any]]:
        obs: list[Any] = []
        met: list[Any] = []
        for hour in range(first, last + 1, 3600):
            o, m = service.fusion.inversion_inputs(hour, quantity)
            obs.extend(o)
            met.extend(m)
        return obs, met, registry_sites(service.store, origin)

    def save(res: HourResult) -> None:  # with the map's heat layers (cloud.map_heat)
        service.save_inversion(res.hour_start, {**res.to_json(), "heat": heat_layers(res.result)},
                               quantity)

    def hits(res: HourResult) -> None:
        service.sources_found(res.hour_start, res.result)

    job = HourlyJob(clock=service.clock, fetch_inputs=fetch, save_result=save,
                    on_sources=hits, config=config, domain=dom.extent, lag_s=lag,
                    rerun_hours=rerun)
    job.last_done = last_stored_hour(service.store, quantity)
    if job.last_done is not None and job.rerun_hours:
        since = job.last_done - (job.rerun_hours - 1) * 3600
        for hour, _, doc, _ in service.store.inversion_results(since=since, quantity=quantity):
            if isinstance(doc.get("inputs_sha256"), str):
                job.ran_on(int(hour), doc["inputs_sha256"])
    return JobPart("inversion", job, service.clock, every_s=interval)


def last_stored_hour(store: Any, quantity: str) -> int | None:
    """Where a restarted service goes on from: the newest hour the store holds a result for.
    The hours it was down for are then inverted in order (``HourlyJob.pending``: the last
    ``max_catch_up`` of them after a longer outage). None -- the newest hour only -- on a
    store that has none."""
    last = store.last_inversion_hour(quantity)
    return None if last is None else int(last)

"""A small district in a store, for the one-map tests: stations of every kind and health,
sites, an area, two hours of inversion results (with their heat layers), wind at a mast,
a firing alert and an orange event walked through a few steps of its workflow."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from cloud.alert_types import Alert, fingerprint
from cloud.alerts_store import Actor, AlertsDb
from cloud.events import Workflow
from cloud.events_store import EventsDb, RateRow
from cloud.inversion_types import FoundSource, Inventory, InversionResult
from cloud.invert_io import result_json
from cloud.map_heat import heat_layers
from cloud.places import Places
from cloud.store import Store
from cloud.store.types import Area, Batch, Health, PackRows, Person, Site, Station
from protocols.geo import Origin, to_latlon

ORIGIN = Origin(34.80, 113.50)
H1 = 1_780_002_000.0  # two stored inversion hours (starts)
H2 = H1 + 3600.0
NOW = H2 + 3600.0 + 120.0
GRID = (0.0, 0.0, 2000.0, 2000.0, 100.0)  # x0, y0, x1, y1, cell

# id, kind, (x, y), health status (None: no judgement yet), latest pm25
STATIONS: tuple[tuple[str, str, tuple[float, float], str | None, float], ...] = (
    ("REF-1", "reference", (200.0, 200.0), "ok", 42.0),
    ("M-1", "micro", (1200.0, 200.0), "ok", 18.0),
    ("M-2", "micro", (200.0, 1200.0), "ok", 130.0),
    ("M-STUCK", "micro", (1700.0, 1000.0), "stuck", 55.0),
    ("M-OFF", "micro", (900.0, 1700.0), "offline", 30.0),
    ("DUST-1", "dust", (620.0, 550.0), None, 260.0),
    ("MET-1", "met", (1500.0, 1500.0), "ok", 25.0),
)
SITES = (
    ("SITE-1", "construction", (550.0, 550.0), "provincial"),
    ("SITE-2", "industrial", (1450.0, 350.0), None),
)
# H1: two sources (the second tied to SITE-2); H2: one, tied to SITE-1
SOURCES = {
    H1: ((1450.0, 350.0, 0.9, 0.2, "SITE-2"), (350.0, 1650.0, 0.3, 0.1, None)),
    H2: ((550.0, 550.0, 1.6, 0.25, "SITE-1"),),
}


def at(x: float, y: float) -> tuple[float, float]:
    return to_latlon(x, y, ORIGIN)


def _result(sources: tuple[tuple[float, float, float, float, str | None], ...]) -> InversionResult:
    x0, y0, x1, y1, cell = GRID
    nx, ny = int((x1 - x0) / cell), int((y1 - y0) / cell)
    xs = x0 + (np.arange(nx) + 0.5) * cell
    ys = y0 + (np.arange(ny) + 0.5) * cell
    gx, gy = np.meshgrid(xs, ys)
    sx, sy = sources[0][0], sources[0][1]
    surface = np.exp(-((gx - sx) ** 2 + (gy - sy) ** 2) / (2 * 120.0**2))
    surface /= surface.sum()
    mean = sum(
        r * np.exp(-((gx - x) ** 2 + (gy - y) ** 2) / (2 * 80.0**2)) for x, y, r, _, _ in sources
    )
    inv = Inventory(nx, ny, x0, y0, cell, mean, 0.3 * mean + 0.01, mean * 0, mean * 0 + 0.1)
    found = tuple(
        FoundSource(x, y, r, s, 0.8, site=site, cell=int((y // cell) * nx + x // cell))
        for x, y, r, s, site in sources
    )
    return InversionResult(found, 35.0, 4.0, surface=surface, inventory=inv, grid=GRID)


@dataclass
class Filled:
    event: str
    alert: str
    trail: list[str] = field(default_factory=list)


def fill(store: Store) -> Filled:
    for sid, kind, (x, y), _h, _v in STATIONS:
        lat, lon = at(x, y)
        store.put_station(Station(sid, kind=kind, status="confirmed", lat=lat, lon=lon))
    lat, lon = at(300.0, 300.0)
    store.put_station(Station("GONE", kind="micro", status="retired", lat=lat, lon=lon))
    store.put_station(Station("NEW-1", kind="micro", status="pending"))  # no position yet
    store.put_health(
        Health(sid, h, (f"judged {h}",), NOW - 30, NOW - 60)
        for sid, _k, _xy, h, _v in STATIONS
        if h is not None
    )
    packs = []
    for sid, _k, _xy, _h, v in STATIONS:
        rows: list[Any] = [
            (1, "pm25", NOW - 600, v / 2, v / 2, "ug/m3", "N", "1", "pm", None),
            (2, "pm25", NOW - 300, v, v, "ug/m3", "N", "1", "pm", None),
            (3, "pm10", NOW - 300, 2 * v, 2 * v, "ug/m3", "N", "1", "pm", None),
        ]
        if sid == "MET-1":  # wind through hour H2: 3 m/s from the west
            n = 3
            for k in range(12):
                t = H2 + 300 * k
                rows += [
                    (n + 1, "wind_speed", t, 3.0, 3.0, "m/s", "N", "1", "ws", None),
                    (n + 2, "wind_dir", t, 270.0, 270.0, "deg", "N", "1", "wd", None),
                ]
                n += 2
        packs.append(PackRows(sid, "e1", sorted(rows, key=lambda r: r[0])))
    store.commit(Batch(packs=packs, received=NOW - 60))
    for sid, kind, (x, y), level in SITES:
        lat, lon = at(x, y)
        persons = (Person(sid, "Wang", role="officer"),) if sid == "SITE-1" else ()
        store.put_site(Site(sid, kind=kind, lat=lat, lon=lon, control_level=level, persons=persons))
    ring = [
        list(reversed(at(x, y))) for x, y in ((0, 0), (1000, 0), (1000, 1000), (0, 1000), (0, 0))
    ]
    store.put_area(
        Area("A-1", "north-west block", "grid", {"type": "Polygon", "coordinates": [ring]})
    )
    for hour, sources in SOURCES.items():
        res = _result(sources)
        doc = {**result_json(res, hour_start=int(hour)), "heat": heat_layers(res)}
        store.put_inversion_result(hour, "pm10", doc, hour + 3700)

    db = AlertsDb(store)
    labels = {"alertname": "site-pm10", "site": "SITE-1", "cell": "g0_0", "quantity": "pm10"}
    alert = Alert(
        fingerprint(labels),
        "site-pm10",
        "threshold",
        {**labels, "level": "orange"},
        "orange",
        value=260.0,
        annotations={"summary": "SITE-1 PM10 260"},
        starts_at=NOW - 1800,
        updated_at=NOW - 1800,
    )
    red_labels = {"alertname": "offline", "station": "M-OFF"}
    db.put_alert(
        Alert(
            fingerprint(red_labels),
            "offline",
            "health",
            {**red_labels, "level": "red"},
            "red",
            starts_at=NOW - 900,
            updated_at=NOW - 900,
        )
    )
    flow = Workflow(
        EventsDb(store), clock=lambda: NOW - 1800, assignee=Places(store, ORIGIN).assignee
    )
    ev = flow.on_alert(alert)
    assert ev is not None
    db.put_alert(replace(alert, event_id=ev.id))
    flow.act(ev.id, "acknowledge", Actor("Wang", "officer", site="SITE-1"), now=NOW - 1200)
    flow.db.put_rate(ev.id, RateRow(H1, "pm10", 1.5, 0.3, True, "inversion"))
    flow.db.put_rate(ev.id, RateRow(H2, "pm10", 1.6, 0.25, True, "inversion"))
    trail = [e.action for e in flow.db.log(ev.id)]
    return Filled(event=ev.id, alert=alert.fingerprint, trail=trail)

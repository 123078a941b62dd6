"""The one-map page of the central service: its static files (``cloud/web``, served at
``/map/``; ``/`` redirects there) and the two read routes it needs under ``/api/v1/map``,
behind the same bearer-token check as the rest of the API (open only where the API is)::

    GET /map/snapshot?quantity=pm25&hours=48
        the domain and its grids, stations (kind, condition, latest value of the quantity),
        sites (kind, control level), areas, alerts (firing, or resolved in the last day)
        and events (open, or closed in the last week) placed in the local frame, and the
        hours of the last ``hours`` that have a stored inversion result, by quantity
    GET /map/inversion?quantity=pm10&hour=ISO
        one hour's stored result (the latest without ``hour``): sources, background,
        grid, the heat layers the hourly job keeps (``cloud.map_heat``) and the hour's wind

Positions are metres east (``x_m``) and north (``y_m``) in the domain's local frame
(``protocols.geo``); the page projects them onto a plain metric plane, or onto Web Mercator
under a configured tile layer (``[api] map_tiles``). What has no position (no
``[domain] origin``, or no lat/lon) is counted in ``unplaced`` rather than guessed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from cloud.alerts_store import AlertsDb
from cloud.events_store import OPEN_STATES, EventsDb
from cloud.fusion import HOUR
from cloud.store.types import Health, Station
from protocols.errors import InputError
from protocols.geo import to_local
from protocols.telemetry import VALID_FLAGS
from protocols.timefmt import parse_iso, to_iso

PREFIX = "/api/v1/map"
WEB = Path(__file__).with_name("web")
DEFAULT_GRID_M = 1000.0  # the grid-management cell (``[alerts] grid_m``)
MARGIN_M = 500.0
ALERTS_BACK_S = 86_400.0
EVENTS_BACK_S = 7 * 86_400.0
PREFERRED = ("pm25", "pm10", "tsp")
_CELL_RE = re.compile(r"^g(-?\d+)_(-?\d+)$")
XY = tuple[float, float]


def install(app: FastAPI, ctx: Any, auth: Callable[..., None]) -> None:
    """Mount the page and its routes on the API app (``cloud.api.create_app`` calls this
    last, so the page's mount shadows nothing)."""
    app.include_router(router(ctx, auth))
    app.mount("/map", StaticFiles(directory=WEB, html=True), name="map")

    @app.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        return RedirectResponse("/map/")


def condition(st: Station, h: Health | None) -> str:
    """What the map shows of a station's health: online, offline, stale, stuck, drift or
    unknown (the fusion's judgement first, then the gateway's last will)."""
    if h is not None and h.status in ("offline", "stale", "stuck", "drift"):
        return h.status
    if st.state == "offline":
        return "offline"
    if (h is not None and h.status == "ok") or st.state == "online":
        return "online"
    return "unknown"


def _iso(ts: float | None) -> str | None:
    return None if ts is None else to_iso(ts)


def _hour(text: str) -> float:
    try:
        return math.floor(parse_iso(text) / HOUR) * HOUR
    except InputError:
        raise HTTPException(422, f"hour: not an ISO 8601 time: {text!r}") from None


def _vector_mean(pairs: Iterable[tuple[float, float]]) -> tuple[float, float, int] | None:
    """(mean speed, direction the wind blows from, n) of (speed, from_deg) pairs."""
    speeds, u, v, n = 0.0, 0.0, 0.0, 0
    for speed, deg in pairs:
        speeds += speed
        u += speed * math.sin(math.radians(deg))
        v += speed * math.cos(math.radians(deg))
        n += 1
    if n == 0 or (u == 0.0 and v == 0.0):
        return None
    return speeds / n, math.degrees(math.atan2(u, v)) % 360.0, n


class MapView:
    """Reads the store through the API's context and places things in the local frame."""

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx
        self.store = ctx.store
        self.registry = ctx.registry
        self.domain = ctx.registry.domain
        extra = ctx.extra if isinstance(ctx.extra, dict) else {}
        self.engine = extra.get("alerts")
        places = getattr(self.engine, "places", None)
        self.grid_m = float(getattr(places, "grid_m", DEFAULT_GRID_M))
        tiles = extra.get("map") or {}
        self.tiles = (
            {"url": tiles["tiles"], "attribution": tiles.get("attribution") or ""}
            if tiles.get("tiles") and self.domain.has_origin
            else None
        )

    # -- places -----------------------------------------------------------------------
    def _xy(self, lat: float | None, lon: float | None) -> XY | None:
        x, y = self.registry.local(lat, lon)
        return None if x is None or y is None else (x, y)

    def _cell_centre(self, cell: str | None) -> XY | None:
        m = _CELL_RE.match(cell or "")
        if m is None:
            return None
        return ((int(m[1]) + 0.5) * self.grid_m, (int(m[2]) + 0.5) * self.grid_m)

    def _place(
        self,
        xy: XY | None,
        labels: Mapping[str, Any],
        stations: Mapping[str, XY],
        sites: Mapping[str, XY],
    ) -> XY | None:
        """Where an alert or event is drawn: its own place, else its site's, its station's,
        or its grid cell's centre."""
        if xy is not None:
            return xy
        for key, known in (("site", sites), ("station", stations)):
            value = labels.get(key)
            if value and value in known:
                return known[value]
        return self._cell_centre(labels.get("cell"))

    # -- the snapshot -----------------------------------------------------------------
    def snapshot(self, quantity: str | None, hours: int) -> dict[str, Any]:
        now = self.ctx.clock()
        streams = self.store.streams()
        quantities = sorted({s[1] for s in streams})
        if quantity is None:
            quantity = next((q for q in PREFERRED if q in quantities), None) or (
                quantities[0] if quantities else "pm25"
            )
        health = self.store.health()
        stations, station_xy, unplaced = [], {}, {"stations": 0, "sites": 0, "areas": 0}
        for st in self.store.stations():
            if st.status == "retired":
                continue
            xy = self._xy(st.lat, st.lon)
            if xy is None:
                unplaced["stations"] += 1
                continue
            station_xy[st.id] = xy
            stations.append(self._station(st, xy, health.get(st.id), quantity, now))
        sites, site_xy = [], {}
        for s in self.store.sites():
            xy = self._xy(s.lat, s.lon)
            if xy is None:
                unplaced["sites"] += 1
                continue
            site_xy[s.id] = xy
            sites.append(
                {
                    "id": s.id,
                    "kind": s.kind,
                    "name": s.name,
                    "control_level": s.control_level,
                    "enterprise": s.enterprise,
                    "address": s.address,
                    "persons": len(s.persons),
                    "x_m": xy[0],
                    "y_m": xy[1],
                }
            )
        areas = []
        for a in self.store.areas():
            polygons = self._polygons(a.geometry)
            if not polygons:
                unplaced["areas"] += 1
                continue
            areas.append({"id": a.id, "name": a.name, "kind": a.kind, "polygons": polygons})
        results = self.store.inversion_results(since=now - hours * HOUR)
        by_quantity: dict[str, list[dict[str, Any]]] = {}
        for hour, q, res, _computed in results:
            by_quantity.setdefault(q, []).append(
                {"hour": to_iso(hour, ms=False), "sources": len(res.get("sources") or ())}
            )
        latest_q = results[-1][1] if results else None
        return {
            "time": to_iso(now),
            "domain": self._domain([*station_xy.values(), *site_xy.values()], results),
            "tiles": self.tiles,
            "quantity": quantity,
            "quantities": quantities,
            "stations": stations,
            "sites": sites,
            "areas": areas,
            "alerts": self._alerts(now, station_xy, site_xy),
            "events": self._events(now, station_xy, site_xy),
            "inversion": {"quantity": latest_q, "hours": by_quantity},
            "unplaced": unplaced,
        }

    def _station(
        self, st: Station, xy: XY, h: Health | None, quantity: str, now: float
    ) -> dict[str, Any]:
        got = self.store.latest_readings(st.id, quantity, 1)
        latest = None
        if got:
            r = got[0]
            latest = {
                "value": r.value,
                "unit": r.unit,
                "q": r.q,
                "valid": r.q in VALID_FLAGS and r.value is not None,
                "time": to_iso(r.ts),
                "age_s": round(now - r.ts, 1),
            }
        return {
            "id": st.id,
            "kind": st.kind,
            "status": st.status,
            "name": st.name,
            "state": st.state,
            "condition": condition(st, h),
            "reasons": list(h.reasons) if h is not None else [],
            "x_m": xy[0],
            "y_m": xy[1],
            "latest": latest,
        }

    def _polygons(self, geometry: Mapping[str, Any]) -> list[list[list[list[float]]]]:
        """A GeoJSON (Multi)Polygon's rings in local metres: [polygon][ring][point][x, y]."""
        if geometry.get("type") == "Feature":
            geometry = geometry.get("geometry") or {}
        origin = self.registry.origin
        kind, coords = geometry.get("type"), geometry.get("coordinates") or []
        polys = [coords] if kind == "Polygon" else coords if kind == "MultiPolygon" else []
        if origin is None:
            return []
        out = []
        for poly in polys:
            rings = []
            for ring in poly:
                pts = []
                for p in ring:
                    x, y = to_local(float(p[1]), float(p[0]), origin)
                    pts.append([round(x, 1), round(y, 1)])
                rings.append(pts)
            out.append(rings)
        return out

    def _domain(self, points: Sequence[XY], results: Sequence[Any]) -> dict[str, Any]:
        d = self.domain
        extent: list[float] | None = list(d.extent) if d.extent else None
        if extent is None:
            xs = [p[0] for p in points]
            ys = [p[1] for p in points]
            for _h, _q, res, _c in results[-1:]:
                g = res.get("grid") or {}
                if {"x0", "y0", "x1", "y1"} <= set(g) and g["x1"] > g["x0"]:
                    xs += [g["x0"], g["x1"]]
                    ys += [g["y0"], g["y1"]]
            if xs:
                c = d.cell_m
                extent = [
                    math.floor((min(xs) - MARGIN_M) / c) * c,
                    math.floor((min(ys) - MARGIN_M) / c) * c,
                    math.ceil((max(xs) + MARGIN_M) / c) * c,
                    math.ceil((max(ys) + MARGIN_M) / c) * c,
                ]
        origin = self.registry.origin
        return {
            "origin": None if origin is None else {"lat": origin.lat, "lon": origin.lon},
            "cell_m": d.cell_m,
            "grid_m": self.grid_m,
            "extent": extent,
        }

    def _alerts(
        self, now: float, stations: Mapping[str, XY], sites: Mapping[str, XY]
    ) -> list[dict[str, Any]]:
        from cloud.routing import Route, Router

        db = AlertsDb(self.store)
        found = db.alerts(since=now - ALERTS_BACK_S, limit=1000)
        router = getattr(self.engine, "router", None) or Router(Route("root", "none"))
        mutes = router.muted(found, db.silences(), now)
        out = []
        for a in found:
            xy = self._place(None, a.labels, stations, sites)
            if xy is None:
                continue
            out.append(
                {
                    "fingerprint": a.fingerprint,
                    "rule": a.rule,
                    "kind": a.kind,
                    "level": a.level,
                    "status": a.state,
                    "muted_by": mutes.get(a.fingerprint),
                    "summary": a.annotations.get("summary") or a.rule,
                    "value": a.value,
                    "labels": dict(a.labels),
                    "starts_at": _iso(a.starts_at),
                    "event": a.event_id,
                    "x_m": xy[0],
                    "y_m": xy[1],
                }
            )
        return out

    def _events(
        self, now: float, stations: Mapping[str, XY], sites: Mapping[str, XY]
    ) -> list[dict[str, Any]]:
        out = []
        for ev in EventsDb(self.store).events(limit=1000):
            if ev.state == "merged" or (
                ev.state not in OPEN_STATES and ev.updated < now - EVENTS_BACK_S
            ):
                continue
            own = (ev.x_m, ev.y_m) if ev.x_m is not None and ev.y_m is not None else None
            labels = {"site": ev.site, "station": ev.station, "cell": ev.cell}
            xy = self._place(own, labels, stations, sites)
            if xy is None:
                continue
            due = [d for d in (ev.ack_due if ev.state == "dispatched" else None,
                               ev.rectify_due) if d is not None]  # fmt: skip
            out.append(
                {
                    "id": ev.id,
                    "title": ev.title,
                    "level": ev.level,
                    "state": ev.state,
                    "open": ev.open,
                    "kind": ev.kind,
                    "site": ev.site,
                    "station": ev.station,
                    "cell": ev.cell,
                    "assignee": ev.assignee,
                    "escalated": ev.escalation > 0,
                    "overdue": ev.open and any(now > d for d in due),
                    "created": _iso(ev.created),
                    "updated": _iso(ev.updated),
                    "x_m": xy[0],
                    "y_m": xy[1],
                }
            )
        return out

    # -- one hour's inversion ---------------------------------------------------------
    def inversion(self, quantity: str | None, hour: str | None) -> dict[str, Any]:
        if hour is not None:
            h = _hour(hour)
            found = self.store.inversion_results(h, h + HOUR, quantity)
        else:
            found = []
            now = self.ctx.clock()
            for back in (2 * 86_400.0, 31 * 86_400.0, None):
                found = self.store.inversion_results(
                    None if back is None else now - back, None, quantity
                )
                if found:
                    break
        if not found:
            what = f" of {quantity}" if quantity else ""
            when = f" for {hour}" if hour else ""
            raise HTTPException(404, f"no inversion result{what}{when}")
        start, q, res, computed = found[-1]
        doc = dict(res)
        heat = doc.pop("heat", None)
        return {
            "hour": to_iso(start, ms=False),
            "quantity": q,
            "computed": _iso(computed),
            "result": doc,
            "heat": heat,
            "wind": self.wind(start),
        }

    def wind(self, hour: float) -> dict[str, Any]:
        """The hour's wind: the vector mean the inversion uses, and each mast's own."""
        met = self.ctx.fusion.hourly_met(hour)
        mean = (
            {"speed_ms": met[0]["wind_speed_ms"], "from_deg": met[0]["wind_dir_deg"]}
            if met
            else None
        )
        have: dict[str, set[str]] = {}
        for station, q, *_ in self.store.streams():
            have.setdefault(station, set()).add(q)
        masts = []
        for station, qs in sorted(have.items()):
            if not {"wind_speed", "wind_dir"} <= qs:
                continue
            st = self.store.get_station(station)
            xy = None if st is None else self._xy(st.lat, st.lon)
            if xy is None:
                continue
            speeds = self.store.series(station, "wind_speed", hour, hour + HOUR)
            dirs = {
                round(r[0]): r[1]
                for r in self.store.series(station, "wind_dir", hour, hour + HOUR)
                if r[1] is not None and r[3] in VALID_FLAGS
            }
            pairs = [
                (r[1], dirs[round(r[0])])
                for r in speeds
                if r[1] is not None and r[3] in VALID_FLAGS and round(r[0]) in dirs
            ]
            got = _vector_mean(pairs)
            if got is not None:
                masts.append(
                    {
                        "id": station,
                        "x_m": xy[0],
                        "y_m": xy[1],
                        "speed_ms": round(got[0], 2),
                        "from_deg": round(got[1], 1),
                        "n": got[2],
                    }
                )
        return {"mean": mean, "stations": masts}


def router(ctx: Any, auth: Callable[..., None]) -> APIRouter:
    view = MapView(ctx)
    r = APIRouter(prefix=PREFIX, tags=["map"], dependencies=[Depends(auth)])

    @r.get("/snapshot")
    def snapshot(
        quantity: str | None = None, hours: int = Query(48, ge=1, le=24 * 31)
    ) -> dict[str, Any]:
        """Everything the one-map page draws except the inversion hour, in the local frame."""
        return view.snapshot(quantity, hours)

    @r.get("/inversion")
    def inversion(quantity: str | None = None, hour: str | None = None) -> dict[str, Any]:
        """One hour's inversion result (the latest without ``hour``) with heat and wind."""
        return view.inversion(quantity, hour)

    return r

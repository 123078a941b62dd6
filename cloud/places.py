"""Where things are and who answers for them, read from the registry: station and site
positions in the domain's local frame, grid cells, areas (GeoJSON polygons), the gateways
of a site and their actuators, and the responsible persons a notification goes to.

Grid cells are ``g{ix}_{iy}`` with ``ix = floor(x_m / grid_m)`` (default 1000 m, the
grid-management cell; the inversion's 100 m cells are finer). A station's site is what its
gateway reports (``site`` in the online status); its actuators are the status's
``actuators`` (names, or objects with ``name``), or the rule file's ``[[orders.spray]]``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from cloud.alerts_store import AlertsDb
from cloud.receivers import Target
from cloud.store import Store
from cloud.store.types import Site, Station
from protocols.geo import Origin, to_latlon, to_local


def cell_id(x_m: float, y_m: float, grid_m: float) -> str:
    return f"g{math.floor(x_m / grid_m)}_{math.floor(y_m / grid_m)}"


def _in_ring(lon: float, lat: float, ring: Sequence[Sequence[float]]) -> bool:
    inside = False
    n = len(ring)
    for i in range(n):
        x1, y1 = ring[i][0], ring[i][1]
        x2, y2 = ring[(i + 1) % n][0], ring[(i + 1) % n][1]
        if (y1 > lat) != (y2 > lat):
            x = x1 + (lat - y1) * (x2 - x1) / (y2 - y1)
            if lon < x:
                inside = not inside
    return inside


def in_geometry(lat: float, lon: float, geometry: Mapping[str, Any]) -> bool:
    """Point in a GeoJSON Polygon / MultiPolygon (or a Feature of one); holes respected."""
    if geometry.get("type") == "Feature":
        return in_geometry(lat, lon, geometry.get("geometry") or {})
    kind, coords = geometry.get("type"), geometry.get("coordinates") or []
    polygons = [coords] if kind == "Polygon" else coords if kind == "MultiPolygon" else []
    for poly in polygons:
        if (
            poly
            and _in_ring(lon, lat, poly[0])
            and not any(_in_ring(lon, lat, h) for h in poly[1:])
        ):
            return True
    return False


def _actuator_names(reported: Mapping[str, Any]) -> tuple[str, ...]:
    acts = reported.get("actuators")
    if isinstance(acts, Mapping):
        return tuple(str(k) for k in acts)
    if isinstance(acts, list):
        names = [a.get("name") if isinstance(a, Mapping) else a for a in acts]
        return tuple(str(n) for n in names if isinstance(n, str))
    return ()


class Places:
    """Registry look-ups for alerts, orders and receivers; ``refresh()`` re-reads stations
    and sites (the engine calls it once per round)."""

    def __init__(
        self,
        store: Store,
        origin: Origin | None,
        *,
        grid_m: float = 1000.0,
        spray: Mapping[str, Sequence[tuple[str, str]]] | None = None,
    ) -> None:
        self.store = store
        self.db = AlertsDb(store)
        self.origin = origin
        self.grid_m = grid_m
        self.spray = {k: tuple(v) for k, v in (spray or {}).items()}
        self._stations: dict[str, Station] = {}
        self._sites: dict[str, Site] = {}
        self._areas: list[Any] = []
        self.refresh()

    def refresh(self) -> None:
        self._stations = {s.id: s for s in self.store.stations()}
        self._sites = {s.id: s for s in self.store.sites()}
        self._areas = self.store.areas()

    # -- positions --------------------------------------------------------------------
    def station(self, sid: str) -> Station | None:
        return self._stations.get(sid) or self.store.get_station(sid)

    def station_now(self, sid: str) -> Station | None:
        """The station as the registry has it this moment (its online state changes between
        rounds: an order must not be skipped for a gateway that has just come back)."""
        return self.store.get_station(sid) or self._stations.get(sid)

    def site(self, site_id: str) -> Site | None:
        return self._sites.get(site_id) or self.store.get_site(site_id)

    def _xy(self, lat: float | None, lon: float | None) -> tuple[float, float] | None:
        if self.origin is None or lat is None or lon is None:
            return None
        return to_local(lat, lon, self.origin)

    def station_xy(self, sid: str) -> tuple[float, float] | None:
        st = self.station(sid)
        return None if st is None else self._xy(st.lat, st.lon)

    def site_xy(self, site_id: str) -> tuple[float, float] | None:
        s = self.site(site_id)
        return None if s is None else self._xy(s.lat, s.lon)

    def station_site(self, sid: str) -> str | None:
        st = self.station(sid)
        site = None if st is None else st.reported.get("site")
        return site if isinstance(site, str) and site else None

    def site_kind(self, site_id: str | None) -> str:
        s = self.site(site_id) if site_id else None
        return s.kind if s is not None and s.kind != "other" else "unknown"

    def cell(self, xy: tuple[float, float] | None) -> str:
        return "" if xy is None else cell_id(xy[0], xy[1], self.grid_m)

    def area(self, xy: tuple[float, float] | None) -> str:
        if xy is None or self.origin is None:
            return ""
        lat, lon = to_latlon(xy[0], xy[1], self.origin)
        for a in self._areas:
            if a.geometry and in_geometry(lat, lon, a.geometry):
                return str(a.id)
        return ""

    def near(self, xy: tuple[float, float], radius_m: float) -> list[tuple[str, float]]:
        """(station, distance) of the positioned, not retired stations within ``radius_m``."""
        out = []
        for st in self._stations.values():
            sxy = self._xy(st.lat, st.lon)
            if st.status == "retired" or sxy is None:
                continue
            d = math.hypot(sxy[0] - xy[0], sxy[1] - xy[1])
            if d <= radius_m:
                out.append((st.id, d))
        return sorted(out, key=lambda x: x[1])

    # -- gateways and persons ---------------------------------------------------------
    def site_gateways(self, site_id: str) -> list[tuple[str, tuple[str, ...]]]:
        """(station, actuator names) of the gateways at a site."""
        if site_id in self.spray:
            by: dict[str, list[str]] = {}
            for station, actuator in self.spray[site_id]:
                by.setdefault(station, []).append(actuator)
            return [(s, tuple(a)) for s, a in by.items()]
        return [
            (st.id, _actuator_names(st.reported))
            for st in self._stations.values()
            if st.reported.get("site") == site_id and st.status != "retired"
        ]

    def gateways(self, labels: Mapping[str, str]) -> list[str]:
        if labels.get("station"):
            return [labels["station"]]
        if labels.get("site"):
            return [s for s, _ in self.site_gateways(labels["site"])]
        return []

    def persons(self, to: str, labels: Mapping[str, str], roles: Sequence[str]) -> list[Target]:
        out: dict[str, Target] = {}
        actors = [a for a in self.db.actors() if not a.disabled]
        if to == "site_officer":
            site = self.site(labels["site"]) if labels.get("site") else None
            for p in site.persons if site is not None else ():
                if "*" in roles or (p.role or "") in roles:
                    out[p.name] = Target(url=p.webhook, person=p.name, role=p.role)
            for a in actors:
                if a.role == "officer" and site is not None and a.site == site.id:
                    out.setdefault(a.name, Target(url=a.webhook, person=a.name, role=a.role))
        elif to == "assignee":
            name = labels.get("assignee", "")
            site = self.site(labels["site"]) if labels.get("site") else None
            for p in site.persons if site is not None else ():
                if p.name == name:
                    out[p.name] = Target(url=p.webhook, person=p.name, role=p.role)
            for a in actors:
                if a.name == name:
                    out.setdefault(a.name, Target(url=a.webhook, person=a.name, role=a.role))
        elif to == "cell_inspector":
            places = {labels.get("cell", ""), labels.get("area", "")} - {""}
            for a in actors:
                if a.role == "inspector" and places & set(a.cells):
                    out[a.name] = Target(url=a.webhook, person=a.name, role=a.role)
        else:
            cell = labels.get("cell", "")
            for a in actors:
                if a.role == "maintainer" and (not a.cells or cell in a.cells):
                    out[a.name] = Target(url=a.webhook, person=a.name, role=a.role)
        return list(out.values())

    def assignee(self, labels: Mapping[str, str], kind: str) -> str | None:
        """Who an event goes to: the site's officer (else any person of the site), else
        the cell's inspector; for station health, a maintainer."""
        if kind == "health":
            found = self.persons("maintainer", labels, ("*",))
        else:
            found = (
                self.persons("site_officer", labels, ("officer",))
                or self.persons("site_officer", labels, ("*",))
                or self.persons("cell_inspector", labels, ("*",))
            )
        return found[0].person if found else None

"""The registry: stations, sites (construction, industrial, restaurant...) with their
responsible persons, and areas — imported from CSV or GeoJSON, placed in the domain's local
metric frame (``protocols.geo``: the same frame as the synthetic world and the inversion).

Positions are stored as lat/lon; ``x_m``/``y_m`` are derived with ``[domain] origin_lat``
and ``origin_lon``. A file that gives ``x_m``/``y_m`` instead is converted back with the
same origin.

CSV files (UTF-8, header row; the kind of file is told by ``what`` or by its header):

* stations: ``station`` (or ``id``), ``kind``, ``name``, ``lat``, ``lon`` (or ``x_m``,
  ``y_m``), ``inlet_height_m``, ``hj212_mn``, ``hj212_pw``, ``status`` (default confirmed)
* sites (a superset of the inversion's SITES.csv): ``site``, ``kind``, ``x_m``, ``y_m``
  (or ``lat``, ``lon``), ``h_m``, ``name``, ``control_level``, ``enterprise``, ``address``
* persons: ``site``, ``name``, ``role``, ``phone``, ``email``, ``webhook``

GeoJSON: a FeatureCollection; a Point feature is a station when its properties carry
``station`` (or ``type: "station"``), else a site (``site`` or ``id``); a Polygon or
MultiPolygon feature is an area (``id``, ``name``, ``kind``).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, TypedDict

from cloud.config import DomainConfig
from cloud.store import Store
from cloud.store.types import Area, Person, Site, Station
from protocols.errors import InputError
from protocols.geo import Origin, to_latlon, to_local


@dataclass(frozen=True)
class Imported:
    stations: int = 0
    sites: int = 0
    persons: int = 0
    areas: int = 0

    def __add__(self, other: Imported) -> Imported:
        return Imported(
            *(a + b for a, b in zip(asdict(self).values(), asdict(other).values(), strict=True))
        )


_POSITION_COLUMNS = frozenset({"lat", "lon", "x_m", "y_m"})


def _kept(rec: Mapping[str, Any], column: str, existing: object,
          parse: Callable[[Any], Any]) -> Any:
    """The record's value for ``column`` (parsed; empty clears it), or, when the record has
    no such column, the existing entry's (None for a new one)."""
    if column in rec:
        return parse(rec[column])
    return getattr(existing, column, None) if existing is not None else None


class _StationFields(TypedDict):
    """What an imported record sets on a station (the rest it keeps)."""

    kind: str
    status: str
    name: str | None
    lat: float | None
    lon: float | None
    inlet_height_m: float | None
    hj212_mn: str | None
    hj212_pw: str | None


def _opt_float(value: Any, where: str) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InputError(f"{where}: not a number: {value!r}") from None


def _opt_text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


class Registry:
    def __init__(self, store: Store, domain: DomainConfig | None = None) -> None:
        self.store = store
        self.domain = domain or DomainConfig()

    @property
    def origin(self) -> Origin | None:
        d = self.domain
        return Origin(d.origin_lat, d.origin_lon) if d.has_origin else None  # type: ignore[arg-type]

    def local(self, lat: float | None, lon: float | None) -> tuple[float | None, float | None]:
        origin = self.origin
        if origin is None or lat is None or lon is None:
            return None, None
        x, y = to_local(lat, lon, origin)
        return round(x, 2), round(y, 2)

    def _latlon(self, rec: Mapping[str, Any], where: str) -> tuple[float | None, float | None]:
        lat = _opt_float(rec.get("lat"), f"{where} lat")
        lon = _opt_float(rec.get("lon"), f"{where} lon")
        if lat is not None or lon is not None:
            return lat, lon
        x = _opt_float(rec.get("x_m"), f"{where} x_m")
        y = _opt_float(rec.get("y_m"), f"{where} y_m")
        if x is None and y is None:
            return None, None
        if x is None or y is None:
            raise InputError(f"{where}: x_m and y_m go together")
        origin = self.origin
        if origin is None:
            raise InputError(
                f"{where}: x_m/y_m need [domain] origin_lat and origin_lon in the config"
            )
        return to_latlon(x, y, origin)

    # -- views ------------------------------------------------------------------------
    def station_view(self, st: Station) -> dict[str, Any]:
        """A station as the API and the CLI show it (never the HJ 212 password)."""
        out = asdict(st)
        out.pop("hj212_pw", None)
        out["hj212_pw_set"] = st.hj212_pw is not None
        out["x_m"], out["y_m"] = self.local(st.lat, st.lon)
        return out

    def site_view(self, site: Site) -> dict[str, Any]:
        out = asdict(site)
        out["x_m"], out["y_m"] = self.local(site.lat, site.lon)
        return out

    def sites_csv(self) -> str:
        """The registered sites as the inversion's SITES.csv (site, x_m, y_m, h_m, kind)."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["site", "x_m", "y_m", "h_m", "kind"])
        for s in self.store.sites():
            x, y = self.local(s.lat, s.lon)
            if x is None:
                continue
            w.writerow([s.id, x, y, "" if s.h_m is None else s.h_m, s.kind])
        return buf.getvalue()

    # -- records ----------------------------------------------------------------------
    def station_from(
        self, rec: Mapping[str, Any], where: str, *, status: str = "confirmed"
    ) -> Station:
        sid = _opt_text(rec.get("station") or rec.get("id"))
        if sid is None:
            raise InputError(f"{where}: a station needs an id (column station or id)")
        existing = self.store.get_station(sid)
        # a column the record does not have keeps what the station has (a re-import of a
        # file without the HJ 212 columns must not unpair its logger); an empty one clears
        lat, lon = self._latlon(rec, where)
        if existing is not None and not _POSITION_COLUMNS & rec.keys():
            lat, lon = existing.lat, existing.lon
        fields: _StationFields = {
            "kind": _opt_text(rec.get("kind")) or (existing.kind if existing else "other"),
            "status": _opt_text(rec.get("status")) or status,
            "name": _kept(rec, "name", existing, _opt_text),
            "lat": lat,
            "lon": lon,
            "inlet_height_m": _kept(rec, "inlet_height_m", existing,
                                    lambda v: _opt_float(v, f"{where} inlet_height_m")),
            "hj212_mn": _kept(rec, "hj212_mn", existing, _opt_text),
            "hj212_pw": _kept(rec, "hj212_pw", existing, _opt_text),
        }
        try:
            if existing is None:
                return Station(id=sid, **fields)
            return replace(existing, **fields)
        except InputError as exc:
            raise InputError(f"{where}: {exc}") from None

    def site_from(self, rec: Mapping[str, Any], where: str) -> Site:
        sid = _opt_text(rec.get("site") or rec.get("id"))
        if sid is None:
            raise InputError(f"{where}: a site needs an id (column site or id)")
        existing = self.store.get_site(sid)
        lat, lon = self._latlon(rec, where)  # absent columns keep, as for a station
        if existing is not None and not _POSITION_COLUMNS & rec.keys():
            lat, lon = existing.lat, existing.lon
        try:
            return Site(
                id=sid,
                kind=_opt_text(rec.get("kind")) or (existing.kind if existing else "other"),
                name=_kept(rec, "name", existing, _opt_text),
                lat=lat,
                lon=lon,
                h_m=_kept(rec, "h_m", existing, lambda v: _opt_float(v, f"{where} h_m")),
                control_level=_kept(rec, "control_level", existing, _opt_text),
                enterprise=_kept(rec, "enterprise", existing, _opt_text),
                address=_kept(rec, "address", existing, _opt_text),
                persons=existing.persons if existing else (),
            )
        except InputError as exc:
            raise InputError(f"{where}: {exc}") from None

    # -- imports ----------------------------------------------------------------------
    def import_file(self, path: str | Path, what: str = "auto") -> Imported:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"{path}: cannot read: {exc}") from None
        if what == "geojson" or (what == "auto" and path.suffix.lower() in (".geojson", ".json")):
            return self.import_geojson(text, str(path))
        return self.import_csv(text, str(path), what)

    def import_csv(self, text: str, source: str, what: str = "auto") -> Imported:
        reader = csv.DictReader(io.StringIO(text))
        header = {h.strip() for h in reader.fieldnames or []}
        if what == "auto":
            if "station" in header:
                what = "stations"
            elif (
                "site" in header
                and header & {"role", "phone", "email", "webhook"}
                and "kind" not in header
            ):
                what = "persons"
            elif "site" in header:
                what = "sites"
            else:
                raise InputError(
                    f"{source}: cannot tell what the file holds; give a station or site column, "
                    "or say --what stations|sites|persons"
                )
        rows = [{(k or "").strip(): v for k, v in r.items()} for r in reader]
        where = [f"{source} line {i}" for i in range(2, len(rows) + 2)]
        if what == "stations":
            stations = [self.station_from(r, w) for r, w in zip(rows, where, strict=True)]
            for st in stations:
                self.store.put_station(st)
            return Imported(stations=len(stations))
        if what == "sites":
            sites = [self.site_from(r, w) for r, w in zip(rows, where, strict=True)]
            for s in sites:
                self.store.put_site(s)
            return Imported(sites=len(sites))
        if what == "persons":
            return self._import_persons(rows, where)
        raise InputError(f"unknown import kind {what!r}: stations, sites, persons or geojson")

    def _import_persons(self, rows: list[dict[str, Any]], where: list[str]) -> Imported:
        by_site: dict[str, list[Person]] = {}
        for r, w in zip(rows, where, strict=True):
            site, name = _opt_text(r.get("site")), _opt_text(r.get("name"))
            if site is None or name is None:
                raise InputError(f"{w}: a person needs site and name")
            by_site.setdefault(site, []).append(
                Person(
                    site,
                    name,
                    *(_opt_text(r.get(k)) for k in ("role", "phone", "email", "webhook")),
                )
            )
        for site_id, persons in by_site.items():
            stored = self.store.get_site(site_id)
            if stored is None:
                raise InputError(f"persons for unknown site {site_id!r}: import the sites first")
            self.store.put_site(replace(stored, persons=tuple(persons)))
        return Imported(persons=sum(len(p) for p in by_site.values()))

    def import_geojson(self, text: str, source: str) -> Imported:
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise InputError(f"{source}: not JSON: {exc}") from None
        features = doc.get("features") if isinstance(doc, dict) else None
        if not isinstance(features, list):
            raise InputError(f"{source}: not a GeoJSON FeatureCollection")
        total = Imported()
        for i, feat in enumerate(features):
            where = f"{source} feature {i}"
            if not isinstance(feat, dict) or not isinstance(feat.get("geometry"), dict):
                raise InputError(f"{where}: a feature needs a geometry")
            geom = feat["geometry"]
            props = dict(feat.get("properties") or {})
            gtype = geom.get("type")
            if gtype == "Point":
                coords = geom.get("coordinates")
                if not isinstance(coords, list) or len(coords) < 2:
                    raise InputError(f"{where}: a Point needs [lon, lat]")
                props["lon"], props["lat"] = coords[0], coords[1]
                if props.get("type") == "station" or "station" in props:
                    self.store.put_station(self.station_from(props, where))
                    total += Imported(stations=1)
                else:
                    self.store.put_site(self.site_from(props, where))
                    total += Imported(sites=1)
            elif gtype in ("Polygon", "MultiPolygon"):
                aid = _opt_text(props.get("id") or feat.get("id"))
                if aid is None:
                    raise InputError(f"{where}: an area needs an id")
                self.store.put_area(
                    Area(
                        aid,
                        _opt_text(props.get("name")),
                        _opt_text(props.get("kind")) or "area",
                        geom,
                    )
                )
                total += Imported(areas=1)
            else:
                raise InputError(f"{where}: geometry {gtype!r} is neither Point nor Polygon")
        return total

"""The HTTP API under ``/api/v1`` (FastAPI on uvicorn): stations with health, readings and
means, custody and gaps, quarantine, registry CRUD, commands and co-location.

Auth: ``Authorization: Bearer <token>`` with one of ``[api] tokens`` / ``token_file``. With
no token configured the API is open, which the config allows only on a loopback address.
``GET /api/v1/health`` is always open (for load balancers). OpenAPI is served at
``/api/v1/openapi.json``, the interactive docs at ``/api/v1/docs``.

Times in queries are ISO 8601 (``2026-05-01T00:00:00Z``); in answers, ISO 8601 UTC
alongside the epoch seconds the store keeps.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from cloud.commands import Commander, CommandError
from cloud.fusion import FIVE_MIN, HOUR, Fusion
from cloud.registry import Registry
from cloud.store import NotFound, Store, StoreError
from cloud.store.types import Area, Person, Site, Station
from protocols.errors import InputError
from protocols.timefmt import parse_iso, to_iso

PREFIX = "/api/v1"


@dataclass
class ApiContext:
    store: Store
    registry: Registry
    fusion: Fusion
    tokens: tuple[str, ...] = ()
    commander: Commander | None = None
    stats: Callable[[], Mapping[str, Any]] = dict
    clock: Callable[[], float] = time.time
    colocate: Callable[..., Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class StationIn(BaseModel):
    kind: Literal["reference", "micro", "dust", "met", "high", "other"] = "other"
    status: Literal["pending", "confirmed", "retired"] = "confirmed"
    name: str | None = None
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)
    inlet_height_m: float | None = Field(None, ge=0, le=500)
    hj212_mn: str | None = None
    hj212_pw: str | None = None


class PersonIn(BaseModel):
    name: str
    role: str | None = None
    phone: str | None = None
    email: str | None = None
    webhook: str | None = None


class SiteIn(BaseModel):
    kind: Literal["construction", "industrial", "restaurant", "traffic", "other"] = "other"
    name: str | None = None
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)
    h_m: float | None = None
    control_level: str | None = None
    enterprise: str | None = None
    address: str | None = None
    persons: list[PersonIn] = []


class AreaIn(BaseModel):
    name: str | None = None
    kind: str = "area"
    geometry: dict[str, Any]


class CommandIn(BaseModel):
    cmd: Literal["set_calibration", "set_interval", "actuate", "alert", "ping", "set_config"]
    args: dict[str, Any] = {}
    expires_s: float | None = Field(None, gt=0)


class ColocationIn(BaseModel):
    reference: str
    quantity: str = "pm25"
    push: bool = False


def _t(text: str | None, name: str) -> float | None:
    if text is None:
        return None
    try:
        return parse_iso(text)
    except InputError:
        raise HTTPException(422, f"{name}: not an ISO 8601 time: {text!r}") from None


def _iso(ts: float | None) -> str | None:
    return None if ts is None else to_iso(ts)


def create_app(ctx: ApiContext) -> FastAPI:
    app = FastAPI(
        title="airtrace central service",
        version="1",
        openapi_url=f"{PREFIX}/openapi.json",
        docs_url=f"{PREFIX}/docs",
        swagger_ui_oauth2_redirect_url=f"{PREFIX}/docs/oauth2-redirect",
        redoc_url=None,
    )
    bearer = HTTPBearer(auto_error=False)

    def auth(creds: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:  # noqa: B008
        if not ctx.tokens:
            return
        given = creds.credentials.encode() if creds else b""
        if not any(hmac.compare_digest(given, t.encode()) for t in ctx.tokens):
            raise HTTPException(
                401, "a valid bearer token is needed", {"WWW-Authenticate": "Bearer"}
            )

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(InputError)
    async def _bad(request: Request, exc: InputError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(StoreError)
    async def _store(request: Request, exc: StoreError) -> JSONResponse:
        return JSONResponse({"detail": f"store unavailable: {exc}"}, status_code=503)

    @app.exception_handler(CommandError)
    async def _cmd(request: Request, exc: CommandError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)

    @app.get(f"{PREFIX}/health", tags=["service"])
    def health() -> dict[str, Any]:
        """Liveness: open, no token needed."""
        return {"ok": True, "schema": ctx.store.schema_version(), "time": to_iso(ctx.clock())}

    r = APIRouter(prefix=PREFIX, dependencies=[Depends(auth)])

    def station_or_404(station_id: str) -> Station:
        st = ctx.store.get_station(station_id)
        if st is None:
            raise HTTPException(404, f"no station {station_id!r}")
        return st

    # -- service ----------------------------------------------------------------------
    @r.get("/stats", tags=["service"])
    def stats() -> dict[str, Any]:
        """Ingest counters, readings stored, quarantine counts by reason class."""
        return {
            "ingest": dict(ctx.stats()),
            "readings": ctx.store.reading_count(),
            "quarantine": ctx.store.quarantine_counts(),
        }

    # -- stations ---------------------------------------------------------------------
    @r.get("/stations", tags=["stations"])
    def stations(status: str | None = None) -> list[dict[str, Any]]:
        """Registered stations with their health and position in the local frame."""
        health = ctx.store.health()
        out = []
        for st in ctx.store.stations(status=status):
            view = ctx.registry.station_view(st)
            h = health.get(st.id)
            view["health"] = (
                None
                if h is None
                else {"status": h.status, "reasons": list(h.reasons), "computed": _iso(h.computed)}
            )
            out.append(view)
        return out

    @r.get("/stations/{station_id}", tags=["stations"])
    def station(station_id: str) -> dict[str, Any]:
        st = station_or_404(station_id)
        view = ctx.registry.station_view(st)
        h = ctx.store.health().get(st.id)
        view["health"] = None if h is None else {"status": h.status, "reasons": list(h.reasons)}
        view["custody"] = [asdict(c) for c in ctx.store.custody(st.id)]
        view["streams"] = [
            {"quantity": q, "unit": u, "last_ts": _iso(ts), "last_received": _iso(rx)}
            for _, q, u, ts, rx in ctx.store.streams(st.id)
        ]
        return view

    @r.put("/stations/{station_id}", tags=["stations"])
    def put_station(station_id: str, body: StationIn) -> dict[str, Any]:
        """Create or update a station's registry entry (runtime fields are kept)."""
        rec = {"station": station_id, **body.model_dump()}
        st = ctx.registry.station_from(rec, f"station {station_id}", status=body.status)
        ctx.store.put_station(st)
        return ctx.registry.station_view(st)

    @r.post("/stations/{station_id}/confirm", tags=["stations"])
    def confirm(station_id: str) -> dict[str, Any]:
        """Accept a pending station."""
        return ctx.registry.station_view(ctx.store.confirm_station(station_id, ctx.clock()))

    @r.delete("/stations/{station_id}", tags=["stations"], status_code=204)
    def delete_station(station_id: str) -> None:
        if not ctx.store.delete_station(station_id):
            raise HTTPException(404, f"no station {station_id!r}")

    @r.get("/stations/{station_id}/readings", tags=["data"])
    def readings(
        station_id: str,
        quantity: str | None = None,
        since: str | None = None,
        until: str | None = None,
        limit: int = Query(1000, ge=1, le=100_000),
    ) -> list[dict[str, Any]]:
        """Readings as stored, by time; without since/until the latest ones."""
        s, u = _t(since, "since"), _t(until, "until")
        if s is None and u is None:
            got = ctx.store.latest_readings(station_id, quantity, limit)
        else:
            got = []
            for rd in ctx.store.iter_readings(
                station=station_id, since=s, until=u, quantity=quantity
            ):
                got.append(rd)
                if len(got) >= limit:
                    break
        return [{**asdict(x), "time": to_iso(x.ts)} for x in got]

    @r.get("/stations/{station_id}/means", tags=["data"])
    def means(
        station_id: str,
        quantity: str,
        since: str,
        until: str,
        period: Literal["5min", "hour"] = "hour",
    ) -> list[dict[str, Any]]:
        """5-minute or hourly means with data capture (an hourly mean needs 45 minutes)."""
        s, u = _t(since, "since") or 0.0, _t(until, "until") or 0.0
        if u - s > 366 * 86400:
            raise HTTPException(422, "at most a year per request")
        secs = FIVE_MIN if period == "5min" else HOUR
        return [
            {**asdict(m), "time": to_iso(m.start), "capture_min": round(m.capture_min, 2)}
            for m in ctx.fusion.means(station_id, quantity, s, u, secs)
        ]

    @r.get("/gaps", tags=["custody"])
    def gaps(station: str | None = None) -> list[dict[str, Any]]:
        """Outbox ids counted lost (below a gateway's floor), with how many are still missing."""
        return [
            {**asdict(g), "size": g.size, "detected_time": to_iso(g.detected)}
            for g in ctx.store.gaps(station)
        ]

    @r.get("/custody", tags=["custody"])
    def custody(station: str | None = None) -> list[dict[str, Any]]:
        """The watermark of every (station, epoch)."""
        return [asdict(c) for c in ctx.store.custody(station)]

    @r.get("/quarantine", tags=["custody"])
    def quarantine(
        limit: int = Query(100, ge=1, le=10_000), reason_class: str | None = None
    ) -> dict[str, Any]:
        """What could not be taken in, newest first, and counts by reason class."""
        return {
            "counts": ctx.store.quarantine_counts(),
            "entries": [
                {**{k: v for k, v in asdict(q).items() if k != "payload"},
                 "payload": q.payload.decode("utf-8", "replace"), "time": to_iso(q.received)}
                for q in ctx.store.quarantine_entries(limit, reason_class)
            ],
        }  # fmt: skip

    # -- sites and areas --------------------------------------------------------------
    @r.get("/sites", tags=["registry"])
    def sites(kind: str | None = None) -> list[dict[str, Any]]:
        return [ctx.registry.site_view(s) for s in ctx.store.sites(kind)]

    @r.get("/sites/{site_id}", tags=["registry"])
    def site(site_id: str) -> dict[str, Any]:
        s = ctx.store.get_site(site_id)
        if s is None:
            raise HTTPException(404, f"no site {site_id!r}")
        return ctx.registry.site_view(s)

    @r.put("/sites/{site_id}", tags=["registry"])
    def put_site(site_id: str, body: SiteIn) -> dict[str, Any]:
        data = body.model_dump()
        persons = tuple(Person(site_id, **p) for p in data.pop("persons"))
        s = Site(id=site_id, persons=persons, **data)
        ctx.store.put_site(s)
        return ctx.registry.site_view(s)

    @r.delete("/sites/{site_id}", tags=["registry"], status_code=204)
    def delete_site(site_id: str) -> None:
        if not ctx.store.delete_site(site_id):
            raise HTTPException(404, f"no site {site_id!r}")

    @r.get("/areas", tags=["registry"])
    def areas() -> list[dict[str, Any]]:
        return [asdict(a) for a in ctx.store.areas()]

    @r.get("/areas/{area_id}", tags=["registry"])
    def area(area_id: str) -> dict[str, Any]:
        a = ctx.store.get_area(area_id)
        if a is None:
            raise HTTPException(404, f"no area {area_id!r}")
        return asdict(a)

    @r.put("/areas/{area_id}", tags=["registry"])
    def put_area(area_id: str, body: AreaIn) -> dict[str, Any]:
        a = Area(area_id, body.name, body.kind, body.geometry)
        ctx.store.put_area(a)
        return asdict(a)

    @r.delete("/areas/{area_id}", tags=["registry"], status_code=204)
    def delete_area(area_id: str) -> None:
        if not ctx.store.delete_area(area_id):
            raise HTTPException(404, f"no area {area_id!r}")

    # -- commands and calibration -----------------------------------------------------
    @r.get("/commands", tags=["commands"])
    def commands(
        station: str | None = None, limit: int = Query(100, ge=1, le=10_000)
    ) -> list[dict[str, Any]]:
        return [asdict(c) for c in ctx.store.commands(station, limit)]

    @r.post("/stations/{station_id}/commands", tags=["commands"], status_code=202)
    def send_command(station_id: str, body: CommandIn) -> dict[str, Any]:
        """Send a command to the station's gateway; its ack updates the record."""
        station_or_404(station_id)
        if ctx.commander is None:
            raise HTTPException(503, "no MQTT connection in this service: commands are off")
        rec = ctx.commander.send(station_id, body.cmd, body.args, expires_s=body.expires_s)
        return asdict(rec)

    @r.get("/calibrations", tags=["commands"])
    def calibrations(station: str | None = None) -> list[dict[str, Any]]:
        return [asdict(c) for c in ctx.store.calibrations(station)]

    @r.post("/stations/{station_id}/colocation", tags=["commands"])
    def colocation(station_id: str, body: ColocationIn) -> dict[str, Any]:
        """Fit the station against a reference over the rolling window; push it if asked."""
        station_or_404(station_id)
        station_or_404(body.reference)
        if ctx.colocate is None:
            raise HTTPException(503, "co-location needs the fusion part")
        return asdict(ctx.colocate(station_id, body.reference, body.quantity, push=body.push))

    # -- inversion inputs -------------------------------------------------------------
    @r.get("/obs", tags=["data"])
    def obs(hour: str, quantity: str = "pm25") -> list[dict[str, Any]]:
        """OBS.csv rows of one hour (DESIGN 4.3), from the confirmed stations."""
        return ctx.fusion.hourly_obs(_t(hour, "hour") or 0.0, quantity)

    @r.get("/met", tags=["data"])
    def met(hour: str) -> list[dict[str, Any]]:
        """MET.csv rows of one hour, vector-averaged over the met stations."""
        return ctx.fusion.hourly_met(_t(hour, "hour") or 0.0)

    @r.get("/inversion", tags=["data"])
    def inversion(
        since: str | None = None, until: str | None = None, quantity: str | None = None
    ) -> list[dict[str, Any]]:
        """The hourly inversion's results (RESULT.json of each hour), oldest first."""
        return [
            {"hour": to_iso(h, ms=False), "quantity": q, "result": res, "computed": _iso(c)}
            for h, q, res, c in ctx.store.inversion_results(
                _t(since, "since"), _t(until, "until"), quantity
            )
        ]

    app.include_router(r)
    from cloud.api_events import router as events_router  # alerts, silences, events

    app.include_router(events_router(ctx))
    from cloud.api_map import install as install_map  # the one-map page (/map/) and its routes

    install_map(app, ctx, auth)
    return app

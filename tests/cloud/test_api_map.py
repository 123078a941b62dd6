"""The one-map page's routes through the real API app (httpx's ASGI transport), over a store
filled with a small district (``mapworld``): what the snapshot and the inversion hour say
is what the store holds, placed in the local frame; the page and Leaflet are served."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cloud.api import ApiContext, create_app
from cloud.api_map import condition
from cloud.config import DomainConfig, parse_config
from cloud.fusion import Fusion
from cloud.registry import Registry
from cloud.store import Store, open_store
from cloud.store.types import Health, Station
from protocols.errors import ConfigError
from tests.cloud import mapworld as w
from tests.cloud.test_api import ApiClient

TOKEN = "map-operator-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DOMAIN = DomainConfig(origin_lat=w.ORIGIN.lat, origin_lon=w.ORIGIN.lon)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with open_store(f"sqlite:///{tmp_path}/a.db") as s:
        yield s


def client_for(store: Store, domain: DomainConfig = DOMAIN, **extra: Any) -> ApiClient:
    ctx = ApiContext(
        store=store,
        registry=Registry(store, domain),
        fusion=Fusion(store, domain=domain),
        tokens=(TOKEN,),
        clock=lambda: w.NOW,
        extra=dict(extra),
    )
    return ApiClient(create_app(ctx))


@pytest.fixture
def world(store: Store) -> Iterator[tuple[ApiClient, w.Filled]]:
    filled = w.fill(store)
    c = client_for(store)
    yield c, filled
    c.close()


def test_the_snapshot_places_what_the_store_holds(world: tuple[ApiClient, w.Filled]) -> None:
    c, filled = world
    snap = c.get("/api/v1/map/snapshot", headers=AUTH).json()
    stations = {s["id"]: s for s in snap["stations"]}
    assert set(stations) == {sid for sid, *_ in w.STATIONS}  # not the retired, not the unplaced
    assert snap["unplaced"] == {"stations": 1, "sites": 0, "areas": 0}
    for sid, kind, (x, y), health, value in w.STATIONS:
        st = stations[sid]
        assert st["kind"] == kind
        assert (st["x_m"], st["y_m"]) == pytest.approx((x, y), abs=0.01)
        assert st["condition"] == {None: "unknown", "ok": "online"}.get(health, health)
        assert st["latest"]["value"] == value and st["latest"]["valid"]  # the newest pm25
        assert st["latest"]["age_s"] == 300.0
    assert stations["M-STUCK"]["reasons"] == ["judged stuck"]
    assert snap["quantity"] == "pm25"
    assert snap["quantities"] == ["pm10", "pm25", "wind_dir", "wind_speed"]

    sites = {s["id"]: s for s in snap["sites"]}
    assert sites["SITE-1"]["control_level"] == "provincial" and sites["SITE-1"]["persons"] == 1
    assert (sites["SITE-2"]["x_m"], sites["SITE-2"]["y_m"]) == pytest.approx((1450, 350), abs=0.01)
    (area,) = snap["areas"]
    corners = [tuple(p) for p in area["polygons"][0][0]]
    assert corners == [
        pytest.approx(p, abs=0.2) for p in ((0, 0), (1000, 0), (1000, 1000), (0, 1000), (0, 0))
    ]

    alerts = {a["level"]: a for a in snap["alerts"]}
    assert (alerts["red"]["x_m"], alerts["red"]["y_m"]) == pytest.approx((900, 1700), abs=0.01)
    assert alerts["orange"]["event"] == filled.event and alerts["orange"]["status"] == "firing"
    (ev,) = snap["events"]
    assert (ev["id"], ev["level"], ev["state"]) == (filled.event, "orange", "acknowledged")
    assert ev["open"] and not ev["overdue"]
    assert (ev["x_m"], ev["y_m"]) == pytest.approx((550, 550), abs=0.01)  # at its site

    assert snap["inversion"] == {
        "quantity": "pm10",
        "hours": {"pm10": [{"hour": "2026-05-28T21:00:00Z", "sources": 2},
                           {"hour": "2026-05-28T22:00:00Z", "sources": 1}]},
    }  # fmt: skip
    dom = snap["domain"]
    assert dom["origin"] == {"lat": w.ORIGIN.lat, "lon": w.ORIGIN.lon}
    assert (dom["cell_m"], dom["grid_m"]) == (100.0, 1000.0)
    x0, y0, x1, y1 = dom["extent"]  # the stations, sites and the result's grid, with a margin
    assert x0 <= -500 and y0 <= -500 and x1 >= 2500 and y1 >= 2500
    assert all(v % 100 == 0 for v in dom["extent"])
    assert snap["tiles"] is None


def test_the_snapshot_shows_the_chosen_quantity(world: tuple[ApiClient, w.Filled]) -> None:
    c, _ = world
    snap = c.get("/api/v1/map/snapshot?quantity=pm10", headers=AUTH).json()
    assert snap["quantity"] == "pm10"
    got = {s["id"]: s["latest"]["value"] for s in snap["stations"]}
    assert got == {sid: 2 * v for sid, _k, _xy, _h, v in w.STATIONS}
    none = c.get("/api/v1/map/snapshot?quantity=no2", headers=AUTH).json()
    assert all(s["latest"] is None for s in none["stations"])


def test_one_inversion_hour_with_its_heat_and_wind(world: tuple[ApiClient, w.Filled]) -> None:
    c, _ = world
    latest = c.get("/api/v1/map/inversion", headers=AUTH).json()
    assert (latest["hour"], latest["quantity"]) == ("2026-05-28T22:00:00Z", "pm10")
    ((x, y, rate, sigma, site),) = w.SOURCES[w.H2]
    (src,) = latest["result"]["sources"]
    assert (src["x_m"], src["y_m"], src["rate_g_s"], src["rate_sigma_g_s"], src["site"]) == (
        x, y, rate, sigma, site)  # fmt: skip
    assert "heat" not in latest["result"]
    heat = latest["heat"]
    ix, iy, _p = heat["surface"]["cells"][0]  # the peak first: the source's cell
    size = heat["cell_m"]
    assert (heat["x0"] + (ix + 0.5) * size, heat["y0"] + (iy + 0.5) * size) == (x, y)
    assert heat["inventory"]["cells"]
    assert latest["wind"] == {
        "mean": {"speed_ms": 3.0, "from_deg": 270.0},
        "stations": [{"id": "MET-1", "x_m": 1500.0, "y_m": 1500.0, "speed_ms": 3.0,
                      "from_deg": 270.0, "n": 12}],
    }  # fmt: skip

    first = c.get("/api/v1/map/inversion?quantity=pm10&hour=2026-05-28T21:30:00Z", headers=AUTH)
    assert first.status_code == 200
    assert first.json()["hour"] == "2026-05-28T21:00:00Z"
    assert len(first.json()["result"]["sources"]) == 2
    assert first.json()["wind"]["mean"] is None  # no wind recorded in that hour

    none = c.get("/api/v1/map/inversion?hour=2026-05-27T00:00:00Z", headers=AUTH)
    assert none.status_code == 404 and "no inversion result" in none.json()["detail"]
    assert c.get("/api/v1/map/inversion?quantity=no2", headers=AUTH).status_code == 404
    bad = c.get("/api/v1/map/inversion?hour=yesterday", headers=AUTH)
    assert bad.status_code == 422 and "ISO 8601" in bad.json()["detail"]


def test_the_routes_need_the_token_and_the_page_is_served(
    world: tuple[ApiClient, w.Filled],
) -> None:
    c, _ = world
    for path in ("/api/v1/map/snapshot", "/api/v1/map/inversion"):
        assert c.get(path).status_code == 401
        wrong = {"Authorization": "Bearer wrong-token-0123456789"}
        assert c.get(path, headers=wrong).status_code == 401
    page = c.get("/map/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert 'src="map.js"' in page.text and 'href="vendor/leaflet.css"' in page.text
    for name in ("index.html", "map.js", "map.css"):  # nothing from the internet
        text = c.get(f"/map/{name}").text
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, name
    leaflet = c.get("/map/vendor/leaflet.js")
    assert leaflet.status_code == 200 and "Leaflet 1.9.4" in leaflet.text[:200]
    assert c.get("/map/map.js").status_code == 200
    home = c.get("/")
    assert home.status_code == 307 and home.headers["location"] == "/map/"
    assert c.get("/map").status_code == 307
    paths = c.get("/api/v1/openapi.json", headers=AUTH).json()["paths"]
    assert {"/api/v1/map/snapshot", "/api/v1/map/inversion"} <= set(paths)


def test_an_open_api_serves_the_map_without_a_token(store: Store) -> None:
    w.fill(store)
    reg, fusion = Registry(store, DOMAIN), Fusion(store, domain=DOMAIN)
    c = ApiClient(create_app(ApiContext(store, reg, fusion, clock=lambda: w.NOW)))
    try:
        assert c.get("/api/v1/map/snapshot").status_code == 200
    finally:
        c.close()


def test_without_an_origin_nothing_is_guessed(store: Store) -> None:
    w.fill(store)
    c = client_for(store, DomainConfig(), map={"tiles": "https://t/{z}/{x}/{y}.png"})
    try:
        snap = c.get("/api/v1/map/snapshot", headers=AUTH).json()
    finally:
        c.close()
    assert snap["stations"] == [] and snap["sites"] == [] and snap["areas"] == []
    assert snap["unplaced"] == {"stations": len(w.STATIONS) + 1, "sites": 2, "areas": 1}
    assert snap["domain"]["origin"] is None
    assert snap["domain"]["extent"] == [-500.0, -500.0, 2500.0, 2500.0]  # the result's grid
    assert snap["tiles"] is None  # tiles need lat/lon, so an origin
    # the site's alert and event fall back to their grid cell's centre; the station's is dropped
    assert [(a["level"], a["x_m"], a["y_m"]) for a in snap["alerts"]] == [("orange", 500.0, 500.0)]
    assert [(e["x_m"], e["y_m"]) for e in snap["events"]] == [(500.0, 500.0)]


def test_tiles_from_the_config_reach_the_snapshot(store: Store) -> None:
    url = "https://tiles.example.org/{z}/{x}/{y}.png"
    c = client_for(store, map={"tiles": url, "attribution": "© local"})
    try:
        snap = c.get("/api/v1/map/snapshot", headers=AUTH).json()
    finally:
        c.close()
    assert snap["tiles"] == {"url": url, "attribution": "© local"}
    assert snap["stations"] == [] and snap["domain"]["extent"] is None


def test_map_tiles_config_is_checked() -> None:
    base = '[mqtt]\nurl = "mqtt://127.0.0.1"\n[store]\nurl = "sqlite:///x.db"\n[api]\n'
    cfg = parse_config(base + 'map_tiles = "/tiles/{z}/{x}/{y}.png"\nmap_attribution = "OSM"\n')
    assert (cfg.api.map_tiles, cfg.api.map_attribution) == ("/tiles/{z}/{x}/{y}.png", "OSM")
    assert parse_config(base).api.map_tiles is None
    for bad in ("tiles/{z}/{x}/{y}.png", "https://t/{z}/{x}.png"):
        with pytest.raises(ConfigError, match="map_tiles"):
            parse_config(base + f'map_tiles = "{bad}"\n')


@pytest.mark.parametrize(
    ("health", "state", "expected"),
    [
        ("ok", "online", "online"),
        ("ok", "unknown", "online"),
        (None, "online", "online"),
        (None, "offline", "offline"),
        ("ok", "offline", "offline"),  # the last will outranks an older judgement
        ("stuck", "online", "stuck"),
        ("drift", "online", "drift"),
        ("stale", "online", "stale"),
        ("offline", "online", "offline"),
        (None, "unknown", "unknown"),
        ("unknown", "unknown", "unknown"),
    ],
)
def test_condition(health: str | None, state: str, expected: str) -> None:
    st = Station("S-1", state=state)
    h = None if health is None else Health("S-1", health, (), 0.0)
    assert condition(st, h) == expected


def test_the_extent_of_a_configured_domain_wins(store: Store) -> None:
    dom = DomainConfig(origin_lat=w.ORIGIN.lat, origin_lon=w.ORIGIN.lon, extent=(0, 0, 5000, 4000))
    w.fill(store)
    c = client_for(store, dom)
    try:
        snap = c.get("/api/v1/map/snapshot", headers=AUTH).json()
    finally:
        c.close()
    assert snap["domain"]["extent"] == [0, 0, 5000, 4000]

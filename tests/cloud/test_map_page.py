"""The one-map page in real Chromium (Debian's, driven by Playwright; never a downloaded
browser): a central service started as ``cloud run`` starts it, on a free port, with a
token, over a store filled with a small district (``mapworld``). What the page draws is
checked against what the store holds."""

from __future__ import annotations

import base64
import math
import re
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from cloud.config import parse_config
from cloud.events import Workflow
from cloud.events_store import EventsDb
from cloud.service import Service
from tests.cloud import mapworld as w

CHROMIUM = shutil.which("chromium") or (
    "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
)
TOKEN = "map-operator-token-0123456789"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LEVEL_ORANGE = "#fb8c00"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,  # one Chromium for the module: its start takes seconds
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary on this machine"),
]


def started(d: Path, api: str) -> tuple[Service, w.Filled]:
    """``Service(cfg).start()`` is what ``airtrace cloud run`` does, without the signals."""
    cfg = parse_config(
        f'[store]\nurl = "sqlite:///{d}/cloud.db"\n[ingest]\nenabled = false\n'
        "[fusion]\nenabled = false\n"
        f"[domain]\norigin_lat = {w.ORIGIN.lat}\norigin_lon = {w.ORIGIN.lon}\n"
        f'[api]\nlisten = "127.0.0.1:0"\n{api}',
        source=str(d / "cloud.toml"),
    )
    svc = Service(cfg, clock=lambda: w.NOW)
    filled = w.fill(svc.store)
    svc.start()
    return svc, filled


def url_of(svc: Service) -> str:
    port = next(p for p in svc.parts if p.name == "api").port  # type: ignore[attr-defined]
    return f"http://127.0.0.1:{port}/"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, w.Filled]]:
    svc, filled = started(tmp_path_factory.mktemp("map"), f'tokens = ["{TOKEN}"]\n')
    try:
        yield svc, filled
    finally:
        svc.stop()


@pytest.fixture(scope="module")
def page(
    service: tuple[Service, w.Filled], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    """One browser for the module; the page is opened and the token given once."""
    from playwright.sync_api import sync_playwright

    svc, _ = service
    with sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=CHROMIUM,
            headless=True,
            args=ARGS,
            viewport={"width": 1280, "height": 860},
            timezone_id="UTC",
            locale="en-GB",
        )
        try:
            pg = ctx.pages[0] if ctx.pages else ctx.new_page()
            errors: list[str] = []
            pg.on("pageerror", lambda e: errors.append(str(e)))
            pg.goto(url_of(svc), wait_until="domcontentloaded")
            pg.wait_for_selector("#login:not([hidden])", timeout=10_000)
            pg.fill("#token", TOKEN)
            pg.click("#login button[type=submit]")
            pg.wait_for_selector("body[data-state=ready]", timeout=15_000)
            pg.errors = errors
            yield pg
        finally:
            ctx.close()


def centre(el: Any) -> tuple[float, float]:
    box = el.bounding_box()
    assert box is not None
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def apart(a: Any, b: Any) -> float:
    """Pixels between the centres of two elements."""
    (ax, ay), (bx, by) = centre(a), centre(b)
    return math.hypot(ax - bx, ay - by)


def marker(page: Any, cls: str, ident: str) -> Any:
    return page.locator(f".{cls}[data-id='{ident}']")


def test_the_token_is_asked_once_and_kept_in_the_tab(page: Any) -> None:
    assert page.evaluate("sessionStorage.getItem('airtrace.token')") == TOKEN
    page.reload()
    page.wait_for_selector("body[data-state=ready]", timeout=15_000)
    assert page.locator("#login").is_hidden()
    assert page.errors == []


def test_layers_draw_what_the_store_holds(
    page: Any, service: tuple[Service, w.Filled], tmp_path: Path
) -> None:
    svc, filled = service
    placed = [s for s in svc.store.stations() if s.status != "retired" and s.lat is not None]
    assert page.locator(".at-station").count() == len(placed) == len(w.STATIONS)
    assert page.locator(".at-station.cond-stuck").count() == 1
    assert page.locator(".at-station.cond-offline").count() == 1
    assert page.locator(".at-site").count() == len(svc.store.sites())
    assert marker(page, "at-site", "SITE-1").get_attribute("class").count("controlled") == 1

    # the source of the latest hour sits on the site it is tied to (both from the store:
    # the source from RESULT.json's x/y, the site from its lat/lon through the frame)
    ((_hour, _q, latest, _c),) = svc.store.inversion_results(since=w.H2)
    assert page.locator("body").get_attribute("data-hour") == "2026-05-28T22:00:00Z"
    src = page.locator(".at-source")
    assert src.count() == len(latest["sources"]) == 1
    assert apart(src, marker(page, "at-site", latest["sources"][0]["site"])) < 1.5
    sx, sy = centre(src)
    # ... and in proportion between two stations: east of REF-1 by 350 m of M-1's 1000 m
    rx, ry = centre(marker(page, "at-station", "REF-1"))
    mx, my = centre(marker(page, "at-station", "M-1"))
    assert abs(my - ry) < 1.0
    assert (sx - rx) / (mx - rx) == pytest.approx(350.0 / 1000.0, abs=0.01)
    assert sy < ry  # north is up

    # the event is drawn in its level's colour, with its state
    ev = marker(page, "at-event", filled.event)
    assert "state-acknowledged" in ev.get_attribute("class")
    assert ev.locator("polygon").get_attribute("fill") == LEVEL_ORANGE
    assert page.locator(".at-alert").count() == 2  # the site's orange, the station's red
    assert page.locator(".at-alert.level-red").count() == 1
    # wind of the hour at the mast, and the hour's mean in the box
    assert page.locator(".at-wind").count() == 1
    assert "3.0 m/s" in page.locator(".windbox").inner_text()
    page.screenshot(path=str(tmp_path / "one-map.png"))
    assert (tmp_path / "one-map.png").stat().st_size > 10_000


def test_the_hour_slider_switches_results(page: Any, service: tuple[Service, w.Filled]) -> None:
    svc, _ = service
    ((_h, _q, first, _c), _) = svc.store.inversion_results()
    page.locator("#hour").press("Home")
    page.wait_for_selector("body[data-hour='2026-05-28T21:00:00Z']", timeout=10_000)
    src = page.locator(".at-source")
    assert src.count() == len(first["sources"]) == 2
    top = page.locator(".at-source[data-rank='1']")
    assert apart(top, marker(page, "at-site", "SITE-2")) < 1.5
    assert "2 sources" in page.locator("#hourlabel").inner_text()
    page.locator("#hour").press("End")
    page.wait_for_selector("body[data-hour='2026-05-28T22:00:00Z']", timeout=10_000)
    assert page.locator(".at-source").count() == 1


def test_a_click_on_the_event_shows_its_trail_and_evidence(
    page: Any, service: tuple[Service, w.Filled], tmp_path: Path
) -> None:
    svc, filled = service
    evidence = Workflow(EventsDb(svc.store)).evidence(filled.event, w.NOW)
    assert evidence.before is not None
    marker(page, "at-event", filled.event).click()
    page.wait_for_selector(f"#detail .evtitle[data-id='{filled.event}']", timeout=10_000)
    rows = page.locator("#detail table.trail tr")
    assert rows.count() == len(filled.trail) == 4
    actions = [rows.nth(i).locator("b").inner_text() for i in range(rows.count())]
    assert actions == filled.trail
    assert "acknowledged" in page.locator("#detail").inner_text()
    shown = page.locator("#detail .evidence").inner_text()
    assert f"verdict: {evidence.verdict}" in shown
    assert f"before: {evidence.before.rate_g_s:.3f} ± {evidence.before.sigma_g_s:.3f} g/s" in shown
    page.screenshot(path=str(tmp_path / "event.png"))
    page.locator("#close").click()
    assert page.locator("#panel").is_hidden()
    assert page.errors == []


class TileServer:
    """A tile server on loopback that answers every tile with a tiny PNG and keeps the paths."""

    PNG = base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
    )

    def __init__(self) -> None:
        self.paths: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.paths.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(outer.PNG)))
                self.end_headers()
                self.wfile.write(outer.PNG)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_over_a_tile_server_the_points_sit_at_their_lat_lon(
    page: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """An open API (loopback, no token) with ``[api] map_tiles``: Web Mercator, the tiles
    come from the configured server, and a station's marker is where Leaflet puts the
    lat/lon the store holds for it."""
    tiles = TileServer()
    svc, _ = started(
        tmp_path_factory.mktemp("tiles"),
        f'map_tiles = "{tiles.url}/t/{{z}}/{{x}}/{{y}}.png"\nmap_attribution = "test tiles"\n',
    )
    pg = page.context.new_page()
    try:
        pg.goto(url_of(svc), wait_until="domcontentloaded")
        pg.wait_for_selector("body[data-state=ready]", timeout=15_000)
        assert pg.locator("#login").is_hidden()
        assert re.fullmatch(r"/t/\d+/\d+/\d+\.png", tiles.paths[0])
        assert "test tiles" in pg.locator(".leaflet-control-attribution").inner_text()
        for sid in ("REF-1", "M-STUCK"):
            st = svc.store.get_station(sid)
            assert st is not None
            want = pg.evaluate(
                "([lat, lon]) => { const p = airtrace.map.latLngToContainerPoint([lat, lon]);"
                " const r = airtrace.map.getContainer().getBoundingClientRect();"
                " return [p.x + r.left, p.y + r.top]; }",
                [st.lat, st.lon],
            )
            got = centre(marker(pg, "at-station", sid))
            assert math.hypot(got[0] - want[0], got[1] - want[1]) < 1.0
        src = pg.locator(".at-source")
        assert apart(src, marker(pg, "at-site", "SITE-1")) < 1.5
    finally:
        pg.close()
        svc.stop()
        tiles.stop()

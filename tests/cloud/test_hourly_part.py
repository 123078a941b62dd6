"""The hourly inversion inside ``cloud run``: a real service on SQLite, readings of a
synthetic district in its store, the job's part run on the service's clock."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from cloud.config import parse_config
from cloud.hourly import make_part
from cloud.hourly_part import auto_domain
from cloud.service import Service
from cloud.store.types import Batch, PackRows, Site, Station
from firmware_sim.world import World

HOURS = 6


class _Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _feed(service: Service, world: World, hours: list[int]) -> None:
    """Every station's truth (pm10, and wind at the met masts) every 5 minutes."""
    units = {"pm10": "ug/m3", "wind_speed": "m/s", "wind_dir": "deg"}
    for st in world.stations:
        service.store.put_station(Station(st.id, kind=st.kind, status="confirmed", lat=st.lat,
                                          lon=st.lon, inlet_height_m=st.z_m))
        wanted = [q for q in ("pm10", "wind_speed", "wind_dir") if q in world.quantities(st.id)]
        rows, n = [], 0
        for h in hours:
            for k in range(12):
                t = h + 300 * k
                for q in wanted:
                    n += 1
                    v = world.concentration(st.id, q, t)
                    rows.append((n, q, float(t), v, v, units[q], "N", "0", q, None))
        if rows:
            service.store.commit(Batch(packs=[PackRows(st.id, "e", rows)],
                                       received=float(hours[-1] + 3600)))


@pytest.mark.slow
def test_cloud_run_inverts_the_last_hours_from_its_own_store(tmp_path: Path) -> None:
    world = World.generate(5, n_stations=40, n_sources=1, source_kinds=("construction",),
                           rate_range_g_s=(4.0, 4.0), kinds={"reference": 0.15, "micro": 0.8,
                                                              "met": 0.05})
    (src,) = world.sources
    hours = world.hour_starts([world.start + 3600 * (16 + i) for i in range(HOURS)])
    lat, lon = world.origin_lat_lon
    x0, y0, x1, y1 = world.domain
    cfg = parse_config(
        f'[store]\nurl = "sqlite:///{tmp_path}/s.db"\n[ingest]\nenabled = false\n'
        f"[fusion]\nenabled = false\n[domain]\norigin_lat = {lat}\norigin_lon = {lon}\n"
        f"extent = [{x0}, {y0}, {x1}, {y1}]\n"
        f"[inversion]\nenabled = true\nwindow_hours = {HOURS}\nlag_s = 0\ninventory = false\n",
        source=str(tmp_path / "cloud.toml"))
    clock = _Clock(hours[-1] + 3600 + 5)
    service = Service(cfg, clock=clock)
    heard: list[tuple[float, object]] = []
    service.source_listeners.append(lambda hour, result: heard.append((hour, result)))
    try:
        _feed(service, world, hours)
        site = next(s for s in world.sites if s.id == src.site)
        slat, slon = world.to_lat_lon(site.x_m, site.y_m)
        service.store.put_site(Site(site.id, kind=site.kind, lat=slat, lon=slon, h_m=site.h_m))
        part = make_part(service)
        (done,) = part.job.tick(clock())
        assert done.hour_start == hours[-1]
        assert done.result.hours_used == tuple(hours)
        ((hour, quantity, stored, _),) = service.store.inversion_results()
        assert (hour, quantity) == (hours[-1], "pm10")
        assert stored["inputs_sha256"] == done.inputs_sha256
        best = min(stored["sources"], key=lambda s: math.hypot(s["x_m"] - src.x_m,
                                                               s["y_m"] - src.y_m))
        assert math.hypot(best["x_m"] - src.x_m, best["y_m"] - src.y_m) < 250
        assert best.get("site") == src.site
        assert [h for h, _ in heard] == [hours[-1]]
        # the stability came from the sun: the fused met rows carry no class
        assert {how for _, _, how in done.result.stability_by_hour} == {"insolation"}
    finally:
        service.stop()


def test_without_an_extent_the_grid_wraps_the_stations() -> None:
    rows = [{"x_m": 120.0, "y_m": -40.0}, {"x_m": 2980.0, "y_m": 1510.0}]
    assert auto_domain(rows, 100.0) == (-400.0, -600.0, 3500.0, 2100.0)
    assert auto_domain([], 100.0) == (0.0, 0.0, 100.0, 100.0)


def test_a_restarted_service_inverts_the_hours_it_was_down_for(tmp_path: Path) -> None:
    """The job goes on from the newest result in the store: after three hours down, the
    three missed hours come due in order (not only the newest); a fresh store starts with
    the newest hour alone."""
    cfg = parse_config(
        f'[store]\nurl = "sqlite:///{tmp_path}/s.db"\n[ingest]\nenabled = false\n'
        "[fusion]\nenabled = false\n[domain]\norigin_lat = 31.2\norigin_lon = 121.4\n"
        "[inversion]\nenabled = true\nlag_s = 0\ninventory = false\n",
        source=str(tmp_path / "cloud.toml"))
    h0 = 1_780_000_000 // 3600 * 3600
    clock = _Clock(h0 + 3600 + 5)
    service = Service(cfg, clock=clock)
    try:
        part = make_part(service)
        assert part.job.pending() == [h0]  # nothing stored yet: the newest hour only
        (done,) = part.job.tick()
        assert done.hour_start == h0
        clock.t += 3 * 3600  # down for three hours, then started again
        again = make_part(service)
        assert again.job.pending() == [h0 + 3600, h0 + 7200, h0 + 10800]
        assert [r.hour_start for r in again.job.tick()] == [h0 + 3600, h0 + 7200, h0 + 10800]
        # a reading of hour h0+2 comes in late, the service is restarted an hour on: the
        # stored hashes let it see which hours' inputs changed since they ran
        before = {h: doc["inputs_sha256"] for h, _, doc, _ in service.store.inversion_results()}
        service.store.put_station(Station("M1", kind="micro", status="confirmed", lat=31.2,
                                          lon=121.4, inlet_height_m=3.0))
        rows = [(k + 1, "pm10", float(h0 + 7200 + 300 * k), 80.0, 80.0, "ug/m3", "N", "0",
                 "pm10", None) for k in range(12)]  # a whole hour, every 5 minutes
        service.store.commit(Batch(packs=[PackRows("M1", "e", rows)], received=clock.t))
        clock.t += 3600
        restarted = make_part(service)
        assert [r.hour_start for r in restarted.job.tick()] == [h0 + 4 * 3600]
        assert restarted.job.reruns == 2  # h0+2 and h0+3; h0 and h0+1 do not reach it
        after = {h: doc["inputs_sha256"] for h, _, doc, _ in service.store.inversion_results()}
        changed = sorted(h for h in before if after[h] != before[h])
        assert changed == [h0 + 7200, h0 + 10800]
        clock.t += 39 * 3600  # down longer than the catch-up reach: the last 24 hours
        late = make_part(service)
        newest = h0 + 43 * 3600
        assert late.job.pending() == list(range(newest - 23 * 3600, newest + 1, 3600))
    finally:
        service.stop()

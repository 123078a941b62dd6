"""How long the one-map page waits for its data in a district of the real platform's size:
250 stations with a day of 5-minute PM2.5 readings, 286 sites and 48 stored hourly results
with their heat layers, on SQLite, through the real API app (httpx's ASGI transport).

Figures: median seconds of ``GET /api/v1/map/snapshot`` and ``GET /api/v1/map/inversion``;
baseline: ``GET /api/v1/stations`` (stations with health) in the same run; the ratio of
the snapshot to the baseline; the size of each answer.

    python bench/map_snapshot.py [--stations 250] [--repeat 7]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import emit
from cloud.api import ApiContext, create_app
from cloud.config import DomainConfig
from cloud.fusion import Fusion
from cloud.inversion_types import FoundSource, Inventory, InversionResult
from cloud.invert_io import result_json
from cloud.map_heat import heat_layers
from cloud.registry import Registry
from cloud.store import open_store
from cloud.store.types import Batch, PackRows, Site, Station
from protocols.geo import Origin, to_latlon

ORIGIN = Origin(34.80, 113.50)
T0 = 1_780_000_000.0


def fill(store: Any, n_stations: int, n_sites: int, hours: int, rng: np.random.Generator) -> None:
    kinds = ["reference"] * 4 + ["micro"] * 14 + ["dust"] * 2
    for i in range(n_stations):
        lat, lon = to_latlon(*rng.uniform(0, 10_000, 2), ORIGIN)
        sid = f"S-{i:03d}"
        store.put_station(Station(sid, kind=kinds[i % 20], status="confirmed", lat=lat, lon=lon))
        rows = [
            (k + 1, "pm25", T0 + 300 * k, float(v), float(v), "ug/m3", "N", "1", "pm", None)
            for k, v in enumerate(rng.uniform(10, 120, 288))
        ]
        store.commit(Batch(packs=[PackRows(sid, "e", rows)], received=T0 + 86_400))
    for i in range(n_sites):
        lat, lon = to_latlon(*rng.uniform(0, 10_000, 2), ORIGIN)
        store.put_site(Site(f"SITE-{i:03d}", kind="construction", lat=lat, lon=lon))
    nx = ny = 100
    xs = (np.arange(nx) + 0.5) * 100.0
    gx, gy = np.meshgrid(xs, xs)
    for h in range(hours):
        sx, sy = rng.uniform(1000, 9000, 2)
        surface = np.exp(-((gx - sx) ** 2 + (gy - sy) ** 2) / (2 * 150.0**2))
        mean = 0.2 * rng.random((ny, nx)) + 2 * surface
        inv = Inventory(nx, ny, 0.0, 0.0, 100.0, mean, 0.1 + 0 * mean, 0 * mean, 0.1 + 0 * mean)
        res = InversionResult(
            (FoundSource(sx, sy, 2.0, 0.3, 0.8),), 30.0, 4.0,
            surface=surface / surface.sum(), inventory=inv, grid=(0.0, 0.0, 1e4, 1e4, 100.0),
        )  # fmt: skip
        hour = T0 + 86_400 - (hours - h) * 3600
        doc = {**result_json(res, hour_start=int(hour)), "heat": heat_layers(res)}
        store.put_inversion_result(hour, "pm10", doc, hour + 3700)


def timed(get: Any, path: str, repeat: int) -> tuple[float, int]:
    times, size = [], 0
    for _ in range(repeat):
        t = time.perf_counter()
        r = get(path)
        times.append(time.perf_counter() - t)
        assert r.status_code == 200, (path, r.status_code, r.text[:200])
        size = len(r.content)
    return statistics.median(times), size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stations", type=int, default=250)
    ap.add_argument("--sites", type=int, default=286)
    ap.add_argument("--hours", type=int, default=48)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    import httpx

    with tempfile.TemporaryDirectory() as d, open_store(f"sqlite:///{d}/b.db") as store:
        fill(store, args.stations, args.sites, args.hours, np.random.default_rng(7))
        dom = DomainConfig(origin_lat=ORIGIN.lat, origin_lon=ORIGIN.lon)
        ctx = ApiContext(store, Registry(store, dom), Fusion(store, domain=dom),
                         clock=lambda: T0 + 86_400 + 60)  # fmt: skip
        loop = asyncio.new_event_loop()
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(ctx)),
                                   base_url="http://bench")  # fmt: skip

        def get(path: str) -> httpx.Response:
            return loop.run_until_complete(client.get(path))

        base, base_size = timed(get, "/api/v1/stations", args.repeat)
        snap, snap_size = timed(get, "/api/v1/map/snapshot", args.repeat)
        hour, hour_size = timed(get, "/api/v1/map/inversion", args.repeat)
        loop.run_until_complete(client.aclose())
        loop.close()
    emit(
        "map_snapshot",
        {
            "stations": args.stations,
            "sites": args.sites,
            "stored_hours": args.hours,
            "snapshot_s": round(snap, 4),
            "snapshot_bytes": snap_size,
            "inversion_hour_s": round(hour, 4),
            "inversion_hour_bytes": hour_size,
            "baseline_stations_s": round(base, 4),
            "baseline_stations_bytes": base_size,
            "ratio_snapshot_to_baseline": round(snap / base, 2),
        },
    )


if __name__ == "__main__":
    main()

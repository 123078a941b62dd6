"""The demo's district: the world, its registry files and the central service's config.

Everything the demo writes before a process starts lives here, so the run itself
(``airtrace.demo.run``) only starts, watches and stops processes.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEMO_START = 1780272000  # 2026-06-01T00:00:00Z: a summer day, convective afternoons
RULES_FILE = "alerts.toml"
PERSONS_SECRET_FILE = "persons.secret"  # noqa: S105 (a file name, not a secret)


@dataclass(frozen=True)
class DemoOptions:
    out: Path
    minutes: float = 5.0
    hours: int = 24
    stations: int = 40
    seed: int = 7
    sources: int = 2
    mqtt: str | None = None
    chaos: bool = False
    per_process: int = 10  # stations per gateway process
    interval_s: float = 120.0  # the gateways' polling interval, simulated seconds
    window_hours: int = 6

    @property
    def rate(self) -> float:
        """Simulated seconds per real second."""
        return self.hours * 3600.0 / (self.minutes * 60.0)


def build_world(opts: DemoOptions) -> Any:
    """A seeded district with ``opts.sources`` hidden emitters: the first a construction
    site on the register, the next an industrial one; the last of two is off the register
    when there are at least two (an unregistered emitter the inversion must still find)."""
    from firmware_sim.world import World

    kinds = ("construction", "industrial")
    return World.generate(
        opts.seed,
        n_stations=opts.stations,
        n_sources=opts.sources,
        source_kinds=kinds[: max(1, opts.sources)],
        start=DEMO_START,
    )


PARTICLES = ("pm1", "pm25", "pm10", "tsp")


def calibrate_gateways(world: Any, configs: list[Path], *, now: float) -> int:
    """Give every particle sensor the calibration its station's maintainer would have from
    co-location against a reference: the linear part and, for optical sensors, the
    kappa-Koehler humidity correction (read off the world's sensor model). Written into each
    gateway's calibration store before it starts; returns how many sets were written."""
    from gateway.calibration import CalSet, calibration_path
    from gateway.calstore import CalibrationStore
    from gateway.config import load as load_station
    from gateway.profiles import load_profile

    n = 0
    for path in configs:
        cfg = load_station(path)
        store = CalibrationStore(calibration_path(cfg.outbox), cfg.station.id)
        try:
            for sensor in cfg.sensors:
                for q in load_profile(sensor.profile).quantities:
                    if q not in PARTICLES:
                        continue
                    slope, bias, _drift, kappa = world.sensor_params(cfg.station.id, q)
                    store.add(CalSet(
                        sensor=sensor.name, quantity=q, kind="rh" if kappa > 0 else "linear",
                        slope=1.0 / slope, offset=-bias / slope,
                        kappa=round(kappa, 4) if kappa > 0 else None, source="colocation",
                        effective=now - 86400.0, note="co-located before the demo",
                    ), now=now - 86400.0)
                    n += 1
        finally:
            store.close()
    return n


def sites_csv(world: Any) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["site", "kind", "x_m", "y_m", "h_m", "name"])
    w.writeheader()
    for s in world.sites:
        w.writerow({"site": s.id, "kind": s.kind, "x_m": round(s.x_m, 1),
                    "y_m": round(s.y_m, 1), "h_m": round(s.h_m, 1),
                    "name": f"{s.kind} site {s.id}"})
    return buf.getvalue()


def stations_csv(world: Any) -> str:
    """The stations as the operator registered them at installation (confirmed)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["station", "kind", "name", "lat", "lon",
                                        "inlet_height_m", "status"])
    w.writeheader()
    for st in world.stations:
        w.writerow({"station": st.id, "kind": st.kind, "name": f"{st.kind} station {st.id}",
                    "lat": round(st.lat, 7), "lon": round(st.lon, 7),
                    "inlet_height_m": round(st.z_m, 1), "status": "confirmed"})
    return buf.getvalue()


def persons_csv(world: Any, webhook: str) -> str:
    """One responsible officer per registered site, reachable at the demo's receiver."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["site", "name", "role", "phone", "webhook"])
    w.writeheader()
    for i, s in enumerate(world.sites):
        w.writerow({"site": s.id, "name": f"officer-{s.id}", "role": "officer",
                    "phone": f"+86 371 5550 {i:04d}", "webhook": f"{webhook}/person/{s.id}"})
    return buf.getvalue()


def rules_toml(webhook: str) -> str:
    """The demo's rules: the site dust limit, located sources (with burst sampling and the
    site's spray system), station health; notifications to the centre's webhook and to the
    responsible persons, point to point."""
    return f'''# Written by 'airtrace demo'.
[labels]
grid_m = 1000

[[rule]]
name = "site-pm10-5min"
kind = "threshold"
quantity = "pm10"
period = "5min"
station_kinds = ["dust"]
for = 2
levels = {{ yellow = 300, orange = 500, red = 1000 }}
orders = ["spray"]

[[rule]]
name = "located-source"
kind = "inversion"
quantity = "pm10"
min_confidence = 0.3
levels = {{ yellow = 0.2, orange = 0.5, red = 5.0 }}
resolve_after = "3h"
orders = ["burst", "spray"]

[[rule]]
name = "station-health"
kind = "health"
statuses = ["offline", "stuck"]
level = "blue"

[route]
receiver = "centre"
group_by = ["alertname", "site", "cell"]
group_wait = "30s"
group_interval = "5m"
repeat_interval = "4h"

  [[route.routes]]
  matchers = ['site=~".+"']
  receiver = "site-officer"
  continue = true

  [[route.routes]]
  matchers = ['kind="inversion"']
  receiver = "gateway"
  continue = true

[[receiver]]
name = "centre"
type = "webhook"
url = "{webhook}/centre"
secret_file = "{PERSONS_SECRET_FILE}"
escalate_to = "log"

[[receiver]]
name = "site-officer"
type = "person"
to = "site_officer"
roles = ["officer"]
secret_file = "{PERSONS_SECRET_FILE}"
fallback = "centre"
escalate_to = "centre"

[[receiver]]
name = "assignee"
type = "person"
to = "assignee"
secret_file = "{PERSONS_SECRET_FILE}"
fallback = "centre"
escalate_to = "centre"

[[receiver]]
name = "gateway"
type = "downlink"

[[receiver]]
name = "log"
type = "log"

[events]
min_level = "yellow"
auto_file = true
auto_dispatch = true
notify = "assignee"

[orders]
burst_radius_m = 1000
burst_interval_s = 30
burst_duration_s = 3600
burst_min_level = "yellow"
spray_min_level = "orange"
spray_actuator = "spray"
spray_duration_s = 1800
ack_deadline_s = 600
'''


def cloud_toml(
    *,
    mqtt_url: str,
    embedded_broker: bool,
    db: Path,
    api_port: int,
    token: str,
    world: Any,
    window_hours: int,
) -> str:
    lat, lon = world.origin_lat_lon
    x0, y0, x1, y1 = world.domain
    protocol = ""
    if embedded_broker:
        protocol = '\nprotocol = "3.1.1"   # the embedded amqtt broker speaks MQTT 3.1.1'
    return f'''# Written by 'airtrace demo'.
[mqtt]
url = "{mqtt_url}"
client_id = "airtrace-demo-cloud"{protocol}

[store]
url = "sqlite:///{db.resolve()}"

[api]
listen = "127.0.0.1:{api_port}"
tokens = ["{token}"]

[domain]
origin_lat = {lat!r}
origin_lon = {lon!r}
cell_m = 100
extent = [{x0!r}, {y0!r}, {x1!r}, {y1!r}]

[fusion]
interval_s = 2

[inversion]
enabled = true
quantity = "pm10"
window_hours = {window_hours}
lag_s = 120
interval_s = 1

[alerts]
enabled = true
rules = "{RULES_FILE}"
interval_s = 1
'''


def write_scene(work: Path, world: Any, opts: DemoOptions, *, mqtt_url: str, embedded: bool,
                api_port: int, token: str, webhook: str, secret: bytes) -> Path:
    """Write cloud.toml (the API's centre ``token``), the rules, the webhooks' signing
    ``secret`` and the registry files; returns cloud.toml's path."""
    (work / PERSONS_SECRET_FILE).write_bytes(secret + b"\n")
    (work / RULES_FILE).write_text(rules_toml(webhook), encoding="utf-8")
    (work / "sites.csv").write_text(sites_csv(world), encoding="utf-8")
    (work / "stations.csv").write_text(stations_csv(world), encoding="utf-8")
    (work / "persons.csv").write_text(persons_csv(world, webhook), encoding="utf-8")
    path = work / "cloud.toml"
    path.write_text(cloud_toml(mqtt_url=mqtt_url, embedded_broker=embedded, db=work / "cloud.db",
                               api_port=api_port, token=token, world=world,
                               window_hours=opts.window_hours), encoding="utf-8")
    return path

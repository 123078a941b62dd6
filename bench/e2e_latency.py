#!/usr/bin/env python3
"""End-to-end latency: from a sensor read to the stored central row, and from a located
source to the gateway's acked order.

Everything real, started here, on a real (wall) clock: a Mosquitto on a free port, a
simulated Modbus TCP transmitter (``firmware_sim.ModbusDevice``, rs-pm-n01, in this
process), ``airtrace gateway run`` polling it every ``--interval`` s (a process of its own)
and the central service on SQLite.

(a) **read -> stored**: ``airtrace cloud run`` (a process of its own) ingests; this script
polls the central SQLite file every ~2 ms and notes when each reading becomes visible there.
Latency = visible time - the reading's ``ts`` (stamped by the gateway when it read the
device). Measured twice: with ``[uplink] batch_wait_s = 0`` (a reading leaves as soon as it
is in the outbox: the pipeline's own latency; the headline figure) and with the shipped
default (``batch_wait_s = 1.0``: a partial pack waits up to a second for company).
Also given: the ingest's receive stamp (``received``, taken just before the commit) - ts.
Baseline, same run, same broker: a bare paho publish -> subscribe round trip (QoS 1) of a
pack of the same size. ``ratio`` = figure / baseline (how many broker hops it costs).

(b) **located source -> acked order**: the central service runs in this process
(``cloud.service.Service``, ingest + alerts) with a rule file whose inversion rule orders
burst sampling; each trial hands the alerts a new hour's RESULT.json with one source 140 m
from the gateway (``Service.sources_found``, the hourly inversion's ``on_sources`` path).
The alert engine opens/joins an event, the order desk sends ``set_interval`` through the
``Commander``, the gateway acts and acks on ``up/ack``, ingest records the ack. Latency =
the ack visible in the ``commands`` table - the call. (Also: until the order on the event is
settled, which adds the alerts part's ``interval_s`` = 0.1 s polling.) Baseline, same run:
a bare paho client sending the same ``set_interval`` to the same gateway on ``down/cmd``
and receiving its ack on ``up/ack`` (no central service in the path).

    .venv/bin/python bench/e2e_latency.py [--seconds 20] [--interval 0.2] [--orders 40]
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import queue
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import paho.mqtt.client as mqtt  # noqa: E402
from _common import emit  # noqa: E402
from _gateway_bench import Mosquitto  # noqa: E402

from protocols import telemetry as tm  # noqa: E402

STATION = "BENCH-E2E"
ORIGIN = (34.80, 113.50)
SOURCE_XY = (100.0, 100.0)  # 141 m from the station, which sits on the origin

RULES = """
[[rule]]
name = "source"
kind = "inversion"
quantity = "pm10"
levels = { yellow = 0.2, orange = 0.5, red = 2.0 }
resolve_after = "3h"
orders = ["burst"]

[orders]
burst_radius_m = 1000
burst_interval_s = {interval}
burst_duration_s = 0.3
ack_deadline_s = 60

[route]
receiver = "log"

[[receiver]]
name = "log"
type = "log"
"""


def pct(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank on the sorted values), in the values' unit."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, round(p / 100.0 * (len(s) - 1))))
    return s[k]


def summary_ms(seconds: list[float]) -> dict[str, Any]:
    ms = [x * 1000.0 for x in seconds]
    return {
        "n": len(ms),
        "p50_ms": round(pct(ms, 50), 2),
        "p95_ms": round(pct(ms, 95), 2),
        "p99_ms": round(pct(ms, 99), 2),
        "max_ms": round(max(ms), 2) if ms else float("nan"),
    }


def spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "airtrace", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def wait(cond: Callable[[], Any], timeout: float, what: str, logs: list[Path] = ()) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > deadline:
            tails = "".join(
                f"\n--- {p.name}:\n" + "\n".join(p.read_text(errors="replace").splitlines()[-15:])
                for p in logs
                if p.exists()
            )
            raise SystemExit(f"e2e_latency: timed out waiting for {what}{tails}")
        time.sleep(0.01)


def station_toml(work: Path, mqtt_url: str, device: str, interval: float, wait_s: float) -> Path:
    path = work / f"station-{wait_s:g}.toml"
    path.write_text(f"""
[station]
id = "{STATION}"
kind = "micro"
lat = {ORIGIN[0]}
lon = {ORIGIN[1]}
inlet_height_m = 3.0

[uplink]
mqtt = "{mqtt_url}"
batch_wait_s = {wait_s}

[outbox]
path = "{work / "outbox.db"}"

[[sensor]]
name = "pm"
profile = "rs-pm-n01"
transport = "modbus-tcp"
address = "{device}"
unit_id = 1
interval_s = {interval}
""")
    return path


def cloud_toml(work: Path, mqtt_url: str, *, alerts: bool) -> Path:
    path = work / ("cloud-alerts.toml" if alerts else "cloud.toml")
    text = f"""
[mqtt]
url = "{mqtt_url}"
client_id = "bench-cloud"

[store]
url = "sqlite:///{work / "central.db"}"

[fusion]
enabled = false

[domain]
origin_lat = {ORIGIN[0]}
origin_lon = {ORIGIN[1]}
"""
    if alerts:
        text += '\n[alerts]\nenabled = true\nrules = "alerts.toml"\ninterval_s = 0.1\n'
    path.write_text(text)
    return path


class Watcher:
    """Polls the central SQLite file (its own read connection) for new readings of the
    station and notes when each became visible."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.conn: sqlite3.Connection | None = None
        self.last_id = 0
        self.seen: list[tuple[float, float, float]] = []  # (ts, received, visible)

    def _connect(self) -> sqlite3.Connection | None:
        if self.conn is None and self.db.exists():
            with contextlib.suppress(sqlite3.Error):
                conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=1.0)
                conn.execute("SELECT 1 FROM readings LIMIT 1")
                self.conn = conn
        return self.conn

    def poll(self) -> int:
        conn = self._connect()
        if conn is None:
            return 0
        try:
            rows = conn.execute(
                "SELECT id, ts, received FROM readings WHERE station = ? AND id > ? ORDER BY id",
                (STATION, self.last_id),
            ).fetchall()
        except sqlite3.Error:
            return 0
        now = time.time()
        for rid, ts, received in rows:
            self.seen.append((float(ts), float(received), now))
            self.last_id = max(self.last_id, int(rid))
        return len(rows)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


def measure_reads(watcher: Watcher, seconds: float, logs: list[Path]) -> dict[str, Any]:
    """Readings read in the next ``seconds``: read -> visible, read -> received."""
    start = time.time()
    end = start + seconds
    while time.time() < end + 0.5:
        watcher.poll()
        time.sleep(0.002)
    # what was read in the window and is still on its way
    wait(lambda: watcher.poll() or max((s[0] for s in watcher.seen), default=0) > end + 1.0,
         20.0, "the window's last readings", logs)  # fmt: skip
    rows = [s for s in watcher.seen if start <= s[0] <= end]
    if not rows:
        raise SystemExit("e2e_latency: no reading stored in the measuring window")
    visible = summary_ms([v - ts for ts, _, v in rows])
    received = summary_ms([r - ts for ts, r, _ in rows])
    return {"read_to_visible": visible, "read_to_received": received}


# -- baselines: bare paho --------------------------------------------------------------


def _client(mqtt_url: str, name: str) -> mqtt.Client:
    host, port = mqtt_url.removeprefix("mqtt://").split(":")
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{name}-{uuid.uuid4().hex[:6]}")
    c.connect(host, int(port))
    c.loop_start()
    return c


def _subscribe(c: mqtt.Client, topic: str) -> None:
    done = threading.Event()
    c.on_subscribe = lambda *a: done.set()
    c.subscribe(topic, qos=1)
    if not done.wait(10):
        raise SystemExit(f"e2e_latency: no SUBACK for {topic}")


def sample_pack() -> bytes:
    now = time.time()
    recs = tuple(
        tm.Record(i + 1, q, "ug/m3", now, v, v, cal=0, sensor="pm")
        for i, (q, v) in enumerate((("pm25", 35.0), ("pm10", 60.0), ("tsp", 90.0)))
    )
    return tm.encode_pack(tm.Pack(STATION, recs, epoch="benchepoch"))


def paho_roundtrip(mqtt_url: str, n: int) -> dict[str, Any]:
    """Publish (QoS 1) -> the subscriber's on_message, one message at a time."""
    topic = f"bench/{uuid.uuid4().hex[:8]}/rt"
    got: queue.Queue[float] = queue.Queue()
    sub = _client(mqtt_url, "bench-sub")
    sub.on_message = lambda *a: got.put(time.perf_counter())
    _subscribe(sub, topic)
    pub = _client(mqtt_url, "bench-pub")
    payload = sample_pack()
    lat = []
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            pub.publish(topic, payload, qos=1)
            lat.append(got.get(timeout=10) - t0)
            time.sleep(0.002)
    finally:
        for c in (sub, pub):
            c.disconnect()
            c.loop_stop()
    return {**summary_ms(lat), "payload_bytes": len(payload)}


def command_roundtrip(mqtt_url: str, n: int, interval: float) -> dict[str, Any]:
    """A bare client sends ``set_interval`` to the gateway and waits for its ack."""
    acks: queue.Queue[tuple[str, float]] = queue.Queue()
    c = _client(mqtt_url, "bench-cmd")

    def on_message(_c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with contextlib.suppress(Exception):
            acks.put((tm.decode_ack(msg.payload).id, time.perf_counter()))

    c.on_message = on_message
    _subscribe(c, tm.topic(STATION, tm.UP_ACK))
    lat = []
    try:
        for _ in range(n):
            cid = f"b-{uuid.uuid4().hex[:16]}"
            cmd = tm.Command(cid, "set_interval", {"interval_s": interval, "duration_s": 0.3},
                             ts=time.time(), expires=time.time() + 600)  # fmt: skip
            t0 = time.perf_counter()
            c.publish(tm.topic(STATION, tm.DOWN_CMD), tm.encode_command(cmd), qos=1)
            deadline = time.monotonic() + 20
            while True:
                got_id, t1 = acks.get(timeout=max(0.01, deadline - time.monotonic()))
                if got_id == cid:
                    break
            lat.append(t1 - t0)
            time.sleep(0.35)  # the same spacing as the trials
    finally:
        c.disconnect()
        c.loop_stop()
    return summary_ms(lat)


# -- (b) located source -> acked order -------------------------------------------------


def measure_orders(work: Path, mqtt_url: str, n: int, logs: list[Path]) -> dict[str, Any]:
    from cloud.config import load_config
    from cloud.events_store import EventsDb
    from cloud.service import Service

    logging.getLogger().setLevel(logging.WARNING)
    svc = Service(load_config(cloud_toml(work, mqtt_url, alerts=True)))
    svc.start()
    try:
        assert svc.ingest_part is not None
        if not svc.ingest_part.ingest.wait_connected(15):
            raise SystemExit("e2e_latency: the central service did not connect to the broker")

        def online() -> bool:  # as the alert engine's registry cache sees it
            st = svc.alerts_engine.places.station(STATION)
            return st is not None and st.state == "online" and st.lat is not None

        wait(online, 20, "the gateway's online status at the centre", logs)
        events = EventsDb(svc.store)
        acked, settled = [], []
        hour0 = (time.time() // 3600 - n - 2) * 3600
        x, y = SOURCE_XY
        for k in range(n):
            result = {
                "sources": [
                    {"x_m": x, "y_m": y, "rate_g_s": 1.0, "rate_sigma_g_s": 0.1, "confidence": 0.9}
                ],
                "background_ug_m3": 20.0,
                "residual_rms_ug_m3": 3.0,
            }
            t0 = time.time()
            svc.sources_found(hour0 + k * 3600, result)
            orders = [o for o in events.orders() if o.issued >= t0 and o.cmd == "set_interval"]
            if len(orders) != 1:
                trail = [(e.action, e.detail) for ev in events.events() for e in events.log(ev.id)]
                raise SystemExit(
                    f"e2e_latency: trial {k}: expected one order, got {orders}; trail {trail}"
                )
            cid = orders[0].command_id

            def ack_stored(cid: str = cid) -> float | None:
                rec = svc.store.get_command(cid)
                return time.time() if rec is not None and rec.status != "sent" else None

            t_ack = wait(ack_stored, 30, f"the ack of {cid}", logs)
            rec = svc.store.get_command(cid)
            if rec is None or rec.status != "ok":
                raise SystemExit(f"e2e_latency: {cid} was not acked ok: {rec}")

            def order_settled(cid: str = cid, eid: str = orders[0].event_id) -> float | None:
                done = [o for o in events.orders(eid) if o.command_id == cid and o.status == "ok"]
                return time.time() if done else None

            t_settled = wait(order_settled, 30, f"the order {cid} settled", logs)
            acked.append(t_ack - t0)
            settled.append(t_settled - t0)
            time.sleep(max(0.0, t0 + 0.35 - time.time()))  # past burst_duration_s
        return {"source_to_ack_stored": summary_ms(acked),
                "source_to_order_settled": summary_ms(settled)}  # fmt: skip
    finally:
        svc.stop()


# -- the run ----------------------------------------------------------------------------


@contextlib.contextmanager
def processes() -> Iterator[list[subprocess.Popen[bytes] | None]]:
    procs: list[subprocess.Popen[bytes] | None] = []
    try:
        yield procs
    finally:
        for p in reversed(procs):
            stop(p)


def figure(name: str, value: float, unit: str, bname: str, base: float, goal: str) -> dict:
    return {
        "name": name,
        "value": value,
        "unit": unit,
        "baseline": bname,
        "baseline_value": base,
        "ratio": round(value / base, 2) if base else None,
        "goal": goal,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="measuring window per config")
    ap.add_argument("--interval", type=float, default=0.2, help="gateway poll interval, s")
    ap.add_argument("--orders", type=int, default=40, help="source -> order trials")
    ap.add_argument("--roundtrips", type=int, default=300, help="baseline round trips")
    ap.add_argument("--keep", type=Path, default=None, help="keep the work folder (logs) here")
    args = ap.parse_args()

    from firmware_sim.modbus import ModbusDevice

    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    tmp = None
    if args.keep is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench-e2e-")
        work = Path(tmp.name)
    else:
        work = args.keep
        work.mkdir(parents=True, exist_ok=True)
        for old in work.glob("*.db*"):  # a fresh store and outbox every run
            old.unlink()
    (work / "alerts.toml").write_text(RULES.replace("{interval}", f"{args.interval:g}"))
    gw_log, cloud_log = work / "gateway.log", work / "cloud.log"
    logs = [gw_log, cloud_log]
    broker = Mosquitto(work)
    device = ModbusDevice(model="rs-pm-n01", transport="tcp").start()
    watcher = Watcher(work / "central.db")
    out: dict[str, Any] = {}
    try:
        with processes() as procs:
            base_pub = paho_roundtrip(broker.url, args.roundtrips)
            plain = cloud_toml(work, broker.url, alerts=False)
            centre = spawn(["cloud", "run", "--config", str(plain)], cloud_log)
            procs.append(centre)
            reads: dict[str, Any] = {}
            gw = None
            for wait_s, label in ((0.0, "batch_wait_0"), (1.0, "default_batch_wait_1s")):
                stop(gw)
                cfg = station_toml(work, broker.url, device.address, args.interval, wait_s)
                gw = spawn(["gateway", "run", "--config", str(cfg)], gw_log)
                procs.append(gw)
                n0 = watcher.last_id
                wait(lambda n0=n0: watcher.poll() >= 0 and watcher.last_id > n0 + 10, 60,
                     "the first readings at the centre", logs)  # fmt: skip
                time.sleep(1.0)  # settle
                reads[label] = measure_reads(watcher, args.seconds, logs)
                if wait_s == 0.0:
                    last_gw = cfg
            stop(gw)
            gw = spawn(["gateway", "run", "--config", str(last_gw)], gw_log)
            procs.append(gw)
            stop(centre)  # (b) runs the central service in this process
            base_cmd = command_roundtrip(broker.url, args.orders, args.interval)
            orders = measure_orders(work, broker.url, args.orders, logs)
        out = {"read_to_stored": reads, "baseline_paho_roundtrip": base_pub,
               "located_source_to_order": orders, "baseline_command_ack": base_cmd}  # fmt: skip
    finally:
        watcher.close()
        device.stop()
        broker.stop()
        if tmp is not None:
            tmp.cleanup()

    r0 = out["read_to_stored"]["batch_wait_0"]["read_to_visible"]
    rd = out["read_to_stored"]["default_batch_wait_1s"]["read_to_visible"]
    o = out["located_source_to_order"]["source_to_ack_stored"]
    figures = [
        figure("read_to_stored_p50", r0["p50_ms"], "ms", "paho publish->subscribe p50",
               base_pub["p50_ms"], "< 100 ms"),
        figure("read_to_stored_p95", r0["p95_ms"], "ms", "paho publish->subscribe p95",
               base_pub["p95_ms"], "< 250 ms"),
        figure("read_to_stored_p99", r0["p99_ms"], "ms", "paho publish->subscribe p99",
               base_pub["p99_ms"], "< 500 ms"),
        figure("read_to_stored_default_config_p95", rd["p95_ms"], "ms",
               "paho publish->subscribe p95", base_pub["p95_ms"], "< 1500 ms"),
        figure("source_to_acked_order_p50", o["p50_ms"], "ms", "bare set_interval->ack p50",
               base_cmd["p50_ms"], "< 500 ms"),
        figure("source_to_acked_order_p99", o["p99_ms"], "ms", "bare set_interval->ack p99",
               base_cmd["p99_ms"], "< 1000 ms"),
    ]  # fmt: skip
    emit("e2e_latency", {
        "results": figures,
        "config": {"interval_s": args.interval, "seconds": args.seconds, "orders": args.orders,
                   "roundtrips": args.roundtrips, "store": "sqlite", "broker": "mosquitto"},
        **out,
    })  # fmt: skip


if __name__ == "__main__":
    main()

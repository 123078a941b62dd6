"""Central ingest throughput and latency: Mosquitto -> cloud ingest -> SQLite / PostgreSQL.

Prints one JSON object. For each pack size and back end:

* ``readings_per_s``: readings stored per second while draining a backlog queued on the
  broker for the ingest's persistent session (decode, commit, acknowledge, watermark);
* ``baseline_raw_per_s``: readings per second a plain paho subscriber (auto-acknowledged
  QoS 1, no decoding, no storing) drains from the same broker, same packs, same run;
* ``ratio``: the two divided (goal >= 0.5) — and the goal of >= 100 k readings/s;
* ``baseline_json_loads_per_s``: ``json.loads`` alone over the same payloads, the floor
  of any Python consumer that must read the packs (and ``ratio_to_json_loads``);
* ``latency_ms``: reading -> committed at a steady offered load, p50/p99, measured as the
  store's receive stamp minus the reading's time (stamped when it was published; the stamp
  is taken just before the commit), and reading -> watermark seen by the publisher (an upper
  bound: it includes the watermark's batching interval);
* ``cpu_us_per_reading``: CPU time of this process (paho's thread, the decoder, the writer)
  per reading stored, and the same for the plain subscriber — less at the mercy of other
  jobs on a shared machine than the wall-clock rates.

Each figure is the median of ``--repeat`` drains (the samples are listed), the plain
subscriber and the ingest taking turns on the same broker, so a busy moment of a shared
machine hits both. ``machine`` carries the load average at the end of the run.

Run: ``.venv/bin/python bench/ingest.py [--readings 200000] [--pack 500 50] [--repeat 3]
[--backends sqlite postgres] [--pg postgresql://postgres@127.0.0.1/test]``.
PostgreSQL is skipped (and said so) where none answers.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import paho.mqtt.client as paho
from _common import Mosquitto, machine

from cloud.config import parse_config
from cloud.ingest import Ingest
from cloud.mqtt import MqttClient
from cloud.store import open_store
from protocols.telemetry import Pack, Record, encode_pack


def make_packs(
    n_readings: int, pack: int, stations: int, t0: float
) -> list[tuple[str, bytes, int]]:
    out = []
    per_station = n_readings // stations
    for s in range(stations):
        station = f"BENCH-{s:03d}"
        for start in range(1, per_station + 1, pack):
            ids = range(start, min(start + pack, per_station + 1))
            recs = tuple(
                Record(i, "pm25", "ug/m3", t0 + i, 10.0 + i % 17, raw=11.0, cal=1, sensor="pm")
                for i in ids
            )
            out.append((station, encode_pack(Pack(station, recs, epoch="bench")), len(recs)))
    return out


def publish_all(url: str, packs: list[tuple[str, bytes, int]]) -> None:
    port = int(url.rsplit(":", 1)[1])
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{uuid.uuid4().hex[:6]}")
    c.max_inflight_messages_set(1000)
    c.connect("127.0.0.1", port)
    c.loop_start()
    infos = [c.publish(f"airtrace/v1/{s}/up/telemetry", p, qos=1) for s, p, _ in packs]
    for info in infos:
        info.wait_for_publish(60)
    c.disconnect()
    c.loop_stop()


def raw_drain(url: str, packs: list[tuple[str, bytes, int]]) -> tuple[float, float]:
    """Readings/s a plain paho subscriber drains from its queued persistent session, and
    the CPU microseconds per reading it spent."""
    port = int(url.rsplit(":", 1)[1])
    cid = f"bench-raw-{uuid.uuid4().hex[:6]}"
    total = len(packs)
    got = 0
    first = last = 0.0
    done = threading.Event()

    def on_message(client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        nonlocal got, first, last
        if got == 0:
            first = time.perf_counter()
        got += 1
        if got == total:
            last = time.perf_counter()
            done.set()

    def client() -> paho.Client:
        c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=cid, protocol=paho.MQTTv5)
        c.on_message = on_message
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        props.ReceiveMaximum = 500
        c.connect("127.0.0.1", port, clean_start=False, properties=props)
        return c

    c = client()
    c.subscribe("airtrace/v1/+/up/#", qos=1)
    c.loop_start()
    time.sleep(0.5)
    c.disconnect()
    c.loop_stop()
    publish_all(url, packs)
    t_start = time.perf_counter()
    cpu0 = time.process_time()
    c = client()
    c.loop_start()
    done.wait(300)
    cpu = time.process_time() - cpu0
    c.disconnect()
    c.loop_stop()
    readings = sum(n for _, _, n in packs)
    rate = readings / (last - (first or t_start)) if last else float("nan")
    return rate, cpu / readings * 1e6


def json_only(packs: list[tuple[str, bytes, int]]) -> float:
    """Readings/s of ``json.loads`` alone over the same payloads: the floor of any Python
    consumer that has to read the packs (no broker, no validation, no store)."""
    t0 = time.perf_counter()
    for _, p, _ in packs:
        json.loads(p)
    return sum(n for _, _, n in packs) / (time.perf_counter() - t0)


def ingest_drain(url: str, store_url: str, packs: list[tuple[str, bytes, int]]) -> dict[str, Any]:
    """Readings/s the cloud ingest drains from its queued persistent session into a store."""
    cid = f"bench-cloud-{uuid.uuid4().hex[:6]}"
    cfg = parse_config(
        f'[mqtt]\nurl = "{url}"\nclient_id = "{cid}"\n[store]\nurl = "{store_url}"\n'
    )
    assert cfg.mqtt is not None
    # create the session and its subscription, then go away while the backlog queues
    probe = MqttClient(cfg.mqtt, on_message=lambda m: None, subscriptions=[(cfg.mqtt.up_filter, 1)])
    probe.start()
    probe.wait_connected(10)
    probe.stop()
    publish_all(url, packs)
    readings = sum(n for _, _, n in packs)
    store = open_store(store_url)
    ingest = Ingest(store, cfg.ingest, cfg.mqtt)
    ingest.start()
    while not ingest.client.connected:
        time.sleep(0.001)
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    while ingest.stats.readings < readings:
        time.sleep(0.005)
        if time.perf_counter() - t0 > 600:
            break
    took = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    stats = ingest.stats.as_dict()
    ingest.stop()
    store.close()
    return {
        "readings_per_s": readings / took,
        "seconds": round(took, 3),
        "batches": stats["batches"],
        "cpu_us_per_reading": round(cpu / readings * 1e6, 2),
    }


def latency(
    url: str, store_url: str, rate_packs: float, pack: int, seconds: float
) -> dict[str, Any]:
    """Reading -> committed and reading -> watermark at a steady offered load."""
    cid = f"bench-lat-{uuid.uuid4().hex[:6]}"
    cfg = parse_config(
        f'[mqtt]\nurl = "{url}"\nclient_id = "{cid}"\n[store]\nurl = "{store_url}"\n'
    )
    assert cfg.mqtt is not None
    store = open_store(store_url)
    ingest = Ingest(store, cfg.ingest, cfg.mqtt)
    ingest.start()
    ingest.wait_connected(10)
    port = int(url.rsplit(":", 1)[1])
    station = f"LAT-{uuid.uuid4().hex[:6]}"
    seen: dict[int, float] = {}
    sent_at: dict[int, float] = {}

    def on_message(client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        upto = json.loads(msg.payload)["upto"]
        seen.setdefault(upto, time.time())

    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"{cid}-pub")
    c.on_message = on_message
    c.connect("127.0.0.1", port)
    c.subscribe(f"airtrace/v1/{station}/down/stored", qos=1)
    c.loop_start()
    time.sleep(0.3)
    next_id, n_packs = 1, int(rate_packs * seconds)
    start = time.time()
    for k in range(n_packs):
        due = start + k / rate_packs
        time.sleep(max(0.0, due - time.time()))
        now = time.time()
        recs = tuple(
            Record(i, "pm25", "ug/m3", now, 12.0, cal=1) for i in range(next_id, next_id + pack)
        )
        c.publish(
            f"airtrace/v1/{station}/up/telemetry",
            encode_pack(Pack(station, recs, epoch="lat")),
            qos=1,
        )
        sent_at[next_id + pack - 1] = now
        next_id += pack
    last = next_id - 1
    deadline = time.time() + 30
    while max(seen, default=0) < last and time.time() < deadline:
        time.sleep(0.02)
    c.disconnect()
    c.loop_stop()
    ingest.stop()
    commit = [(r.received - r.ts) * 1000 for r in store.iter_readings(station=station)]
    store.close()
    marks = sorted(seen.items())
    to_mark = []
    for upto_id, at in sent_at.items():
        t = next((t for u, t in marks if u >= upto_id), None)
        if t is not None:
            to_mark.append((t - at) * 1000)

    def pct(xs: list[float], q: float) -> float:
        return round(statistics.quantiles(xs, n=100)[q - 1], 2) if len(xs) > 2 else float("nan")

    return {
        "offered_readings_per_s": rate_packs * pack,
        "reading_to_commit_ms": {"p50": pct(commit, 50), "p99": pct(commit, 99), "n": len(commit)},
        "reading_to_watermark_ms": {
            "p50": pct(to_mark, 50),
            "p99": pct(to_mark, 99),
            "n": len(to_mark),
        },
    }


def pg_available(url: str) -> bool:
    try:
        import psycopg

        psycopg.connect(url, connect_timeout=3).close()
        return True
    except Exception:
        return False


def fresh_pg(admin: str) -> tuple[str, str]:
    import psycopg

    name = f"airtrace_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return admin.rsplit("/", 1)[0] + "/" + name, name


def drop_pg(admin: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def _pg_version(url: str) -> str | None:
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=3) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            return None if row is None else str(row[0])
    except Exception:
        return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--readings", type=int, default=200_000)
    ap.add_argument("--pack", type=int, nargs="+", default=[500, 50])
    ap.add_argument("--stations", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=3, help="drains per figure (the median)")
    ap.add_argument("--backends", nargs="+", default=["sqlite", "postgres"])
    ap.add_argument(
        "--pg",
        default=os.environ.get("AIRTRACE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    ap.add_argument("--latency-seconds", type=float, default=5.0)
    args = ap.parse_args()
    if shutil.which("mosquitto") is None:
        sys.exit("bench/ingest.py needs mosquitto on PATH")
    work = Path(tempfile.mkdtemp(prefix="airtrace-bench-"))
    broker = Mosquitto(work, max_queued=10_000_000, max_inflight=0)
    pg_ok = "postgres" in args.backends and pg_available(args.pg)
    runs: list[dict[str, Any]] = []
    try:
        for pack in args.pack:
            packs = make_packs(args.readings, pack, args.stations, time.time() - 86400)
            readings = sum(n for *_, n in packs)
            parse_only = json_only(packs)
            raw: list[tuple[float, float]] = []
            got: dict[str, list[dict[str, Any]]] = {b: [] for b in args.backends}
            for _ in range(args.repeat):
                raw.append(raw_drain(broker.url, packs))
                for backend in args.backends:
                    if backend == "postgres" and not pg_ok:
                        continue
                    if backend == "postgres":
                        store_url, name = fresh_pg(args.pg)
                    else:
                        store_url, name = f"sqlite:///{work}/{uuid.uuid4().hex[:6]}.db", ""
                    try:
                        got[backend].append(ingest_drain(broker.url, store_url, packs))
                    finally:
                        if name:
                            drop_pg(args.pg, name)
            raw_rate = _median([r for r, _ in raw])
            for backend in args.backends:
                run: dict[str, Any] = {
                    "pack_readings": pack,
                    "backend": backend,
                    "readings": readings,
                }
                if not got[backend]:
                    run["skipped"] = f"no PostgreSQL at {args.pg}"
                    runs.append(run)
                    continue
                rate = _median([g["readings_per_s"] for g in got[backend]])
                run.update(
                    {
                        "readings_per_s": round(rate),
                        "samples_per_s": [round(g["readings_per_s"]) for g in got[backend]],
                        "baseline_raw_per_s": round(raw_rate),
                        "baseline_raw_samples_per_s": [round(r) for r, _ in raw],
                        "ratio": round(rate / raw_rate, 3),
                        "baseline_json_loads_per_s": round(parse_only),
                        "ratio_to_json_loads": round(rate / parse_only, 3),
                        "cpu_us_per_reading": _median(
                            [g["cpu_us_per_reading"] for g in got[backend]]
                        ),
                        "baseline_raw_cpu_us_per_reading": round(_median([c for _, c in raw]), 2),
                        "batches": got[backend][-1]["batches"],
                    }
                )
                run["meets_goal"] = run["ratio"] >= 0.5 and run["readings_per_s"] >= 100_000
                if pack == args.pack[0]:
                    if backend == "postgres":
                        store_url, name = fresh_pg(args.pg)
                    else:
                        store_url, name = f"sqlite:///{work}/{uuid.uuid4().hex[:6]}.db", ""
                    try:
                        run["latency"] = latency(
                            broker.url, store_url, 20.0, 100, args.latency_seconds
                        )
                    finally:
                        if name:
                            drop_pg(args.pg, name)
                runs.append(run)
                print(json.dumps(run), file=sys.stderr)
    finally:
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)
    info = machine()
    info["mosquitto"] = subprocess.run(
        ["mosquitto", "-h"], capture_output=True, text=True, check=False
    ).stdout.splitlines()[0]
    if pg_ok:
        info["postgresql"] = _pg_version(args.pg)
    doc = {
        "bench": "ingest",
        "goal": {"ratio_to_raw": 0.5, "readings_per_s": 100_000},
        "runs": runs,
        "machine": info,
    }
    print(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()

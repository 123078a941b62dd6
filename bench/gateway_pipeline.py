#!/usr/bin/env python3
"""Gateway pipeline throughput on one core, against raw SQLite inserts in the same run.

Measured: driver output (``Sample`` batches as the poller delivers them) -> calibration
(linear sets on two quantities) -> QC -> outbox (SQLite WAL, one transaction per batch) ->
SenML packs published QoS 1 to a real Mosquitto this script starts on a free port, until
the broker has acknowledged every pack. The process is pinned to one CPU (paho's network
thread shares it). Baseline: the same rows ``executemany``-inserted into a fresh SQLite
file with the same schema, journal mode, synchronous setting and transaction size.
Goal: pipeline >= 25 % of the baseline's rows per second.

    .venv/bin/python bench/gateway_pipeline.py [--readings 200000] [--batch 500]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import queue
import sqlite3
import tempfile
import time
from pathlib import Path

from _gateway_bench import Mosquitto, emit, station_toml

from gateway import config as gwconfig
from gateway.calibration import Calibrator, CalSet, calibration_path
from gateway.calstore import CalibrationStore
from gateway.clock import SystemClock
from gateway.model import Sample
from gateway.mqtt import Connected, MqttLink
from gateway.outbox import Outbox
from gateway.qc import QualityControl
from gateway.uplink import Uplink, mqtt_settings

QUANTITIES = (
    ("pm25", "ug/m3"),
    ("pm10", "ug/m3"),
    ("no2", "ug/m3"),
    ("temp", "Cel"),
    ("rh", "%RH"),
)
GOAL = 0.25


def make_samples(n: int) -> list[Sample]:
    t0 = time.time() - n * 0.02
    out = []
    for i in range(n):
        q, unit = QUANTITIES[i % len(QUANTITIES)]
        out.append(Sample(f"s{i // 5 % 10}", q, unit, 10.0 + (i % 97) * 0.5, t0 + i * 0.02))
    return out


def pipeline(cfg: gwconfig.StationConfig, samples: list[Sample], batch: int) -> tuple[float, float]:
    events: queue.Queue[object] = queue.Queue()
    box = Outbox(cfg.outbox.path, synchronous=cfg.outbox.synchronous)
    store = CalibrationStore(calibration_path(cfg.outbox), cfg.station.id)
    for q in ("pm25", "pm10"):
        for s in range(10):
            store.add(CalSet(f"s{s}", q, slope=0.8, offset=1.5), now=0.0)
    cal = Calibrator(cfg.station.id, store)
    qc = QualityControl(cfg)
    link = MqttLink(mqtt_settings(cfg, "bench"), events.put)
    up = Uplink(cfg, box, link, clock=SystemClock(), version="bench")
    link.start()
    while not isinstance(ev := events.get(timeout=10), Connected):
        up.handle(ev)
    up.handle(ev)
    time.sleep(2.2)  # past the uplink's wait for a retained watermark (none comes here)

    def drain() -> None:
        while True:
            try:
                up.handle(events.get_nowait())
            except queue.Empty:
                return

    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(0, len(samples), batch):
        box.add(qc.check_many(cal.apply_many(samples[i : i + batch])))
        drain()
        up.pump()
    while box.cursor < box.next_id or up.inflight:
        with contextlib.suppress(queue.Empty):
            up.handle(events.get(timeout=1.0))
        drain()
        up.pump()
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    link.stop()
    box.close()
    store.close()
    return elapsed, cpu


def baseline(
    path: Path, samples: list[Sample], batch: int, synchronous: str
) -> tuple[float, float]:
    rows = [
        (i + 1, s.ts, s.sensor, s.quantity, s.unit, s.raw, s.raw, "N", None, 0)
        for i, s in enumerate(samples)
    ]
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
    conn.execute(
        "CREATE TABLE reading (id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL,"
        " sensor TEXT, quantity TEXT NOT NULL, unit TEXT NOT NULL, raw REAL, value REAL,"
        " flag TEXT NOT NULL, why TEXT, cal INTEGER NOT NULL)"
    )
    conn.commit()
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(0, len(rows), batch):
        with conn:
            conn.executemany(
                "INSERT INTO reading VALUES (?,?,?,?,?,?,?,?,?,?)", rows[i : i + batch]
            )
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    conn.close()
    return elapsed, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--readings", type=int, default=200_000, help="readings to push through")
    ap.add_argument("--batch", type=int, default=500, help="samples per poll batch and pack")
    ap.add_argument("--cpu", type=int, default=0, help="the CPU to pin this process to")
    ap.add_argument("--repeat", type=int, default=3, help="paired runs (baseline, pipeline)")
    ap.add_argument("--synchronous", choices=("normal", "full"), default="normal")
    args = ap.parse_args()
    samples = make_samples(args.readings)
    runs = []
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    with tempfile.TemporaryDirectory(prefix="airtrace-bench-") as tmp:
        broker = Mosquitto(Path(tmp))
        others = set(range(os.cpu_count() or 1)) - {args.cpu}
        if others and hasattr(
            os, "sched_setaffinity"
        ):  # the broker is not the gateway: keep it off the measured core
            os.sched_setaffinity(broker.proc.pid, others)
        try:
            for k in range(args.repeat):
                work = Path(tmp) / f"run{k}"
                work.mkdir()
                path = station_toml(
                    work,
                    broker.url,
                    uplink=f"batch_max = {args.batch}\nbatch_wait_s = 0.01\nmax_inflight = 20",
                    outbox=f'synchronous = "{args.synchronous}"',
                )
                cfg = gwconfig.load(path)
                base_s, base_cpu = baseline(
                    work / "baseline.db", samples, args.batch, args.synchronous
                )
                pipe_s, pipe_cpu = pipeline(cfg, samples, args.batch)
                n = args.readings
                runs.append(
                    {
                        "pipeline_readings_per_s": round(n / pipe_s),
                        "baseline_rows_per_s": round(n / base_s),
                        "ratio": round(base_s / pipe_s, 3),
                        "pipeline_readings_per_cpu_s": round(n / pipe_cpu),
                        "baseline_rows_per_cpu_s": round(n / base_cpu),
                        "cpu_ratio": round(base_cpu / pipe_cpu, 3),
                    }
                )
        finally:
            broker.stop()

    def median(key: str) -> dict[str, float]:
        return sorted(runs, key=lambda r: r[key])[len(runs) // 2]

    wall, cpu = median("ratio"), median("cpu_ratio")
    emit(
        {
            "bench": "gateway_pipeline",
            "readings": args.readings,
            "batch": args.batch,
            "synchronous": args.synchronous,
            "pipeline_readings_per_s": wall["pipeline_readings_per_s"],
            "baseline": "executemany into SQLite (WAL), same rows, schema and transactions",
            "baseline_rows_per_s": wall["baseline_rows_per_s"],
            "ratio": wall["ratio"],
            "pipeline_readings_per_cpu_s": cpu["pipeline_readings_per_cpu_s"],
            "baseline_rows_per_cpu_s": cpu["baseline_rows_per_cpu_s"],
            "cpu_ratio": cpu["cpu_ratio"],
            "ratio_is": "median of paired runs (baseline then pipeline, same process, same CPU); "
            "ratio from wall-clock time, cpu_ratio from this process's CPU time (user + system, "
            "paho's thread included; the broker's CPU not)",
            "runs": runs,
            "goal_ratio": GOAL,
            "meets_goal": wall["ratio"] >= GOAL,
            "meets_goal_cpu": cpu["cpu_ratio"] >= GOAL,
            "pinned_cpu": args.cpu,
            "load_average": os.getloadavg(),
        }
    )


if __name__ == "__main__":
    main()

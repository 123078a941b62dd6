#!/usr/bin/env python3
"""Drain a 24 h backlog of a 50-channel station into Mosquitto, and the gateway's memory.

Set-up (all real, all started here): a Mosquitto on a free port; simulated Modbus devices
(pymodbus, a process of their own) that the gateway keeps polling every second while it
drains; an outbox pre-filled with ``--readings`` readings (default 4,320,000: 50 channels
at 1 Hz for 24 h); the custody responder (tests/gateway/custody_responder.py, a stand-in
for the central service until it is on main) confirming what it receives. Then
``airtrace gateway run`` starts and the clock runs until the centre's watermark covers the
whole backlog. After that the gateway keeps polling for ``--steady-s`` seconds and its
resident memory is sampled ("steady state while polling").

Baseline, same run: a bare paho client publishing as many packs of the same size (one
pre-encoded pack, re-sent), QoS 1, the same in-flight window, to the same broker and
responder; ``ratio`` = baseline time / drain time (1.0 = as fast as the broker path alone).
Goals: drain < 180 s; steady RSS < 60 MB.

    .venv/bin/python bench/backlog_drain.py --readings 200000   # a quick run
"""

from __future__ import annotations

import argparse
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
from _gateway_bench import ROOT, Mosquitto, emit, station_toml

from gateway.batch import Batch
from gateway.model import Reading
from gateway.outbox import Outbox
from tests.gateway.custody_responder import CustodyResponder

GOAL_DRAIN_S = 180.0
GOAL_RSS_MB = 60.0
CHANNELS = (("pm25", "ug/m3"), ("pm10", "ug/m3"), ("no2", "ug/m3"), ("temp", "Cel"), ("rh", "%RH"))
DEVICES = (
    ("met", "rs-ws-n01", 1),
    ("dust1", "rs-pm-n01", 3),
    ("dust2", "rs-pm-n01", 4),
    ("wind", "rs-fs-n01", 5),
    ("noise", "rs-zs-n01", 6),
)


def serve_devices() -> None:
    """Child mode: the simulated devices on one Modbus TCP endpoint; prints the port."""
    from tests.gateway.modbus_sim import ModbusSim, Unit

    with ModbusSim() as sim:
        port = sim.tcp(
            {
                1: Unit(holding={0: [658, 215]}),
                3: Unit(holding={0: [35, 80, 120]}),
                4: Unit(holding={0: [41, 95, 150]}),
                5: Unit(holding={0: [34]}),
                6: Unit(holding={0: [552]}),
            }
        )
        print(port, flush=True)
        sys.stdin.read()  # until the parent goes


def fill(path: Path, n: int) -> tuple[str, float]:
    t0 = time.perf_counter()
    start = time.time() - 86_400
    per_s = max(1, n // 86_400)
    with Outbox(path) as box:
        chunk: list[Reading] = []
        for i in range(n):
            q, unit = CHANNELS[i % 5]
            chunk.append(
                Reading(
                    "BENCH-001",
                    f"s{i // 5 % 10}",
                    q,
                    unit,
                    start + i // per_s,
                    10.0 + i % 89,
                    11.0 + i % 89,
                )
            )
            if len(chunk) == 20_000:
                box.add(chunk)
                chunk = []
        box.add(chunk)
        epoch = box.epoch
    return epoch, time.perf_counter() - t0


def sample_rss(pid: int, stop: threading.Event, out: list[tuple[float, float]]) -> None:
    proc = psutil.Process(pid)
    while not stop.is_set():
        try:
            out.append((time.monotonic(), proc.memory_info().rss / 1e6))
        except psutil.Error:
            return
        stop.wait(0.25)


def baseline(broker: Mosquitto, packs: int, inflight: int, batch: int) -> float:
    """Bare paho: as many packs of the same size, QoS 1, the same in-flight window."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    rows = tuple(
        (
            i + 1,
            1.78e9 + i,
            f"s{i % 10}",
            CHANNELS[i % 5][0],
            CHANNELS[i % 5][1],
            10.0 + i % 89,
            11.0 + i % 89,
            "N",
            None,
            0,
        )
        for i in range(batch)
    )
    payload = Batch("baseline", 1, batch, rows).encode("BASE-001")
    acks: queue.Queue[int] = queue.Queue()
    c = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="bench-base")
    c.max_inflight_messages_set(inflight)
    c.on_publish = lambda *_a: acks.put(1)
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    t0 = time.perf_counter()
    sent = done = 0
    while done < packs:
        while sent < packs and sent - done < inflight:
            c.publish("airtrace/v1/BASE-001/up/telemetry", payload, qos=1)
            sent += 1
        acks.get()
        done += 1
    elapsed = time.perf_counter() - t0
    c.disconnect()
    c.loop_stop()
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--readings", type=int, default=4_320_000, help="backlog size")
    ap.add_argument("--steady-s", type=float, default=20.0, help="seconds of polling after")
    ap.add_argument("--batch", type=int, default=500, help="[uplink] batch_max")
    ap.add_argument("--inflight", type=int, default=20, help="[uplink] max_inflight")
    ap.add_argument("--timeout-s", type=float, default=900.0, help="give up after this")
    ap.add_argument("--log", type=Path, default=None, help="keep the gateway's log here")
    args = ap.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory(prefix="airtrace-drain-") as tmp:
        work = Path(tmp)
        broker = Mosquitto(work)
        devices = subprocess.Popen(
            [sys.executable, __file__, "--serve-devices"],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        responder = None
        gw = None
        try:
            port = int(devices.stdout.readline())  # type: ignore[union-attr]
            sensors = "".join(
                f'\n[[sensor]]\nname = "{name}"\nprofile = "{profile}"\n'
                f'transport = "modbus-tcp"\naddress = "127.0.0.1:{port}"\nunit_id = {unit}\n'
                "interval_s = 1\ntimeout_s = 0.5\nretries = 0\n"
                for name, profile, unit in DEVICES
            )
            cfg_path = station_toml(
                work,
                broker.url,
                sensors=sensors,
                uplink=f"batch_max = {args.batch}\nmax_inflight = {args.inflight}",
            )
            epoch, fill_s = fill(work / "outbox.db", args.readings)
            responder = CustodyResponder("127.0.0.1", broker.port, light=True).start()
            packs = -(-args.readings // args.batch)
            base_s = baseline(broker, packs, args.inflight, args.batch)

            log_path = args.log or work / "gw.log"
            rss: list[tuple[float, float]] = []
            stop = threading.Event()
            t0 = time.monotonic()
            gw = subprocess.Popen(
                [sys.executable, "-m", "airtrace", "gateway", "run", "--config", str(cfg_path)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=open(log_path, "wb"),  # noqa: SIM115
            )
            sampler = threading.Thread(target=sample_rss, args=(gw.pid, stop, rss), daemon=True)
            sampler.start()
            stream = responder.stream("BENCH-001", epoch)
            while stream.upto < args.readings:
                if time.monotonic() - t0 > args.timeout_s or gw.poll() is not None:
                    raise SystemExit(f"drain did not finish: watermark {stream.upto}")
                time.sleep(0.05)
            drain_s = time.monotonic() - t0
            cpu = psutil.Process(gw.pid).cpu_times()
            drain_cpu_s = cpu.user + cpu.system
            t_steady = time.monotonic()
            time.sleep(args.steady_s)
            gw.send_signal(signal.SIGTERM)
            code = gw.wait(30)
            stop.set()
            sampler.join()
        finally:
            if gw is not None and gw.poll() is None:
                gw.kill()
            if responder is not None:
                responder.stop()
            devices.stdin.close()  # type: ignore[union-attr]
            devices.wait(10)
            broker.stop()
    peak = max(m for _, m in rss)
    steady = [m for t, m in rss if t >= t_steady + 2.0]
    emit(
        {
            "bench": "backlog_drain",
            "readings": args.readings,
            "fill_s": round(fill_s, 1),
            "drain_s": round(drain_s, 2),
            "drain_readings_per_s": round(args.readings / drain_s),
            "gateway_cpu_s_during_drain": round(drain_cpu_s, 2),
            "goal_drain_s": GOAL_DRAIN_S,
            "meets_drain_goal": drain_s < GOAL_DRAIN_S,
            "baseline": "bare paho QoS 1, same pack count and size, same in-flight window",
            "baseline_s": round(base_s, 2),
            "ratio": round(base_s / drain_s, 3),
            "peak_rss_mb": round(peak, 1),
            "steady_rss_mb": round(max(steady), 1) if steady else None,
            "steady_rss_mean_mb": round(sum(steady) / len(steady), 1) if steady else None,
            "goal_steady_rss_mb": GOAL_RSS_MB,
            "meets_rss_goal": bool(steady) and max(steady) < GOAL_RSS_MB,
            "resent_readings_seen_by_centre": stream.duplicates,
            "gateway_exit": code,
            "batch_max": args.batch,
            "max_inflight": args.inflight,
            "load_average": os.getloadavg(),
        }
    )


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve-devices"]:
        serve_devices()
    else:
        main()

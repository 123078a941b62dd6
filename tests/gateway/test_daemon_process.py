"""``airtrace gateway run`` as a process, polling real Modbus servers: kill -9 at any moment
loses nothing and duplicates nothing at the (fake) central store; SIGTERM stops it
cleanly with exit 0 and an offline status."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.outbox import inspect
from gateway.runtime import state_path
from protocols import telemetry as tm

ROOT = Path(__file__).resolve().parents[2]
STATION = "GX-T-001"


def start(cfg) -> subprocess.Popen:
    log = open(cfg.path.with_name("gateway.log"), "ab")  # noqa: SIM115 - the child writes it
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "airtrace", "gateway", "run", "--config", str(cfg.path)],
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    finally:
        log.close()


def wait(cond, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.mark.slow
def test_kill_9_while_publishing_loses_nothing_and_duplicates_nothing(
    make_config, broker, custody, watcher, devices
) -> None:
    cfg = make_config(
        mqtt=broker.url, uplink="batch_max = 40", sensors=devices.sensors(interval_s=0.05)
    )
    status = watcher(tm.topic(STATION, tm.UP_STATUS))
    rng = random.Random(4)
    epoch = None
    for round_ in range(4):
        proc = start(cfg)
        try:
            wait(lambda: cfg.outbox.path.exists() and len(custody.deliveries) > 0)
            epoch = epoch or inspect(cfg.outbox.path).epoch
            seen = custody.received
            wait(lambda s=seen: custody.received > s + 100)  # it is publishing right now
            time.sleep(rng.uniform(0, 0.3))
        finally:
            proc.kill()  # SIGKILL: no goodbye, no flush
            proc.wait()
        # the broker tells everyone the gateway is gone (its last will)
        status.wait(
            lambda k=round_: (
                sum(tm.decode_status(e.payload).state == "offline" for e in status.got) > k
            )
        )
    assert inspect(cfg.outbox.path).epoch == epoch  # the same outbox file all along
    # a last run that polls once a day (once now) drains the rest, then stops on SIGTERM
    n = inspect(cfg.outbox.path).next_id - 1
    cfg = make_config(
        mqtt=broker.url, uplink="batch_max = 40", sensors=devices.sensors(interval_s=86400)
    )
    online = len(status.got)
    proc = start(cfg)
    status.wait(lambda: len(status.got) > online)  # up, its signal handlers in place
    wait(lambda: custody.stream(STATION, epoch).upto >= n + 5)  # + the poll at start
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    n += 5
    assert inspect(cfg.outbox.path).next_id - 1 == n
    stream = custody.stream(STATION, epoch)
    assert stream.upto == n and set(stream.kept) == set(range(1, n + 1))
    assert custody.conflicts == []  # a resent id always carried the same reading
    assert {k[1] for k in custody.deliveries} == {epoch}
    assert inspect(cfg.outbox.path).depth == 0


def test_sigterm_stops_cleanly(make_config, broker, watcher, devices) -> None:
    cfg = make_config(mqtt=broker.url, sensors=devices.sensors())
    status = watcher(tm.topic(STATION, tm.UP_STATUS))
    proc = start(cfg)
    status.wait(lambda: any(tm.decode_status(e.payload).state == "online" for e in status.got))
    wait(lambda: state_path(cfg).exists() and inspect(cfg.outbox.path).next_id > 1)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    err = cfg.path.with_name("gateway.log").read_text()
    assert "Traceback" not in err and "stopped" in err
    status.wait(lambda: tm.decode_status(status.got[-1].payload).state == "offline")
    state = json.loads(state_path(cfg).read_text())
    assert state["state"] == "stopped" and state["pid"] == proc.pid


def test_one_process_runs_several_stations_and_stops_them_all(
    tmp_path: Path, broker, watcher, devices
) -> None:
    """``gateway run --config A --config B``: each station its own outbox, session and
    status; SIGTERM stops both cleanly. A station given twice is refused before any starts."""
    from tests.gateway.conftest import station_toml

    ids = ("GX-T-101", "GX-T-102")
    paths = []
    for sid in ids:
        d = tmp_path / sid
        d.mkdir()
        text = station_toml(d, mqtt=broker.url, sensors=devices.sensors()).replace(STATION, sid)
        (d / "station.toml").write_text(text)
        paths.append(d / "station.toml")
    status = watcher(*(tm.topic(sid, tm.UP_STATUS) for sid in ids))
    args = [sys.executable, "-m", "airtrace", "gateway", "run"]
    twice = subprocess.run([*args, "-c", str(paths[0]), "-c", str(paths[0])], env={
        **os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=60,
        check=False)
    assert twice.returncode == 2 and "given twice" in twice.stderr
    log = open(tmp_path / "gateway.log", "ab")  # noqa: SIM115 - the child writes it
    proc = subprocess.Popen([*args, "-c", str(paths[0]), "-c", str(paths[1])],
                            env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.DEVNULL, stderr=log)
    log.close()
    try:
        def online() -> set[str]:
            return {e.topic.split("/")[2] for e in status.got
                    if tm.decode_status(e.payload).state == "online"}

        status.wait(lambda: online() == set(ids))
        wait(lambda: all(inspect(p.parent / "outbox.db").next_id > 3 for p in paths))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    err = (tmp_path / "gateway.log").read_text()
    assert "Traceback" not in err
    assert all(f"gateway {sid} stopped" in err for sid in ids)
    epochs = {inspect(p.parent / "outbox.db").epoch for p in paths}
    assert len(epochs) == 2  # two outboxes, two epochs

"""The daemon as a process: kill -9 at any moment loses nothing and duplicates nothing at
the (fake) central store; SIGTERM stops it cleanly with exit 0 and an offline status."""

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

from gateway.daemon import state_path
from gateway.outbox import inspect
from protocols import telemetry as tm

ROOT = Path(__file__).resolve().parents[2]
RUNNER = Path(__file__).resolve().parent / "synthetic_gateway.py"
STATION = "GX-T-001"


def start(cfg, period: float) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(RUNNER), str(cfg.path), str(period)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def wait(cond, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.mark.slow
def test_kill_9_while_publishing_loses_nothing_and_duplicates_nothing(
    make_config, broker, custody, watcher
) -> None:
    cfg = make_config(mqtt=broker.url, uplink="batch_max = 40")
    status = watcher(tm.topic(STATION, tm.UP_STATUS))
    rng = random.Random(4)
    epoch = None
    for round_ in range(4):
        proc = start(cfg, period=0.005)
        try:
            wait(lambda: cfg.outbox.path.exists() and len(custody.deliveries) > 0)
            epoch = epoch or inspect(cfg.outbox.path).epoch
            seen = custody.received
            wait(lambda s=seen: custody.received > s + 200)  # it is publishing right now
            time.sleep(rng.uniform(0, 0.3))
        finally:
            proc.kill()  # SIGKILL: no goodbye, no flush
            proc.wait()
            proc.stderr.close()
        # the broker tells everyone the gateway is gone (its last will)
        status.wait(
            lambda k=round_: (
                sum(tm.decode_status(e.payload).state == "offline" for e in status.got) > k
            )
        )
    assert inspect(cfg.outbox.path).epoch == epoch  # the same outbox file all along
    # a last run that reads nothing new drains the rest, then stops on SIGTERM
    n = inspect(cfg.outbox.path).next_id - 1
    online = len(status.got)
    proc = start(cfg, period=3600)
    status.wait(lambda: len(status.got) > online)  # up, its signal handlers in place
    wait(lambda: custody.stream(STATION, epoch).upto >= n)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    proc.stderr.close()
    stream = custody.stream(STATION, epoch)
    assert stream.upto == n and set(stream.kept) == set(range(1, n + 1))
    assert custody.conflicts == []  # a resent id always carried the same reading
    assert {k[1] for k in custody.deliveries} == {epoch}
    assert inspect(cfg.outbox.path).depth == 0


def test_sigterm_stops_cleanly(make_config, broker, watcher) -> None:
    cfg = make_config(mqtt=broker.url)
    status = watcher(tm.topic(STATION, tm.UP_STATUS))
    proc = start(cfg, period=0.05)
    status.wait(lambda: any(tm.decode_status(e.payload).state == "online" for e in status.got))
    wait(lambda: state_path(cfg).exists() and inspect(cfg.outbox.path).next_id > 1)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert "Traceback" not in err and "stopped" in err
    status.wait(lambda: tm.decode_status(status.got[-1].payload).state == "offline")
    state = json.loads(state_path(cfg).read_text())
    assert state["state"] == "stopped" and state["pid"] == proc.pid

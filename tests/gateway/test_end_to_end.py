"""The gateway's promise against the real central service: ``airtrace gateway run`` polling
real Modbus servers, ``airtrace cloud run`` storing into SQLite, a real Mosquitto between
them; the gateway and the centre are each killed with SIGKILL while readings flow, and
at the end the central store holds every reading exactly once (``cloud export``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.outbox import inspect
from protocols import telemetry as tm
from protocols.timefmt import parse_iso
from tests.conftest import ROOT

STATION = "GX-T-001"


def spawn(args: list[str], log: Path) -> subprocess.Popen:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "airtrace", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )


def wait(cond, timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.slow
def test_kill_9_of_gateway_and_centre_the_store_holds_each_reading_once(
    make_config, broker, devices, watcher, tmp_path: Path, cli
) -> None:
    cloud_cfg = tmp_path / "cloud.toml"
    cloud_cfg.write_text(
        f'[mqtt]\nurl = "{broker.url}"\nclient_id = "cloud-e2e"\n'
        f'[store]\nurl = "sqlite:///{tmp_path}/central.db"\n'
        "[ingest]\nwatermark_interval_s = 0.2\n[fusion]\nenabled = false\n"
    )
    cfg = make_config(mqtt=broker.url, uplink="batch_max = 50",
                      sensors=devices.sensors(interval_s=0.05))  # fmt: skip
    stored = watcher(tm.topic(STATION, tm.DOWN_STORED))

    def upto() -> int:
        return max((tm.decode_stored(e.payload).upto for e in stored.got), default=0)

    def progress(more: int) -> None:
        start = upto()
        stored.wait(lambda: upto() > start + more)

    run = ["cloud", "run", "--config", str(cloud_cfg)]
    centre = spawn(run, tmp_path / "cloud.log")
    gw = spawn(["gateway", "run", "--config", str(cfg.path)], tmp_path / "gw.log")
    try:
        progress(100)
        gw.kill()  # the gateway dies mid-stream
        gw.wait()
        gw = spawn(["gateway", "run", "--config", str(cfg.path)], tmp_path / "gw.log")
        progress(100)
        centre.kill()  # the centre dies mid-ingest
        centre.wait()
        time.sleep(0.5)  # the gateway keeps reading and keeping meanwhile
        centre = spawn(run, tmp_path / "cloud.log")
        progress(100)
        gw.kill()
        gw.wait()
        # a last run that polls once a day drains what is left, then stops on SIGTERM
        cfg = make_config(mqtt=broker.url, uplink="batch_max = 50",
                          sensors=devices.sensors(interval_s=86400))  # fmt: skip
        n0 = inspect(cfg.outbox.path).next_id
        gw = spawn(["gateway", "run", "--config", str(cfg.path)], tmp_path / "gw.log")
        wait(lambda: inspect(cfg.outbox.path).next_id >= n0 + 5, what="its first poll")
        stored.wait(lambda: upto() >= inspect(cfg.outbox.path).next_id - 1, timeout=60)
        gw.send_signal(signal.SIGTERM)
        assert gw.wait(30) == 0
        n = inspect(cfg.outbox.path).next_id - 1
        stored.wait(lambda: upto() >= n)
    finally:
        for p in (gw, centre):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.wait(30)
    epoch = inspect(cfg.outbox.path).epoch
    r = cli("cloud", "export", "--config", str(cloud_cfg), "--station", STATION,
            "--format", "jsonl")  # fmt: skip
    assert r.code == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert {x["epoch"] for x in rows} == {epoch}
    assert [x["id"] for x in rows] == list(range(1, n + 1))  # every reading, once
    by_q = {(x["quantity"], x["raw"]) for x in rows}
    assert ("pm25", 35.0) in by_q and ("rh", 65.8) in by_q and ("temp", 21.5) in by_q


@pytest.mark.slow
def test_a_thinned_backlog_tells_the_centre_what_is_gone(
    make_config, broker, devices, watcher, tmp_path: Path, cli
) -> None:
    from gateway.model import Reading
    from gateway.outbox import Outbox

    cloud_cfg = tmp_path / "cloud.toml"
    cloud_cfg.write_text(
        f'[mqtt]\nurl = "{broker.url}"\nclient_id = "cloud-floor"\n'
        f'[store]\nurl = "sqlite:///{tmp_path}/central.db"\n'
        "[ingest]\nwatermark_interval_s = 0.2\n[fusion]\nenabled = false\n"
    )
    cfg = make_config(mqtt=broker.url, sensors=devices.sensors(interval_s=86400))
    cfg.path.write_text(cfg.path.read_text().replace("[outbox]\n", "[outbox]\nmax_mb = 1\n"))
    t0 = time.time() - 40_000
    with Outbox(cfg.outbox.path) as box:  # a week offline on a tiny disk quota
        for k in range(0, 30_000, 1000):
            box.add([Reading(STATION, "pm", "pm25", "ug/m3", t0 + i, 20.0, 20.0)
                     for i in range(k, k + 1000)])  # fmt: skip
    stored = watcher(tm.topic(STATION, tm.DOWN_STORED))

    def upto() -> int:
        return max((tm.decode_stored(e.payload).upto for e in stored.got), default=0)

    centre = spawn(["cloud", "run", "--config", str(cloud_cfg)], tmp_path / "cloud.log")
    gw = spawn(["gateway", "run", "--config", str(cfg.path)], tmp_path / "gw.log")
    try:
        wait(lambda: inspect(cfg.outbox.path).shed > 0, what="thinning")
        stored.wait(lambda: upto() >= inspect(cfg.outbox.path).next_id - 1, timeout=60)
        gw.send_signal(signal.SIGTERM)
        assert gw.wait(30) == 0
    finally:
        for p in (gw, centre):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.wait(30)
    st = inspect(cfg.outbox.path)
    assert st.floor > 1 and st.shed == st.floor - 1 and st.depth == 0
    r = cli("cloud", "export", "--config", str(cloud_cfg), "--station", STATION,
            "--format", "jsonl")  # fmt: skip
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    ids = [x["id"] for x in rows]
    # nothing below the floor was ever sent; everything from it on arrived once
    assert ids == list(range(st.floor, st.next_id))
    # SenML times are relative to the pack's first reading, to the millisecond
    on_the_hour = [abs(t - round(t / 3600) * 3600) < 0.002
                   for t in (parse_iso(x["ts"]) for x in rows)]  # fmt: skip
    means = [x for x, hour in zip(rows, on_the_hour, strict=True)
             if hour and x["id"] > 30_000 and x["value"] == 20.0]  # fmt: skip
    assert means, "the hourly means of the thinned hours arrived"

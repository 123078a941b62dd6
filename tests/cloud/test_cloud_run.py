"""``airtrace cloud run`` and ``cloud export`` as an operator runs them: real processes, a
real broker, kill -9 in the middle of ingest."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cloud.store import open_store
from tests.cloud.conftest import T0, Gateway, pack_bytes, wait_for
from tests.conftest import ROOT, free_port


class CloudProcess:
    """``python -m airtrace cloud run --config ...`` of this checkout."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "airtrace", "cloud", "run", "--config", str(self.config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def terminate(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def write_config(
    path: Path, broker_url: str, store_url: str, *, api_port: int | None = None, extra: str = ""
) -> Path:
    text = f'[mqtt]\nurl = "{broker_url}"\nclient_id = "cloud-{path.stem}"\n{extra}\n'
    text += f'[store]\nurl = "{store_url}"\n'
    if api_port is not None:
        text += f'[api]\nlisten = "127.0.0.1:{api_port}"\n'
    text += "[ingest]\nwatermark_interval_s = 0.2\n[fusion]\nenabled = false\n"
    path.write_text(text)
    return path


def wait_ready(gateway: Gateway, timeout: float = 60.0) -> None:
    """The service is subscribed once a probe pack comes back as a watermark (a pack sent
    before its first subscription exists has no session to wait in)."""
    import time

    deadline = time.monotonic() + timeout
    while gateway.upto("PROBE") != 1:
        assert time.monotonic() < deadline, "the service never subscribed"
        gateway.telemetry("PROBE", [1])
        wait_until = time.monotonic() + 1.0
        while gateway.upto("PROBE") != 1 and time.monotonic() < wait_until:
            time.sleep(0.05)


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[list[CloudProcess]]:
    procs: list[CloudProcess] = []
    yield procs
    for p in procs:
        p.kill()


def test_minimal_config_runs_serves_the_api_and_stops_on_sigterm(
    tmp_path: Path, broker, cloud, gateway: Gateway
) -> None:
    port = free_port()
    cfg = write_config(tmp_path / "c.toml", broker.url, f"sqlite:///{tmp_path}/c.db", api_port=port)
    proc = CloudProcess(cfg, tmp_path / "cloud.log")
    cloud.append(proc)
    proc.start()

    def health() -> dict | None:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=1).json()
        except httpx.HTTPError:
            return None

    assert wait_for(health, 30, "the API")["ok"] is True
    gateway.telemetry("GX-R1", [1, 2, 3])
    wait_for(lambda: gateway.upto("GX-R1") == 3, 20, "the watermark")
    stations = httpx.get(f"http://127.0.0.1:{port}/api/v1/stations", timeout=5).json()
    assert [(s["id"], s["status"]) for s in stations] == [("GX-R1", "pending")]
    assert proc.terminate() == 0


@pytest.mark.parametrize(
    "bad",
    [
        "[mqtt]\nurl = 'mqtt://x'\n",
        "[store]\nurl = 'x.db'\n[mqtt]\nurl='mqtt://h'\nbogus = 1\n",
        "not toml [",
    ],
)
def test_a_bad_config_exits_2_with_one_line(tmp_path: Path, cli, bad: str) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(bad)
    r = cli("cloud", "run", "--config", str(cfg))
    assert r.code == 2
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "bad.toml" in r.stderr


@pytest.mark.slow
def test_kill_9_mid_ingest_loses_nothing_and_doubles_nothing(
    tmp_path: Path, broker, cloud, gateway: Gateway, store_url: str
) -> None:
    cfg = write_config(tmp_path / "c.toml", broker.url, store_url)
    proc = CloudProcess(cfg, tmp_path / "cloud.log")
    cloud.append(proc)
    proc.start()
    store = open_store(store_url)
    packs, per_pack = 300, 50
    done = threading.Event()

    def publish() -> None:
        for k in range(packs):
            gateway.telemetry("GX-K", range(1 + k * per_pack, 1 + (k + 1) * per_pack))
        done.set()

    try:
        wait_ready(gateway)
        threading.Thread(target=publish, daemon=True).start()
        wait_for(lambda: store.reading_count("GX-K") >= 2000, 60, "some readings stored")
        proc.kill()  # kill -9 while packs are still arriving
        assert store.reading_count("GX-K") < packs * per_pack, "ingest finished before the kill"
        wait_for(done.is_set, 60, "the publisher")
        proc.start()
        total = packs * per_pack
        wait_for(lambda: gateway.upto("GX-K") == total, 90, f"watermark {total}")
        assert store.reading_count("GX-K") == total
        ids = [r.id for r in store.iter_readings(station="GX-K")]
        assert ids == list(range(1, total + 1))
        assert store.gaps("GX-K") == []
    finally:
        store.close()


def test_export_while_running(tmp_path: Path, broker, cloud, gateway: Gateway, cli) -> None:
    db = f"sqlite:///{tmp_path}/c.db"
    cfg = write_config(tmp_path / "c.toml", broker.url, db)
    proc = CloudProcess(cfg, tmp_path / "cloud.log")
    cloud.append(proc)
    proc.start()
    wait_ready(gateway)
    gateway.telemetry("B-1", [1, 2], t0=T0)
    gateway.telemetry("A-1", [1], t0=T0, epoch="ep2")
    gateway.publish(
        "airtrace/v1/A-1/up/telemetry",
        b'[{"bn":"urn:airtrace:A-1:","bt":1780000000,"epoch":"ep2","n":"pm25","u":"ug/m3","q":"D","raw":7.5,"id":2}]',
    )
    wait_for(lambda: gateway.upto("B-1") == 2 and gateway.upto("A-1") == 2, 30, "both stations")
    r = cli("cloud", "export", "--config", str(cfg))
    assert r.code == 0, r.stderr
    rows = [x for x in csv.reader(io.StringIO(r.stdout)) if x[0] != "PROBE"]
    assert rows[0] == [
        "station",
        "id",
        "quantity",
        "ts",
        "value",
        "raw",
        "unit",
        "q",
        "cal",
        "epoch",
    ]
    assert [(x[0], x[1], x[9]) for x in rows[1:]] == [
        ("A-1", "1", "ep2"),
        ("A-1", "2", "ep2"),
        ("B-1", "1", "e1"),
        ("B-1", "2", "e1"),
    ]
    assert rows[2][3:9] == ["2026-05-28T20:26:40.000Z", "", "7.5", "ug/m3", "D", "0"]
    assert rows[3][3] == "2026-05-28T20:26:50.000Z"
    r = cli(
        "cloud",
        "export",
        "--config",
        str(cfg),
        "--format",
        "jsonl",
        "--station",
        "B-1",
        "--since",
        "2026-05-28T20:26:55Z",
    )
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert lines == [
        {
            "station": "B-1",
            "id": 2,
            "quantity": "pm25",
            "ts": "2026-05-28T20:27:00.000Z",
            "value": 12.0,
            "raw": pytest.approx(13.2),
            "unit": "ug/m3",
            "q": "N",
            "cal": 1,
            "epoch": "e1",
        }
    ]
    r = cli("cloud", "export", "--config", str(cfg), "--since", "yesterday")
    assert r.code == 2
    assert proc.terminate() == 0


def test_pack_bytes_helper_matches_the_contract() -> None:
    doc = json.loads(pack_bytes("S", [5, 6]))
    assert doc[0]["bn"] == "urn:airtrace:S:"
    assert doc[0]["seq"] == 5


def test_a_stop_signal_takes_no_lock_and_stops_the_service(tmp_path: Path) -> None:
    """The handler runs between two bytecodes of the main thread, which may hold the stop
    Event's lock just then (inside ``wait``): a handler that set the Event would deadlock
    ``cloud run`` on SIGTERM. Here it runs while that lock is held; ``run`` then stops."""
    from cloud.config import parse_config
    from cloud.service import Service

    cfg = parse_config(
        f'[store]\nurl = "sqlite:///{tmp_path}/s.db"\n[ingest]\nenabled = false\n'
        "[fusion]\nenabled = false\n"
    )
    service = Service(cfg)
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:

        def interrupted_while_holding_the_lock() -> None:
            with service._stop._cond:  # type: ignore[attr-defined]
                service._on_signal(signal.SIGTERM, None)

        worker = threading.Thread(target=interrupted_while_holding_the_lock, daemon=True)
        worker.start()
        worker.join(5)
        assert not worker.is_alive(), "the SIGTERM handler waited for a lock"
        service.run()  # the signal is on record: starts, sees it, stops in order
        assert service.parts == []
        assert signal.getsignal(signal.SIGTERM) == previous[signal.SIGTERM]
    finally:
        for s, h in previous.items():
            signal.signal(s, h)

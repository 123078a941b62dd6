"""Two ``cloud run`` workers share the feed (MQTT shared subscription) and one PostgreSQL;
one is killed -9 in the middle and restarted: every reading is stored exactly once."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from cloud.store import open_store
from tests.cloud.conftest import Gateway, wait_for
from tests.cloud.test_cloud_run import CloudProcess, write_config
from tests.conftest import free_port

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def messages(port: int) -> int:
    try:
        stats = httpx.get(f"http://127.0.0.1:{port}/api/v1/stats", timeout=2).json()
    except httpx.HTTPError:
        return -1
    return int(stats["ingest"].get("messages", 0))


def test_two_workers_share_the_feed_and_survive_kill_9(
    tmp_path: Path, broker, postgres_url: str, gateway: Gateway
) -> None:
    ports = [free_port(), free_port()]
    workers = []
    for name, port in zip(("a", "b"), ports, strict=True):
        cfg = write_config(
            tmp_path / f"w{name}.toml",
            broker.url,
            postgres_url,
            api_port=port,
            extra='share_group = "ingest"',
        )
        workers.append(CloudProcess(cfg, tmp_path / f"w{name}.log"))
    store = open_store(postgres_url)
    try:
        for w in workers:
            w.start()
        probe = 0
        deadline = time.monotonic() + 90
        while min(messages(p) for p in ports) < 1:  # both subscribed: each took a probe
            assert time.monotonic() < deadline, "the workers never both subscribed"
            probe += 1
            gateway.telemetry("PROBE", [probe])
            time.sleep(0.2)
        stations, packs, per_pack = ["S1", "S2", "S3", "S4"], 40, 25
        done = threading.Event()

        def publish() -> None:
            for k in range(packs):
                for s in stations:
                    gateway.telemetry(s, range(1 + k * per_pack, 1 + (k + 1) * per_pack))
            done.set()

        threading.Thread(target=publish, daemon=True).start()
        wait_for(lambda: store.reading_count() >= 1000, 60, "some readings")
        workers[0].kill()
        wait_for(done.is_set, 60, "the publisher")
        workers[0].start()
        total = packs * per_pack
        for s in stations:
            wait_for(lambda s=s: gateway.upto(s) == total, 120, f"{s} watermark {total}")
        assert store.reading_count() - store.reading_count("PROBE") == total * len(stations)
        for s in stations:
            assert [r.id for r in store.iter_readings(station=s)] == list(range(1, total + 1))
        assert messages(ports[1]) > 0
    finally:
        for w in workers:
            w.kill()
        store.close()

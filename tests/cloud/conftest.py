"""Fixtures of the central service's tests: the store on both back ends, a publisher that
plays a gateway, and polling with a deadline (never a sleep for correctness)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from cloud.store import Store, open_store
from protocols.telemetry import Pack, Record, encode_pack

T0 = 1_780_000_000.0


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a fresh, empty store: a SQLite file, then a PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/cloud.db"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = open_store(store_url)
    try:
        yield s
    finally:
        s.close()


def wait_for(cond: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    """Poll ``cond`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def make_pack(
    station: str,
    ids: Sequence[int],
    *,
    epoch: str = "e1",
    floor: int | None = None,
    quantity: str = "pm25",
    t0: float = T0,
    step: float = 10.0,
    value: Callable[[int], float] = lambda i: 10.0 + i % 7,
) -> Pack:
    records = tuple(
        Record(
            id=i,
            quantity=quantity,
            unit="ug/m3",
            ts=t0 + step * i,
            value=value(i),
            raw=value(i) * 1.1,
            flag="N",
            cal=1,
            sensor="pm",
        )
        for i in ids
    )
    return Pack(station=station, records=records, epoch=epoch, floor=floor)


def pack_bytes(station: str, ids: Sequence[int], **kw: Any) -> bytes:
    return encode_pack(make_pack(station, ids, **kw))


class Gateway:
    """A plain paho client that publishes like a gateway and watches its watermark."""

    def __init__(self, broker_url: str, client_id: str = "test-gw") -> None:
        host, port = broker_url.removeprefix("mqtt://").split(":")
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        self.stored: dict[str, dict[str, Any]] = {}
        self.commands: list[bytes] = []
        self._lock = threading.Lock()
        self.client.on_message = self._on_message
        self.client.connect(host, int(port))
        self.client.subscribe([("airtrace/v1/+/down/#", 1)])
        self.client.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        import json

        parts = msg.topic.split("/")
        with self._lock:
            if parts[-1] == "stored" and msg.payload:
                self.stored[parts[2]] = json.loads(msg.payload)
            elif parts[-1] == "cmd":
                self.commands.append(msg.payload)

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(10)

    def telemetry(self, station: str, ids: Sequence[int], **kw: Any) -> None:
        self.publish(f"airtrace/v1/{station}/up/telemetry", pack_bytes(station, ids, **kw))

    def upto(self, station: str) -> int:
        with self._lock:
            return int(self.stored.get(station, {}).get("upto", -1))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def gateway(broker: Any) -> Iterator[Gateway]:
    gw = Gateway(broker.url)
    try:
        yield gw
    finally:
        gw.close()

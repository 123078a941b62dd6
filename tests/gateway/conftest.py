"""Fixtures of the gateway's tests: station configs on disk, real Modbus devices on TCP,
a test client on the broker, and the custody recorder (``custody_responder.py``)."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gateway import config as gwconfig
from tests.gateway.custody_responder import CustodyResponder

STATION = "GX-T-001"


def station_toml(
    tmp_path: Path,
    *,
    mqtt: str = "mqtt://127.0.0.1:1",
    kind: str = "micro",
    extra: str = "",
    uplink: str = "",
    sensors: str | None = None,
) -> str:
    if sensors is None:
        sensors = """
            [[sensor]]
            name = "pm"
            profile = "rs-pm-n01"
            transport = "modbus-tcp"
            address = "127.0.0.1:5020"
            interval_s = 1

            [[sensor]]
            name = "met"
            profile = "rs-ws-n01"
            transport = "modbus-tcp"
            address = "127.0.0.1:5021"
            interval_s = 1
        """
    body = f"""
        [station]
        id = "{STATION}"
        kind = "{kind}"
        lat = 34.8123
        lon = 113.5521
        inlet_height_m = 3.5

        [uplink]
        mqtt = "{mqtt}"
        batch_wait_s = 0.05
        backoff_min_s = 0.05
        backoff_max_s = 0.5
        resend_after_s = 2
        {uplink}

        [outbox]
        path = "{tmp_path / "outbox.db"}"
    """
    return textwrap.dedent(body) + textwrap.dedent(sensors) + textwrap.dedent(extra)


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., gwconfig.StationConfig]:
    """``make_config(mqtt=..., extra=...)`` writes station.toml and loads it."""

    def make(**kw: object) -> gwconfig.StationConfig:
        path = tmp_path / "station.toml"
        path.write_text(station_toml(tmp_path, **kw))  # type: ignore[arg-type]
        return gwconfig.load(path)

    return make


@pytest.fixture
def custody(broker) -> Iterator[CustodyResponder]:
    """The fake central custody (see custody_responder.py) on the test's broker."""
    r = CustodyResponder(broker.host, broker.port).start()
    try:
        yield r
    finally:
        r.stop()


class Watcher:
    """A test client on the broker: subscribes, collects what arrives, publishes."""

    def __init__(self, broker, *topics: str) -> None:
        import queue

        from gateway.mqtt import MqttLink, MqttSettings

        self.q: queue.Queue = queue.Queue()
        self.got: list = []
        self.link = MqttLink(
            MqttSettings(
                host=broker.host,
                port=broker.port,
                client_id=f"watcher-{id(self)}",
                clean_session=True,
                subscriptions=tuple((t, 1) for t in topics),
            ),
            self.q.put,
        )
        self.link.start()
        self.wait(lambda: self.link.connected)
        import time

        time.sleep(0.2)  # the subscriptions are in place

    def wait(self, cond, timeout: float = 15.0) -> None:
        import queue
        import time

        from gateway.mqtt import Received

        deadline = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > deadline:
                raise AssertionError(f"not reached in {timeout} s; got {self.got}")
            try:
                ev = self.q.get(timeout=0.05)
            except queue.Empty:
                continue
            if isinstance(ev, Received):
                self.got.append(ev)

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self.link.publish(topic, payload, retain=retain)

    def stop(self) -> None:
        self.link.stop()


@pytest.fixture
def watcher(broker) -> Iterator[Callable[..., Watcher]]:
    made: list[Watcher] = []

    def make(*topics: str) -> Watcher:
        w = Watcher(broker, *topics)
        made.append(w)
        return w

    yield make
    for w in made:
        w.stop()


@dataclass
class Devices:
    """Real pymodbus servers on TCP: a T/H transmitter (unit 1: 65.8 %RH, 21.5 degC) and
    a dust transmitter (unit 3: PM2.5 35, PM10 80, TSP 120 ug/m3) behind one endpoint."""

    sim: Any
    port: int

    def sensors(self, interval_s: float = 0.2, timeout_s: float = 0.3) -> str:
        return f"""
            [[sensor]]
            name = "pm"
            profile = "rs-pm-n01"
            transport = "modbus-tcp"
            address = "127.0.0.1:{self.port}"
            unit_id = 3
            interval_s = {interval_s}
            timeout_s = {timeout_s}
            retries = 0

            [[sensor]]
            name = "met"
            profile = "rs-ws-n01"
            transport = "modbus-tcp"
            address = "127.0.0.1:{self.port}"
            unit_id = 1
            interval_s = {interval_s}
            timeout_s = {timeout_s}
            retries = 0
        """


@pytest.fixture
def devices() -> Iterator[Devices]:
    from tests.gateway.modbus_sim import ModbusSim, Unit

    with ModbusSim() as sim:
        port = sim.tcp({1: Unit(holding={0: [658, 215]}), 3: Unit(holding={0: [35, 80, 120]})})
        yield Devices(sim, port)

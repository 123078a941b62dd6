"""Fixtures that start simulated devices on real transports with one call.

Each device fixture is a factory: call it with the device's options, get a started device
back (stopped at the end of the test). Every device has ``address`` (what a gateway's
``[[sensor]] address`` needs), ``transport``, ``values`` (``values.set("pm25", 80)``,
``values.source = ...``) and ``faults`` (``faults.kill()``, ``faults.slow(0.5)`` ...; on a
bus with several units: ``device.unit(2).faults``)::

    def test_reads_dust(modbus_tcp_device):
        dev = modbus_tcp_device(model="rs-pm-n01", unit_ids=(1, 2), source={"pm25": 35, ...})
        ... point the gateway at dev.address ...

    def test_rtu_bus(modbus_rtu_bus):
        bus = modbus_rtu_bus({1: "rs-pm-n01", 2: "rs-ws-n01"})
        bus.unit(2).faults.kill()

- ``modbus_tcp_device(model=..., unit_ids=(1,), **options)`` -> ``ModbusDevice`` (TCP)
- ``modbus_rtu_bus({unit_id: model}, **options)`` -> ``ModbusDevice`` (RTU on a pty pair)
- ``pms5003_device(**options)``, ``sds011_device(**options)`` -> serial sensors on a pty
- ``hj212_monitor(host, port, **options)`` -> an HJ 212 dust monitor reporting there
- ``hj212_platform(ack=True)`` -> a TCP server that records HJ 212 packets and answers 9014
- ``sim_clock`` -> a ``ManualClock`` to pass as ``clock=``; advance it instead of sleeping

Options are the device classes' keyword arguments (``source=``, ``clock=``, ``seed=`` ...);
a ``source`` may be a mapping of constant values.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from firmware_sim.clock import ManualClock
from firmware_sim.device import Device
from firmware_sim.hj212_monitor import Hj212Monitor
from firmware_sim.loop import SimLoop
from firmware_sim.modbus import ModbusDevice
from firmware_sim.pms5003_sensor import Pms5003Sensor
from firmware_sim.sds011_sensor import Sds011Sensor
from protocols import hj212

__all__ = ["Hj212Platform", "wait_for"]


def wait_for(condition: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
    """Poll ``condition`` until it is truthy (returned) or fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


@pytest.fixture
def _devices() -> Iterator[list[Device]]:
    started: list[Device] = []
    yield started
    for device in reversed(started):
        with contextlib.suppress(Exception):
            device.stop()


@pytest.fixture
def sim_clock() -> ManualClock:
    """A simulated clock that moves only when the test says (``advance``/``set``)."""
    return ManualClock()


@pytest.fixture
def modbus_tcp_device(_devices: list[Device]) -> Callable[..., ModbusDevice]:
    """``modbus_tcp_device(model="rs-pm-n01", unit_ids=(1,), **options)``: a started Modbus
    TCP server on a free loopback port; ``address`` is host:port."""

    def start(model: str = "rs-pm-n01", unit_ids: tuple[int, ...] = (1,), **options: Any):
        dev = ModbusDevice(model=model, unit_ids=unit_ids, transport="tcp", **options)
        _devices.append(dev.start())
        return dev

    return start


@pytest.fixture
def modbus_rtu_bus(_devices: list[Device]) -> Callable[..., ModbusDevice]:
    """``modbus_rtu_bus({1: "rs-pm-n01", 2: "rs-ws-n01"}, **options)``: a started RS485 bus
    on a pty pair; ``address`` is the pty path for the gateway."""

    def start(units: Mapping[int, str] | None = None, **options: Any) -> ModbusDevice:
        dev = ModbusDevice(units or {1: "rs-pm-n01"}, transport="rtu", **options)
        _devices.append(dev.start())
        return dev

    return start


@pytest.fixture
def pms5003_device(_devices: list[Device]) -> Callable[..., Pms5003Sensor]:
    """``pms5003_device(**options)``: a started PMS5003 on a pty pair."""

    def start(**options: Any) -> Pms5003Sensor:
        dev = Pms5003Sensor(**options)
        _devices.append(dev.start())
        return dev

    return start


@pytest.fixture
def sds011_device(_devices: list[Device]) -> Callable[..., Sds011Sensor]:
    """``sds011_device(**options)``: a started SDS011 on a pty pair."""

    def start(**options: Any) -> Sds011Sensor:
        dev = Sds011Sensor(**options)
        _devices.append(dev.start())
        return dev

    return start


@pytest.fixture
def hj212_monitor(_devices: list[Device]) -> Callable[..., Hj212Monitor]:
    """``hj212_monitor(host, port, **options)``: a started dust monitor reporting to
    host:port (it reconnects until something listens there)."""

    def start(host: str = "127.0.0.1", port: int = 0, **options: Any) -> Hj212Monitor:
        dev = Hj212Monitor(host, port, **options)
        _devices.append(dev.start())
        return dev

    return start


class Hj212Platform:
    """A minimal HJ 212 platform: a TCP server that records every packet it receives and,
    while ``ack`` is True, answers packets that want a reply with 9014."""

    def __init__(self, *, ack: bool = True, host: str = "127.0.0.1", port: int = 0) -> None:
        self.ack = ack
        self.packets: list[hj212.Packet] = []
        self.errors: list[hj212.Hj212Error] = []
        self.connections = 0
        self._lock = threading.Lock()
        self._loop = SimLoop.shared()
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self.host, self.port = host, port

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> Hj212Platform:
        async def go() -> None:
            self._server = await asyncio.start_server(self._handle, self.host, self.port)
            self.port = int(self._server.sockets[0].getsockname()[1])

        self._loop.run(go())
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        stream = hj212.Hj212Stream()
        try:
            while chunk := await reader.read(4096):
                for item in stream.feed(chunk):
                    with self._lock:
                        if isinstance(item, hj212.Hj212Error):
                            self.errors.append(item)
                            continue
                        self.packets.append(item)
                    if self.ack and item.needs_reply:
                        writer.write(hj212.reply_9014(item))
                        await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    def received(self, cn: str | None = None) -> list[hj212.Packet]:
        with self._lock:
            return [p for p in self.packets if cn is None or p.cn == cn]

    def drop_connections(self) -> None:
        """Close every open connection (the monitor has to reconnect)."""

        async def go() -> None:
            for w in self._writers:
                w.close()
            self._writers.clear()

        self._loop.run(go())

    def stop(self) -> None:
        async def go() -> None:
            if self._server is not None:
                self._server.close()
                for w in self._writers:
                    w.close()
                await self._server.wait_closed()
                self._server = None

        if self._loop.alive:
            self._loop.run(go())


@pytest.fixture
def hj212_platform() -> Iterator[Callable[..., Hj212Platform]]:
    """``hj212_platform(ack=True)``: a started recording HJ 212 server on a free port."""
    started: list[Hj212Platform] = []

    def start(**options: Any) -> Hj212Platform:
        platform = Hj212Platform(**options).start()
        started.append(platform)
        return platform

    yield start
    for platform in started:
        platform.stop()

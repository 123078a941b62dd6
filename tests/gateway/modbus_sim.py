"""Real pymodbus servers for the gateway's tests: Modbus TCP on a free port, Modbus RTU on
one end of a pty pair, several unit ids each, values changeable while they run.

``ModbusSim`` runs the servers on an asyncio loop in a background thread::

    with ModbusSim() as sim:
        port = sim.tcp({1: Unit(holding={0: [658, 0xFF9B]})})
        sim.set(1, holding={0: [700]})          # the next poll sees 70.0 %RH
        sim.silence(1)                           # unit 1 stops answering (a dead device)

A silenced unit still receives and decodes requests but sends nothing back, as a device
whose transmitter died would; ``requests`` counts what each unit was asked, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pymodbus import FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from tests.conftest import free_port, wait_port

# the servers log every request for a unit id nobody is (with a traceback) at ERROR level
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)


@dataclass
class Unit:
    """One simulated device: the registers it maps (address -> consecutive words); a read
    touching any other register gets exception 2 (illegal data address), as from a real
    transmitter."""

    holding: dict[int, list[int]] = field(default_factory=dict)
    input: dict[int, list[int]] = field(default_factory=dict)
    coils: int = 16


class ModbusSim:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self._servers: list[Any] = []
        self._store: dict[int, dict[str, dict[int, int]]] = {}
        self.silent: set[int] = set()
        self.corrupt: set[int] = set()  # units whose answers arrive with a broken checksum
        self.requests: list[tuple[int, int, int, int]] = []  # (unit, function, address, count)
        self.writes: list[tuple[int, int, int, Any]] = []  # (unit, function, address, values)
        self._lock = threading.Lock()

    # -- building devices ------------------------------------------------------------------

    def _device(self, unit_id: int, unit: Unit) -> SimDevice:
        store = self._store.setdefault(unit_id, {"h": {}, "i": {}})
        self._apply(unit_id, "h", unit.holding)
        self._apply(unit_id, "i", unit.input)

        def regs(mapped: dict[int, list[int]]) -> list[SimData]:
            valid = sorted({a + i for a, words in mapped.items() for i in range(len(words))})
            if not valid:
                return [SimData(0, count=1, datatype=DataType.INVALID)]
            out, run = [], [valid[0]]
            for a in valid[1:]:
                if a == run[-1] + 1:
                    run.append(a)
                    continue
                out.append(SimData(run[0], count=len(run), values=0, datatype=DataType.REGISTERS))
                gap = a - run[-1] - 1
                out.append(SimData(run[-1] + 1, count=gap, datatype=DataType.INVALID))
                run = [a]
            out.append(SimData(run[0], count=len(run), values=0, datatype=DataType.REGISTERS))
            return out

        async def action(
            function: int,
            start: int,
            address: int,
            count: int,
            registers: list[int],
            values: list[int] | list[bool] | None,
        ) -> None:
            with self._lock:
                self.requests.append((unit_id, function, address, count))
                if values is not None:
                    self.writes.append((unit_id, function, address, list(values)))
                    if function in (6, 16):
                        for i, v in enumerate(values):
                            store["h"][address + i] = int(v)
                    return
                kind = "i" if function == 4 else "h" if function == 3 else None
                if kind is None:
                    return
                for i in range(count):
                    a = address + i
                    if a in store[kind]:
                        registers[a - start] = store[kind][a]

        bits = [SimData(0, count=unit.coils, values=False, datatype=DataType.BITS)]
        return SimDevice(
            unit_id, simdata=(bits, list(bits), regs(unit.holding), regs(unit.input)), action=action
        )

    def _apply(self, unit_id: int, kind: str, values: dict[int, list[int]]) -> None:
        with self._lock:
            store = self._store.setdefault(unit_id, {"h": {}, "i": {}})
            for address, words in values.items():
                for i, w in enumerate(words):
                    store[kind][address + i] = w & 0xFFFF

    def set(
        self,
        unit_id: int,
        *,
        holding: dict[int, list[int]] | None = None,
        input: dict[int, list[int]] | None = None,
    ) -> None:
        """Change registers of a running unit."""
        self._apply(unit_id, "h", holding or {})
        self._apply(unit_id, "i", input or {})

    def silence(self, unit_id: int) -> None:
        self.silent.add(unit_id)

    def wake(self, unit_id: int) -> None:
        self.silent.discard(unit_id)

    def asked(self, unit_id: int) -> int:
        with self._lock:
            return sum(1 for r in self.requests if r[0] == unit_id)

    def _tracer(self, unit_at: int, units: set[int]) -> Any:
        """Drop the answers of silenced units and of unit ids nobody is (the unit id is
        byte 0 of an RTU frame and byte 6, after the MBAP header, of a TCP one)."""

        def trace(sending: bool, data: bytes) -> bytes:
            if not sending or len(data) <= unit_at:
                return data
            if data[unit_at] in self.silent or data[unit_at] not in units:
                return b""
            if data[unit_at] in self.corrupt:
                return data[:-1] + bytes([data[-1] ^ 0xFF])
            return data

        return trace

    # -- servers ---------------------------------------------------------------------------

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def tcp(self, units: dict[int, Unit]) -> int:
        """A Modbus TCP server with these units; returns its port on 127.0.0.1."""
        port = free_port()
        self.tcp_on(port, units)
        return port

    def tcp_on(self, port: int, units: dict[int, Unit]) -> None:
        """A Modbus TCP server on a given port (a device coming back after a restart)."""
        devices = [self._device(u, spec) for u, spec in units.items()]

        async def start() -> Any:
            server = ModbusTcpServer(
                devices, address=("127.0.0.1", port), trace_packet=self._tracer(6, set(units))
            )
            await server.serve_forever(background=True)
            return server

        self._servers.append(self._run(start()))
        wait_port("127.0.0.1", port)

    def rtu(self, path: str, units: dict[int, Unit], *, baudrate: int = 9600) -> None:
        """A Modbus RTU server on serial device ``path`` (one end of a PtyPair)."""
        devices = [self._device(u, spec) for u, spec in units.items()]

        async def start() -> Any:
            server = ModbusSerialServer(
                devices,
                port=path,
                framer=FramerType.RTU,
                baudrate=baudrate,
                trace_packet=self._tracer(0, set(units)),
            )
            await server.serve_forever(background=True)
            return server

        self._servers.append(self._run(start()))

    def close(self) -> None:
        for server in self._servers:
            with contextlib.suppress(Exception):
                self._run(server.shutdown())
        self._servers.clear()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()

    def __enter__(self) -> ModbusSim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def modbus_sim() -> Iterator[ModbusSim]:
    sim = ModbusSim()
    try:
        yield sim
    finally:
        sim.close()

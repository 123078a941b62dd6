"""Simulated Modbus slaves on pymodbus 3.16's server: TCP, or RTU over a pty pair.

``ModbusDevice`` is one server: a TCP endpoint (like an RS485-to-Ethernet converter fronting
a bus) or one RS485 line on a virtual serial cable (``PtyPair``), with one or more unit ids
on it, each a ``ModbusUnit`` of some model::

    bus = ModbusDevice({1: "rs-pm-n01", 2: "rs-ws-n01"}, transport="rtu", source=src).start()
    bus.address            # the pty path to give the gateway ([[sensor]] address)
    bus.unit(2).faults.kill()

pymodbus calls the server's datastore for every request; here that datastore is a
``BusContext`` that hands the request to the unit, which computes its registers at that
moment. The faults act where a real line shows them: a dead, rebooting or dropped-out unit
does not answer (pymodbus's ``ignore_missing_devices``), a slow one answers late, and the
server's ``trace_packet`` hook (every frame on its way to the wire) breaks CRCs and adds
noise bytes. An unknown unit id gets silence, as on a real RS485 bus.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any, cast

from pymodbus.constants import ExcCodes
from pymodbus.datastore import ModbusServerContext
from pymodbus.exceptions import NoSuchIdException
from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer

from firmware_sim.clock import Clock, as_clock
from firmware_sim.device import Device
from firmware_sim.faults import Faults, flip_byte
from firmware_sim.loop import SimLoop
from firmware_sim.modbus_unit import ModbusUnit
from firmware_sim.models import ModbusModel
from firmware_sim.ptypair import PtyPair
from firmware_sim.sources import SourceLike, Values

__all__ = ["BusContext", "ModbusDevice", "modbus_rtu", "modbus_tcp"]

log = logging.getLogger(__name__)

# pymodbus logs deprecation notices and every unanswered request; a simulator's silence is
# on purpose. Leave the logger alone where someone configured it.
_pymodbus_log = logging.getLogger("pymodbus")
if _pymodbus_log.level == logging.NOTSET:
    _pymodbus_log.setLevel(logging.CRITICAL)

TRANSPORTS = {"tcp": "modbus-tcp", "rtu": "modbus-rtu"}


class BusContext(ModbusServerContext):
    """The datastore pymodbus's server asks: each request goes to the addressed
    ``ModbusUnit``, which decides whether and when it answers and computes its registers."""

    def __init__(self, units: dict[int, ModbusUnit]) -> None:
        # not super().__init__(): that builds pymodbus's own register store, and this
        # context computes registers per request. With these two attributes pymodbus's
        # server uses the context as it is (its path for custom datastores).
        self.simdevices: list[Any] = []
        self.old_simulator = True
        self.units = units
        self.aliases: dict[int, ModbusUnit] = {}  # old id -> unit, during a re-address
        self._write_fc: dict[int, int] = {}

    def device_ids(self) -> list[int]:
        return list(self.units)

    async def _unit(self, device_id: int, function: int, writing: bool) -> ModbusUnit:
        unit = self.units.get(device_id) or self.aliases.pop(device_id, None)
        if unit is None:
            raise NoSuchIdException(f"no unit {device_id} on this bus")
        if not writing and self._write_fc.pop(device_id, None) == function:
            return unit  # the read-back half of a write request: already decided
        self._write_fc.pop(device_id, None)
        if not unit.faults.answers():
            raise NoSuchIdException(f"unit {device_id} does not answer")
        delay = unit.faults.delay()
        if delay:
            await asyncio.sleep(delay)
        if writing:
            self._write_fc[device_id] = function
        return unit

    async def async_getValues(  # noqa: N802 (pymodbus's method name)
        self, device_id: int, func_code: int, address: int, count: int = 1
    ) -> Any:
        unit = await self._unit(device_id, func_code, writing=False)
        return _exc(unit.read(func_code, address, count))

    async def async_setValues(  # noqa: N802 (pymodbus's method name)
        self, device_id: int, func_code: int, address: int, values: Sequence[Any]
    ) -> Any:
        unit = await self._unit(device_id, func_code, writing=True)
        result = unit.write(func_code, address, list(values))
        return None if result is None else _exc(result)


def _exc(result: Any) -> Any:
    return ExcCodes(result) if isinstance(result, int) else result


class ModbusDevice(Device):
    """A Modbus server (TCP or RTU on a pty) with one or more simulated units."""

    def __init__(
        self,
        units: Mapping[int, ModbusModel | str] | None = None,
        *,
        model: ModbusModel | str | None = None,
        unit_ids: Sequence[int] = (1,),
        transport: str = "tcp",
        host: str = "127.0.0.1",
        port: int = 0,
        serial_port: str | None = None,
        baudrate: int = 9600,
        source: SourceLike | Mapping[int, SourceLike] = None,
        clock: Clock | None = None,
        loop: SimLoop | None = None,
        seed: int = 0,
        pty_backend: str = "auto",
        name: str = "",
    ) -> None:
        super().__init__(loop=loop, name=name)
        if transport not in TRANSPORTS:
            raise ValueError(f"transport must be 'tcp' or 'rtu', got {transport!r}")
        if units is None:
            if model is None:
                raise ValueError("give units={unit_id: model} or model= with unit_ids=")
            units = dict.fromkeys(unit_ids, model)
        if not units:
            raise ValueError("a Modbus device needs at least one unit")
        self.clock = as_clock(clock)
        self.kind = transport
        self.transport = TRANSPORTS[transport]
        self.host, self._port = host, port
        self.baudrate = baudrate
        self.units: dict[int, ModbusUnit] = {}
        for uid, m in units.items():
            src = _unit_source(source, uid)
            unit = ModbusUnit(m, uid, source=src, clock=self.clock, seed=seed * 1000 + uid)
            unit.on_readdress = self._readdress
            self.units[uid] = unit
        self._serial_port = serial_port
        self._pty_backend = pty_backend
        self._pair: PtyPair | None = None
        self._server: Any = None
        self._context: Any = None
        self.frames_sent = 0

    # -- the units --------------------------------------------------------------------------

    def unit(self, unit_id: int) -> ModbusUnit:
        try:
            return self.units[unit_id]
        except KeyError:
            raise KeyError(f"no unit {unit_id} on {self}; units: {sorted(self.units)}") from None

    @property
    def _only(self) -> ModbusUnit:
        if len(self.units) != 1:
            raise AttributeError("this bus has several units: use .unit(unit_id)")
        return next(iter(self.units.values()))

    @property
    def faults(self) -> Faults:
        """The faults of the device's only unit (``unit(id).faults`` on a bus)."""
        return self._only.faults

    @property
    def values(self) -> Values:
        """The values of the device's only unit (``unit(id).values`` on a bus)."""
        return self._only.values

    def _readdress(self, unit: ModbusUnit, new_id: int) -> None:
        if new_id in self.units:
            log.warning("%s: unit id %d is taken; unit %d keeps its id", self, new_id, unit.unit_id)
            return
        old = unit.unit_id
        del self.units[old]
        unit.unit_id = new_id
        self.units[new_id] = unit
        if self._context is not None:
            self._context.aliases[old] = unit  # the write's own read-back still uses it

    # -- address ----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    @property
    def address(self) -> str:
        """host:port (TCP) or the pty path the gateway opens (RTU)."""
        if self.kind == "tcp":
            return f"{self.host}:{self._port}"
        if self._serial_port is None and self._pair is not None:
            return self._pair.b
        if self._gateway_path is None:
            raise RuntimeError("start the device first")
        return self._gateway_path

    _gateway_path: str | None = None

    # -- life cycle -------------------------------------------------------------------------

    async def astart(self) -> None:
        self._context = BusContext(self.units)
        if self.kind == "tcp":
            self._server = ModbusTcpServer(
                self._context,
                framer=FramerType.SOCKET,
                address=(self.host, self._port),
                ignore_missing_devices=True,
                trace_packet=self._trace,
            )
            await self._server.serve_forever(background=True)
            sockets = self._server.transport.sockets
            self._port = int(sockets[0].getsockname()[1])
        else:
            device_path = self._serial_port
            if device_path is None:
                self._pair = PtyPair(backend=self._pty_backend)
                device_path = self._pair.a
            else:
                self._gateway_path = device_path
            self._server = ModbusSerialServer(
                self._context,
                framer=FramerType.RTU,
                port=device_path,
                baudrate=self.baudrate,
                ignore_missing_devices=True,
                trace_packet=self._trace,
            )
            await self._server.serve_forever(background=True)
        self.running = True
        log.info("%s listening at %s", self, self.address)

    async def astop(self) -> None:
        self.running = False
        if self._server is not None:
            await self._server.shutdown()
            self._server = None
        pair, self._pair = self._pair, None
        if pair is not None:  # ending socat takes a while: off the loop the others share
            await asyncio.to_thread(pair.close)

    # -- the wire ---------------------------------------------------------------------------

    def _trace(self, sending: bool, packet: bytes) -> bytes:
        """pymodbus hands every frame here on its way in and out: break outgoing ones."""
        if not sending or len(packet) < (4 if self.kind == "rtu" else 8):
            return packet
        unit = self.units.get(packet[0] if self.kind == "rtu" else packet[6])
        self.frames_sent += 1
        if unit is None:
            return packet
        corrupt = flip_byte(-1) if self.kind == "rtu" else _garble_mbap
        return unit.faults.frame(packet, corrupt)


def _unit_source(source: SourceLike | Mapping[int, SourceLike], unit_id: int) -> SourceLike:
    """A mapping keyed by unit id gives each unit its own source (string keys: values)."""
    if isinstance(source, Mapping) and all(isinstance(k, int) for k in source):
        return cast("Mapping[int, SourceLike]", source).get(unit_id)
    # the keys are not unit ids: one source (or none) for every unit
    return cast("SourceLike", source)


def _garble_mbap(frame: bytes) -> bytes:
    """Modbus TCP has no CRC: a "CRC error" on TCP is a frame whose MBAP protocol id is not
    0, which a client must reject."""
    return frame[:2] + b"\xff\xff" + frame[4:]


def modbus_tcp(model: ModbusModel | str = "rs-pm-n01", **kwargs: Any) -> ModbusDevice:
    """A Modbus TCP device (``model`` on ``unit_ids``), not yet started."""
    return ModbusDevice(model=model, transport="tcp", **kwargs)


def modbus_rtu(units: Mapping[int, ModbusModel | str], **kwargs: Any) -> ModbusDevice:
    """An RS485 bus with ``units`` on a pty pair, not yet started."""
    return ModbusDevice(units, transport="rtu", **kwargs)

"""Modbus RTU and TCP: one link per physical bus, one driver per device on it.

A ``ModbusLink`` owns the one pymodbus 3.16 synchronous client of a bus (an RS485 line
behind a serial port, or a TCP endpoint that may front several unit ids) and makes one
request at a time on it: RTU requests keep the inter-frame gap (3.5 characters, at least
1.75 ms) between them. Each request carries its device's own timeout and retry count, so
a dead device costs only its own ``timeout_s * (retries + 1)``. Every pymodbus exception
and every exception response is translated here, once, into ``DeviceError`` (exception
response, garbled answer, port or connection failure) or ``DeviceTimeout`` (no answer;
the RTU framer also drops frames whose CRC is wrong, so a corrupt line looks like
silence).

A ``ModbusDriver`` reads one device per its profile: the registers are planned into as
few read requests as the profile allows (``Profile.blocks()``) and decoded with
``protocols.registers``. An exception response to one block marks that block's
quantities as device faults and keeps the others; a timeout or a lost link fails the
whole poll. A register that holds NaN (devices say "no measurement" so) becomes a sample
without a value, flagged D.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from gateway.clock import Clock
from gateway.config import ActuatorConfig, SensorConfig
from gateway.errors import DeviceError, DeviceTimeout
from gateway.model import Flag, Sample
from gateway.profiles import Profile
from protocols.registers import RegisterError, decode

__all__ = ["EXCEPTION_CODES", "LinkSettings", "ModbusDriver", "ModbusLink"]

log = logging.getLogger(__name__)

# pymodbus logs every timeout at ERROR level; the link reports failures itself, once, with
# the device's name. Leave pymodbus's logger alone where someone configured it.
_pymodbus_log = logging.getLogger("pymodbus")
if _pymodbus_log.level == logging.NOTSET:
    _pymodbus_log.setLevel(logging.CRITICAL)

EXCEPTION_CODES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}
_TCP_TIMEOUTS_BEFORE_RECONNECT = 3


@dataclass(frozen=True)
class LinkSettings:
    """How to reach a bus: ``transport`` modbus-tcp (``address`` host:port) or modbus-rtu
    (``address`` a serial device, with its line settings)."""

    transport: str
    address: str
    baudrate: int = 9600
    parity: str = "N"
    stopbits: int = 1
    bytesize: int = 8

    @property
    def key(self) -> str:
        """The bus, as ``SensorConfig.bus`` names it."""
        return f"{self.transport}:{self.address}"

    @classmethod
    def of(cls, device: SensorConfig | ActuatorConfig) -> LinkSettings:
        if isinstance(device, SensorConfig):
            return cls(
                device.transport,
                device.address,
                device.baudrate,
                device.parity,
                device.stopbits,
                device.bytesize,
            )
        return cls(device.transport, device.address)

    @property
    def frame_gap_s(self) -> float:
        """Modbus RTU's silent interval between frames: 3.5 characters, >= 1.75 ms."""
        if self.transport != "modbus-rtu":
            return 0.0
        bits = 1 + self.bytesize + (0 if self.parity == "N" else 1) + self.stopbits
        return max(3.5 * bits / self.baudrate, 0.00175)


class ModbusLink:
    """The one client of one bus; thread safe (requests are serialised)."""

    def __init__(self, settings: LinkSettings, *, clock: Clock) -> None:
        if settings.transport not in ("modbus-tcp", "modbus-rtu"):
            raise ValueError(f"not a Modbus transport: {settings.transport!r}")
        self.settings = settings
        self._clock = clock
        self._lock = threading.Lock()
        self._last_io: float | None = None
        self._timeouts = 0  # consecutive, on this link (any unit)
        self._client = self._make_client()
        self.requests = 0
        self.failures = 0

    def _make_client(self) -> Any:
        from pymodbus.client import ModbusSerialClient, ModbusTcpClient

        s = self.settings
        client: Any
        if s.transport == "modbus-tcp":
            host, _, port = s.address.rpartition(":")
            client = ModbusTcpClient(host.strip("[]"), port=int(port), timeout=1.0, retries=0)
        else:
            client = ModbusSerialClient(
                s.address,
                baudrate=s.baudrate,
                parity=s.parity,
                stopbits=s.stopbits,
                bytesize=s.bytesize,
                timeout=1.0,
                retries=0,
            )
        # the poller's circuit breaker decides when a device is gone; pymodbus must not
        # drop the whole line because one device on it is silent
        client.set_max_no_responses(1 << 30)
        return client

    # -- requests ---------------------------------------------------------------------------

    def read(
        self,
        unit: int,
        function: int,
        address: int,
        count: int,
        *,
        timeout_s: float,
        retries: int,
        who: str = "",
    ) -> list[int]:
        """``count`` registers from ``address`` with function 3 (holding) or 4 (input)."""
        what = f"FC{function} read of {count} at {address}"
        if function == 3:
            call = self._client.read_holding_registers
        elif function == 4:
            call = self._client.read_input_registers
        else:
            raise ValueError(f"function {function} is not a register read")
        rr = self._call(
            lambda: call(address, count=count, device_id=unit),
            unit=unit, what=what, timeout_s=timeout_s, retries=retries, who=who,
        )  # fmt: skip
        words = list(getattr(rr, "registers", []) or [])
        if len(words) != count:
            raise DeviceError(
                f"{who or self._where(unit)}: {what} returned {len(words)} registers",
                device=who, unit=unit, comm=False,
            )  # fmt: skip
        return words

    def write_coil(
        self, unit: int, address: int, value: bool, *, timeout_s: float = 1.0,
        retries: int = 1, who: str = "",
    ) -> None:  # fmt: skip
        """Function 5: switch one coil."""
        self._call(
            lambda: self._client.write_coil(address, bool(value), device_id=unit),
            unit=unit, what=f"FC5 write of coil {address}", timeout_s=timeout_s,
            retries=retries, who=who,
        )  # fmt: skip

    def write_register(
        self, unit: int, address: int, value: int, *, timeout_s: float = 1.0,
        retries: int = 1, who: str = "",
    ) -> None:  # fmt: skip
        """Function 6: write one holding register."""
        if not 0 <= value <= 0xFFFF:
            raise DeviceError(f"{who or self._where(unit)}: {value} does not fit a register")
        self._call(
            lambda: self._client.write_register(address, int(value), device_id=unit),
            unit=unit, what=f"FC6 write of register {address}", timeout_s=timeout_s,
            retries=retries, who=who,
        )  # fmt: skip

    def close(self) -> None:
        with self._lock:
            self._client.close()

    # -- the one place pymodbus errors are translated ---------------------------------------

    def _where(self, unit: int) -> str:
        return f"unit {unit} on {self.settings.key}"

    def _call(
        self,
        request: Any,
        *,
        unit: int,
        what: str,
        timeout_s: float,
        retries: int,
        who: str,
    ) -> Any:
        from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

        who = who or self._where(unit)
        with self._lock:
            self._keep_gap()
            self._client.comm_params.timeout_connect = timeout_s
            self._client.retries = retries
            self._client.transaction.retries = retries
            self.requests += 1
            try:
                rr = request()
            except ConnectionException as exc:
                self._failed(timeout=False)
                raise DeviceError(
                    f"{who}: cannot open {self.settings.key}: {_first_line(exc)}",
                    device=who, unit=unit, comm=True,
                ) from None  # fmt: skip
            except ModbusIOException as exc:
                if "No response" in str(exc):
                    self._failed(timeout=True)
                    raise DeviceTimeout(
                        f"{who}: no answer to {what} within {timeout_s:g} s "
                        f"({retries + 1} attempt{'s' if retries else ''})",
                        device=who, unit=unit, comm=True,
                    ) from None  # fmt: skip
                self._failed(timeout=False)
                raise DeviceError(
                    f"{who}: bad answer to {what}: {_first_line(exc)}",
                    device=who, unit=unit, comm=True,
                ) from None  # fmt: skip
            except (ModbusException, OSError, ValueError) as exc:
                self._failed(timeout=False)
                raise DeviceError(
                    f"{who}: {what} failed: {type(exc).__name__}: {_first_line(exc)}",
                    device=who, unit=unit, comm=True,
                ) from None  # fmt: skip
            finally:
                self._last_io = self._clock.monotonic()
            self._timeouts = 0
            if rr is None:
                raise DeviceError(f"{who}: no response object for {what}", device=who, comm=True)
            if rr.isError():
                code = getattr(rr, "exception_code", None)
                self.failures += 1
                name = EXCEPTION_CODES.get(code or 0, "unknown")
                raise DeviceError(
                    f"{who}: exception response {code} ({name}) to {what}",
                    device=who, unit=unit, exception_code=code, comm=False,
                )  # fmt: skip
            return rr

    def _keep_gap(self) -> None:
        gap = self.settings.frame_gap_s
        if gap and self._last_io is not None:
            wait = self._last_io + gap - self._clock.monotonic()
            if wait > 0:
                self._clock.sleep(wait)

    def _failed(self, *, timeout: bool) -> None:
        self.failures += 1
        if not timeout:
            return
        self._timeouts += 1
        # a TCP peer that silently went away (rebooted gateway, half-open connection) only
        # comes back on a new connection; an RTU line has nothing to reconnect
        if (
            self.settings.transport == "modbus-tcp"
            and self._timeouts >= _TCP_TIMEOUTS_BEFORE_RECONNECT
        ):
            self._client.close()
            self._timeouts = 0


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


class ModbusDriver:
    """One Modbus device: ``read()`` polls every register of its profile once."""

    def __init__(
        self,
        sensor: SensorConfig,
        profile: Profile,
        *,
        clock: Clock,
        link: ModbusLink | None = None,
    ) -> None:
        if profile.protocol != "modbus":
            raise ValueError(f"profile {profile.name!r} is not a modbus profile")
        self.sensor = sensor
        self.profile = profile
        self._clock = clock
        self._owns_link = link is None
        self.link = link or ModbusLink(LinkSettings.of(sensor), clock=clock)
        self.blocks = profile.blocks()

    @property
    def name(self) -> str:
        return self.sensor.name

    def read_block_words(self) -> list[tuple[Any, list[int] | DeviceError]]:
        """Each planned block with its words or the exception response it got (for probe);
        timeouts and link failures raise."""
        out: list[tuple[Any, list[int] | DeviceError]] = []
        for block in self.blocks:
            try:
                words = self.link.read(
                    self.sensor.unit_id, block.function, block.address, block.count,
                    timeout_s=self.sensor.timeout_s, retries=self.sensor.retries,
                    who=self.sensor.name,
                )  # fmt: skip
            except DeviceTimeout:
                raise
            except DeviceError as exc:
                if exc.fields.get("comm"):
                    raise
                out.append((block, exc))
                continue
            out.append((block, words))
        return out

    def read(self) -> list[Sample]:
        samples: list[Sample] = []
        answered = False
        first_fault: DeviceError | None = None
        for block, got in self.read_block_words():
            ts = self._clock.now()
            if isinstance(got, DeviceError):
                first_fault = first_fault or got
                for spec in block.specs:
                    samples.append(self._fault(spec.quantity, spec.unit, ts, got.message))
                continue
            answered = True
            for spec in block.specs:
                try:
                    value = decode(block.extract(got, spec), spec)
                except RegisterError as exc:
                    samples.append(self._fault(spec.quantity, spec.unit, ts, str(exc)))
                    continue
                samples.append(Sample(self.sensor.name, spec.quantity, spec.unit, value, ts))
        if not answered and first_fault is not None:
            raise first_fault  # every block refused: the device as a whole is at fault
        order = {q: i for i, q in enumerate(self.profile.quantities)}
        samples.sort(key=lambda s: order[s.quantity])
        return samples

    def _fault(self, quantity: str, unit: str, ts: float, why: str) -> Sample:
        return Sample(self.sensor.name, quantity, unit, None, ts, Flag.FAULT, why)

    def close(self) -> None:
        if self._owns_link:
            self.link.close()

"""``airtrace gateway scan``: find the devices on a port and say which profile each fits.

On a serial port the scan first listens for a particle sensor that streams (PMS5003,
SDS011 at 9600 8N1) and asks once for a frame in case one sits in query mode. Then, for
each baud rate and unit id asked for, it sends one Modbus read (function 3, register 0);
any answer — an exception response too — means a device is there. A found device is
fingerprinted against every Modbus profile (the built-in ones and any given): a profile
fits when each of its read requests is answered and every decoded value lies within its
quantity's physical range (``protocols.quantities``). Fits are ranked: more non-zero
values first (a register reading 0 fits anything), then more quantities, then profiles
whose documented baud rate matches. On a Modbus TCP endpoint only the
unit ids are scanned.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from gateway.clock import Clock
from gateway.drivers.modbus import LinkSettings, ModbusLink
from gateway.errors import DeviceError, DeviceTimeout
from gateway.profiles import Profile, builtin_profiles, load_profile
from protocols import pms5003, sds011
from protocols.errors import CodecError, InputError
from protocols.quantities import QUANTITIES
from protocols.registers import RegisterError, decode

__all__ = ["Found", "fingerprint", "parse_baudrates", "parse_port", "parse_units", "render", "scan"]

DEFAULT_BAUDRATES = (9600, 4800, 19200, 2400)

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Found:
    """One device that answered."""

    port: str
    transport: str  # modbus-tcp | modbus-rtu | serial
    protocol: str  # modbus | pms5003 | sds011
    unit_id: int | None = None
    baudrate: int | None = None
    parity: str | None = None
    stopbits: int | None = None
    candidates: tuple[str, ...] = ()  # profile names that fit, best first
    values: dict[str, float] = field(default_factory=dict)  # as the best candidate decodes
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "port": self.port, "transport": self.transport, "protocol": self.protocol,
            "unit_id": self.unit_id, "baudrate": self.baudrate, "parity": self.parity,
            "stopbits": self.stopbits, "profiles": list(self.candidates),
            "values": self.values, "note": self.note,
        }  # fmt: skip

    def sensor_toml(self, name: str) -> str:
        """A ``[[sensor]]`` block for the station config."""
        lines = [
            "[[sensor]]",
            f'name = "{name}"',
            f'profile = "{self.candidates[0] if self.candidates else "FIXME"}"',
            f'transport = "{self.transport}"',
            f'address = "{self.port}"',
        ]
        if self.unit_id is not None:
            lines.append(f"unit_id = {self.unit_id}")
        if self.transport != "modbus-tcp" and self.baudrate is not None:
            lines.append(f"baudrate = {self.baudrate}")
        if self.parity not in (None, "N"):
            lines.append(f'parity = "{self.parity}"')
        if self.stopbits not in (None, 1):
            lines.append(f"stopbits = {self.stopbits}")
        return "\n".join(lines)


def parse_port(port: str) -> str:
    """The transport a ``--port`` names: host:port is Modbus TCP, a path is serial."""
    if port.startswith(("/", "COM", "loop://")):
        return "modbus-rtu"
    host, sep, number = port.rpartition(":")
    if sep and host and number.isdigit() and 0 < int(number) < 65536:
        return "modbus-tcp"
    raise InputError(f"--port must be a serial device (/dev/ttyUSB0) or host:port, got {port!r}")


def parse_baudrates(text: str) -> list[int]:
    """``9600,4800`` -> baud rates, in the order given."""
    try:
        rates = [int(b) for b in text.split(",") if b.strip()]
    except ValueError:
        raise InputError(f"--baud: {text!r} is not a list of baud rates") from None
    if not rates or any(not 300 <= r <= 921_600 for r in rates):
        raise InputError(f"--baud: {text!r}: baud rates are 300..921600")
    return rates


def parse_units(text: str) -> list[int]:
    """``1-32,40,100-105`` -> unit ids (1..247)."""
    units: list[int] = []
    for part in text.replace(" ", "").split(","):
        lo, dash, hi = part.partition("-")
        try:
            a, b = int(lo), int(hi) if dash else int(lo)
        except ValueError:
            raise InputError(f"--units: {part!r} is not a unit id or a range like 1-32") from None
        if not (1 <= a <= b <= 247):
            raise InputError(f"--units: {part!r} is not within 1..247")
        units.extend(u for u in range(a, b + 1) if u not in units)
    return units


def modbus_profiles(extra: Iterable[str] = ()) -> list[Profile]:
    names = [*builtin_profiles(), *extra]
    return [p for p in (load_profile(n) for n in names) if p.protocol == "modbus"]


def fingerprint(
    link: ModbusLink, unit: int, profiles: list[Profile], *, timeout_s: float
) -> list[tuple[Profile, dict[str, float]]]:
    """The profiles whose registers ``unit`` answers with plausible values, best first."""
    cache: dict[tuple[int, int, int], list[int] | None] = {}

    def words(function: int, address: int, count: int) -> list[int] | None:
        key = (function, address, count)
        if key not in cache:
            try:
                cache[key] = link.read(unit, function, address, count,
                                       timeout_s=timeout_s, retries=0)  # fmt: skip
            except DeviceError:
                cache[key] = None
        return cache[key]

    fits: list[tuple[Profile, dict[str, float]]] = []
    for profile in profiles:
        values: dict[str, float] = {}
        for block in profile.blocks():
            got = words(block.function, block.address, block.count)
            if got is None:
                break
            try:
                for spec in block.specs:
                    values[spec.quantity] = decode(block.extract(got, spec), spec)
            except RegisterError:
                break
        else:
            if all(QUANTITIES[q].low <= v <= QUANTITIES[q].high for q, v in values.items()):
                fits.append((profile, {q: round(v, 6) for q, v in values.items()}))
    baud = link.settings.baudrate if link.settings.transport == "modbus-rtu" else None

    def rank(fit: tuple[Profile, dict[str, float]]) -> tuple[int, int, bool, str]:
        profile, values = fit
        nonzero = sum(1 for v in values.values() if v != 0)  # zeros fit anything
        return (-nonzero, -len(values), profile.defaults.baudrate != baud, profile.name)

    fits.sort(key=rank)
    return fits


def scan(
    port: str,
    *,
    clock: Clock,
    units: list[int],
    baudrates: Iterable[int] = DEFAULT_BAUDRATES,
    parity: str = "N",
    stopbits: int = 1,
    timeout_s: float = 0.1,
    listen_s: float = 2.5,
    profiles: list[Profile] | None = None,
    progress: Progress | None = None,
) -> list[Found]:
    """Every device found on ``port``; see the module docstring."""
    transport = parse_port(port)
    profiles = modbus_profiles() if profiles is None else profiles
    say = progress or (lambda _msg: None)
    if transport == "modbus-rtu" and listen_s > 0:
        say(f"listening for a particle sensor on {port} at 9600 8N1 ({listen_s:g} s)")
        found = _listen_for_particle_sensor(port, listen_s)
        if found is not None:
            return [found]
    rates: list[int | None] = list(baudrates) if transport == "modbus-rtu" else [None]
    out: list[Found] = []
    for baud in rates:
        settings = (
            LinkSettings(transport, port)
            if baud is None
            else LinkSettings(transport, port, baudrate=baud, parity=parity, stopbits=stopbits)
        )
        link = ModbusLink(settings, clock=clock)
        say(f"scanning {settings.key}" + (f" at {baud} 8{parity}{stopbits}" if baud else "")
            + f": units {_ranges(units)}")  # fmt: skip
        try:
            for unit in units:
                note = _present(link, unit, timeout_s)
                if note is None:
                    continue
                fits = fingerprint(link, unit, profiles, timeout_s=max(5 * timeout_s, 0.5))
                out.append(Found(
                    port=port, transport=transport, protocol="modbus", unit_id=unit,
                    baudrate=baud, parity=parity if baud else None,
                    stopbits=stopbits if baud else None,
                    candidates=tuple(p.name for p, _ in fits),
                    values=fits[0][1] if fits else {}, note=note,
                ))  # fmt: skip
                say(f"  unit {unit}: {', '.join(f[0].name for f in fits) or 'no profile fits'}")
        finally:
            link.close()
    return out


def _present(link: ModbusLink, unit: int, timeout_s: float) -> str | None:
    """None when nothing answers ``unit``; else what it said to FC3 at register 0."""
    try:
        link.read(unit, 3, 0, 1, timeout_s=timeout_s, retries=0)
    except DeviceTimeout:
        return None
    except DeviceError as exc:
        if exc.fields.get("exception_code") is not None:
            return f"FC3 at 0: exception {exc.fields['exception_code']}"
        if "cannot open" in exc.message:
            raise
        return None  # a garbled answer: most likely a wrong baud rate
    return "FC3 at 0: answered"


def _listen_for_particle_sensor(port: str, listen_s: float) -> Found | None:
    import serial

    try:
        line = serial.Serial(port, 9600, timeout=0.05)
    except (serial.SerialException, OSError, ValueError) as exc:
        raise DeviceError(f"cannot open {port}: {exc}", comm=True) from None
    streams: dict[str, Any] = {"pms5003": pms5003.Pms5003Stream(), "sds011": sds011.Sds011Stream()}
    try:
        for asked in (False, True):
            if asked:  # a sensor in query mode says nothing until asked
                line.write(pms5003.cmd_read() + sds011.cmd_query_data())
                line.flush()
            deadline = time.monotonic() + (listen_s if not asked else 1.0)
            while time.monotonic() < deadline:
                chunk = line.read(64)
                if not chunk:
                    continue
                for kind, stream in streams.items():
                    for item in stream.feed(chunk):
                        if isinstance(item, CodecError) or item.get("kind") != "data":
                            continue
                        values = {k: float(v) for k, v in item.items()
                                  if k in ("pm1", "pm25", "pm10", "pm100")}  # fmt: skip
                        return Found(
                            port=port, transport="serial", protocol=kind, baudrate=9600,
                            parity="N", stopbits=1, candidates=(kind,), values=values,
                            note=("answers when asked (query mode)" if asked
                                  else "streams frames (active mode)"),
                        )  # fmt: skip
    finally:
        line.close()
    return None


def render(found: list[Found], port: str) -> str:
    """What a technician reads: each device, the profiles it fits, a [[sensor]] block."""
    if not found:
        return f"no device answered on {port}"
    out = []
    for i, f in enumerate(found, start=1):
        where = f"unit {f.unit_id}" if f.unit_id is not None else f.protocol
        line = f"{f.baudrate} 8{f.parity}{f.stopbits} " if f.baudrate else ""
        fits = ", ".join(f.candidates) or "no known profile fits"
        out.append(f"{line}{where}: {fits}  ({f.note})")
        if f.values:
            out.append("    " + "  ".join(f"{q}={v:g}" for q, v in f.values.items()))
        out.extend("    " + x for x in f.sensor_toml(f"dev{i}").splitlines())
    return "\n".join(out)


def _ranges(units: list[int]) -> str:
    out: list[str] = []
    start = prev = None
    for u in sorted(units):
        if start is None:
            start = prev = u
        elif prev is not None and u == prev + 1:
            prev = u
        else:
            out.append(f"{start}-{prev}" if start != prev else f"{start}")
            start = prev = u
    if start is not None:
        out.append(f"{start}-{prev}" if start != prev else f"{start}")
    return ",".join(out)

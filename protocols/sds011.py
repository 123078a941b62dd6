"""Nova Fitness SDS011 (SDS018/021, SDS198) serial frames: data, replies, commands, splitter.

From the sensor, 10 bytes: ``AA C0 PM25_L PM25_H PM10_L PM10_H ID1 ID2 CHK AB`` (PM in
0.1 ug/m3, little-endian), ``AA C5 CMD d1 d2 d3 ID1 ID2 CHK AB`` (the reply to a command)
and the SDS198's ``AA CF r r PM100_L PM100_H ID1 ID2 CHK AB`` (PM100 in ug/m3);
CHK = sum of bytes 2..7 mod 256. To the sensor, 19 bytes:
``AA B4 CMD d1..d12 ID1 ID2 CHK AB`` with CHK = sum of bytes 2..16 mod 256 and ID ``FF FF``
for every device. ``device_id`` is ``ID1 * 256 + ID2`` (0x58D9 for ``58 D9``).
Commands: 2 reporting mode, 4 query data, 5 set device id, 6 sleep/work, 7 firmware
version, 8 working period; d1 = 0 query / 1 set where it applies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from protocols._framing import FrameSplitter
from protocols.errors import CodecError, CrcError

__all__ = [
    "ALL_DEVICES",
    "Command",
    "CommandStream",
    "Sds011CrcError",
    "Sds011Error",
    "Sds011Stream",
    "build_command",
    "build_frame",
    "build_reply",
    "build_sds198_frame",
    "cmd_firmware",
    "cmd_get_reporting_mode",
    "cmd_get_sleep_work",
    "cmd_get_working_period",
    "cmd_query_data",
    "cmd_set_device_id",
    "cmd_set_reporting_mode",
    "cmd_set_working_period",
    "cmd_sleep",
    "cmd_work",
    "parse_command",
    "parse_frame",
]

HEAD, TAIL = 0xAA, 0xAB
DATA, REPLY, SDS198, COMMAND = 0xC0, 0xC5, 0xCF, 0xB4
ALL_DEVICES = 0xFFFF

#: command byte -> name, for commands and their replies
NAMES = {
    2: "reporting_mode",
    4: "query_data",
    5: "device_id",
    6: "sleep_work",
    7: "firmware",
    8: "working_period",
}
_CODES = {v: k for k, v in NAMES.items()}
_MODES = ("active", "query")
_STATES = ("sleep", "work")

Value = int | float | str | bool


class Sds011Error(CodecError):
    """Bytes that are not a valid SDS011 frame or command; the message says why."""


class Sds011CrcError(Sds011Error, CrcError):
    """The frame's checksum does not match its bytes (``expected``, ``got``)."""


def _check(frame: bytes, size: int, types: tuple[int, ...]) -> None:
    if len(frame) != size:
        raise Sds011Error(f"a frame is {size} bytes, got {len(frame)}")
    if frame[0] != HEAD or frame[1] not in types or frame[-1] != TAIL:
        raise Sds011Error(
            f"bad framing {frame[:2].hex(' ')} .. {frame[-1:].hex()}: expected aa "
            f"{'/'.join(f'{t:02x}' for t in types)} .. ab"
        )
    expected, got = sum(frame[2:-2]) & 0xFF, frame[-2]
    if expected != got:
        raise Sds011CrcError(
            f"bad checksum: the bytes sum to {expected:02X}, the frame says {got:02X}",
            expected=expected,
            got=got,
        )


def parse_frame(frame: bytes) -> dict[str, Value]:
    """Decode a 10-byte frame from the sensor: a measurement (``kind`` "data": ``pm25``,
    ``pm10`` in ug/m3, or the SDS198's ``pm100``) or a reply (``kind`` "reply": ``reply``
    names the command, plus its meaning). Always ``device_id``."""
    frame = bytes(frame)
    _check(frame, 10, (DATA, REPLY, SDS198))
    b = frame
    device_id = b[6] << 8 | b[7]
    if b[1] == DATA:
        pm25, pm10 = (b[2] | b[3] << 8) / 10, (b[4] | b[5] << 8) / 10
        return {
            "kind": "data",
            "model": "sds011",
            "pm25": pm25,
            "pm10": pm10,
            "device_id": device_id,
        }
    if b[1] == SDS198:
        return {
            "kind": "data",
            "model": "sds198",
            "pm100": float(b[4] | b[5] << 8),
            "device_id": device_id,
        }
    name = NAMES.get(b[2])
    out: dict[str, Value] = {"kind": "reply", "reply": name or "", "device_id": device_id}
    if name in ("reporting_mode", "sleep_work", "working_period"):
        out["set"] = _flag(b[3], "query/set byte")
        if name == "reporting_mode":
            out["mode"] = _MODES[_flag(b[4], "reporting mode")]
        elif name == "sleep_work":
            out["state"] = _STATES[_flag(b[4], "sleep/work state")]
        elif b[4] > 30:
            raise Sds011Error(f"working period {b[4]} is over 30 minutes")
        else:
            out["period_min"] = b[4]
    elif name == "firmware":
        out.update(year=2000 + b[3], month=b[4], day=b[5])
        out["firmware"] = f"{b[3]:02d}-{b[4]:02d}-{b[5]:02d}"
    elif name != "device_id":
        raise Sds011Error(f"a reply to unknown command {b[2]:02X}", cmd=b[2])
    return out


def _flag(byte: int, what: str) -> int:
    if byte > 1:
        raise Sds011Error(f"{what} is {byte}, expected 0 or 1")
    return byte


def _device(device_id: int) -> bytes:
    if isinstance(device_id, bool) or not isinstance(device_id, int):
        raise Sds011Error(f"device id {device_id!r} is not an int")
    if not 0 <= device_id <= 0xFFFF:
        raise Sds011Error(f"device id {device_id} is outside 0..0xFFFF")
    return device_id.to_bytes(2, "big")


def _tenths(name: str, value: float, scale: int = 10) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Sds011Error(f"{name} = {value!r} is not a number")
    raw = round(value * scale)
    if not 0 <= raw <= 0xFFFF:
        raise Sds011Error(f"{name} = {value} does not fit a frame (0 .. {0xFFFF / scale})")
    return raw


def _frame(kind: int, d: bytes, device_id: int) -> bytes:
    body = bytes([HEAD, kind]) + d + _device(device_id)
    return body + bytes([sum(body[2:]) & 0xFF, TAIL])


def build_frame(*, pm25: float, pm10: float, device_id: int = 0) -> bytes:
    """An SDS011 measurement frame (values rounded to 0.1 ug/m3)."""
    a, b = _tenths("pm25", pm25), _tenths("pm10", pm10)
    return _frame(DATA, a.to_bytes(2, "little") + b.to_bytes(2, "little"), device_id)


def build_sds198_frame(*, pm100: float, device_id: int = 0) -> bytes:
    """An SDS198 measurement frame (PM100 rounded to 1 ug/m3)."""
    return _frame(SDS198, b"\0\0" + _tenths("pm100", pm100, 1).to_bytes(2, "little"), device_id)


def build_reply(command: Command, *, value: int | str = 0, device_id: int = 0) -> bytes:
    """The sensor's reply to ``command`` (as a simulated sensor sends it). ``value``: the
    mode ("active"/"query"), the state ("sleep"/"work"), the period in minutes, or for
    "firmware" a "YY-MM-DD" string; after "device_id" the reply carries the new id."""
    name = command.name
    if name == "query_data":
        raise Sds011Error("query_data is answered with a data frame: use build_frame")
    d1, d2, d3 = int(command.set), 0, 0
    if name == "reporting_mode":
        d2 = _index(value, _MODES)
    elif name == "sleep_work":
        d2 = _index(value, _STATES)
    elif name == "working_period":
        if isinstance(value, str) or not 0 <= value <= 30:
            raise Sds011Error(f"working period {value!r} is not 0..30 minutes")
        d2 = value
    elif name == "firmware":
        try:
            d1, d2, d3 = (int(x) for x in str(value).split("-"))
        except ValueError as exc:
            raise Sds011Error(f"firmware {value!r} is not YY-MM-DD") from exc
        if not (0 <= d1 <= 99 and 1 <= d2 <= 12 and 1 <= d3 <= 31):
            raise Sds011Error(f"firmware {value!r} is not YY-MM-DD")
    else:  # device_id: the reply carries the new id where the id goes
        d1 = 0
        device_id = command.value
    return _frame(REPLY, bytes([_CODES[name], d1, d2, d3]), device_id)


def _index(value: int | str, names: tuple[str, str]) -> int:
    if value in (0, 1) and not isinstance(value, bool):
        return int(value)
    if value not in names:
        raise Sds011Error(f"{value!r} is not one of {', '.join(names)}")
    return names.index(str(value))


# -- commands -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    """A command to the sensor. ``set`` False asks for the current setting; ``value`` is
    the mode/state index (0 active|sleep, 1 query|work), the period in minutes or the new
    device id; ``device_id`` the addressee (0xFFFF: all)."""

    name: str
    set: bool = False
    value: int = 0
    device_id: int = ALL_DEVICES


def build_command(command: Command) -> bytes:
    """The 19-byte frame for ``command``."""
    if command.name not in _CODES:
        raise Sds011Error(f"unknown command {command.name!r}; known: {', '.join(_CODES)}")
    d = bytearray(12)
    if command.name == "device_id":
        d[10:12] = _device(command.value)
    elif command.name in ("reporting_mode", "sleep_work", "working_period"):
        top = 30 if command.name == "working_period" else 1
        if not 0 <= command.value <= top:
            raise Sds011Error(f"{command.name} value {command.value} is not 0..{top}")
        d[0], d[1] = int(command.set), command.value
    body = bytes([HEAD, COMMAND, _CODES[command.name]]) + d + _device(command.device_id)
    return body + bytes([sum(body[2:]) & 0xFF, TAIL])


def parse_command(frame: bytes) -> Command:
    """What a 19-byte command frame asks for (the simulated sensor's side)."""
    frame = bytes(frame)
    _check(frame, 19, (COMMAND,))
    name = NAMES.get(frame[2])
    if name is None:
        raise Sds011Error(f"unknown command {frame[2]:02X}", cmd=frame[2])
    device_id = frame[15] << 8 | frame[16]
    if name == "device_id":
        return Command(name, True, frame[13] << 8 | frame[14], device_id)
    if name in ("query_data", "firmware"):
        return Command(name, False, 0, device_id)
    set_, value = _flag(frame[3], "query/set byte"), frame[4]
    if value > (30 if name == "working_period" else 1):
        raise Sds011Error(f"{name} value {value} is out of range")
    return Command(name, bool(set_), value if set_ else 0, device_id)


def cmd_set_reporting_mode(mode: Literal["active", "query"], device_id: int = ALL_DEVICES) -> bytes:
    return build_command(Command("reporting_mode", True, _index(mode, _MODES), device_id))


def cmd_get_reporting_mode(device_id: int = ALL_DEVICES) -> bytes:
    return build_command(Command("reporting_mode", False, 0, device_id))


def cmd_query_data(device_id: int = ALL_DEVICES) -> bytes:
    return build_command(Command("query_data", False, 0, device_id))


def cmd_set_device_id(new_id: int, device_id: int = ALL_DEVICES) -> bytes:
    return build_command(Command("device_id", True, new_id, device_id))


def cmd_sleep(device_id: int = ALL_DEVICES) -> bytes:
    return build_command(Command("sleep_work", True, 0, device_id))


def cmd_work(device_id: int = ALL_DEVICES) -> bytes:
    return build_command(Command("sleep_work", True, 1, device_id))


def cmd_get_sleep_work(device_id: int = ALL_DEVICES) -> bytes:
    return build_command(Command("sleep_work", False, 0, device_id))


def cmd_firmware(device_id: int = ALL_DEVICES) -> bytes:
    return build_command(Command("firmware", False, 0, device_id))


def cmd_set_working_period(minutes: int, device_id: int = ALL_DEVICES) -> bytes:
    """0 = continuous; 1..30 = work 30 s every ``minutes``."""
    return build_command(Command("working_period", True, minutes, device_id))


def cmd_get_working_period(device_id: int = ALL_DEVICES) -> bytes:
    return build_command(Command("working_period", False, 0, device_id))


# -- streams ------------------------------------------------------------------------------


class Sds011Stream(FrameSplitter[dict[str, Value], Sds011Error]):
    """Frames from the sensor's serial output: ``feed(chunk)`` returns decoded frames and
    errors, resynchronising after garbage."""

    def __init__(self, *, report_every: int = 4096) -> None:
        super().__init__(
            syncs=(bytes([HEAD, DATA]), bytes([HEAD, REPLY]), bytes([HEAD, SDS198])),
            measure=lambda buf: 10,
            decode=parse_frame,
            error=Sds011Error,
            max_frame=10,
            report_every=report_every,
        )


class CommandStream(FrameSplitter[Command, Sds011Error]):
    """Commands arriving at a (simulated) sensor, resynchronising after garbage."""

    def __init__(self, *, report_every: int = 4096) -> None:
        super().__init__(
            syncs=(bytes([HEAD, COMMAND]),),
            measure=lambda buf: 19,
            decode=parse_command,
            error=Sds011Error,
            max_frame=19,
            report_every=report_every,
        )

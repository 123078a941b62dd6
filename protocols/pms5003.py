"""Plantower PMS5003 family serial frames: data frames, commands, command acks, a splitter.

Data frame: ``42 4D``, a big-endian length (data words x 2 + 2), big-endian 16-bit data
words, and a 16-bit checksum = sum of every byte before it. The length tells the frame
size: 20 = PMS3003 (24 bytes), 28 = PMS5003/7003/1003/A003 (32 bytes), 36 = PMS5003ST
(40 bytes). A PMS5003T sends a 32-byte frame that looks exactly like a PMS5003's but puts
temperature and humidity in words 11-12, so it must be named: ``model="pms5003t"``
(without a model, a 32-byte frame is read as a plain PMS5003).

Commands are 7 bytes, ``42 4D CMD DATAH DATAL`` + 16-bit sum. The sensor answers
"passive" and "sleep" with an 8-byte ack (``42 4D 00 04 CMD DATA`` + sum); "active",
"read" and "wake" with a data frame. PM values are ug/m3 (``*_cf1``: CF=1 "standard
particle"; the bare names: atmospheric environment), counts are particles per 0.1 L.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from protocols._framing import FrameSplitter
from protocols.errors import CodecError, CrcError

__all__ = [
    "COMMANDS",
    "MODELS",
    "Command",
    "CommandStream",
    "Pms5003CrcError",
    "Pms5003Error",
    "Pms5003Stream",
    "build_ack",
    "build_command",
    "build_frame",
    "checksum",
    "cmd_active",
    "cmd_passive",
    "cmd_read",
    "cmd_sleep",
    "cmd_wake",
    "parse_command",
    "parse_frame",
]

START = b"BM"  # 0x42 0x4D

#: model -> (length field, names of the data words in order; "" = reserved)
_PM = ("pm1_cf1", "pm25_cf1", "pm10_cf1", "pm1", "pm25", "pm10")
_COUNTS = ("n0_3", "n0_5", "n1_0", "n2_5", "n5_0", "n10")
_LAYOUT: dict[str, tuple[int, tuple[str, ...]]] = {
    "pms3003": (20, (*_PM, "", "", "")),
    "pms5003": (28, (*_PM, *_COUNTS, "version_error")),
    "pms5003t": (28, (*_PM, *_COUNTS[:4], "temp", "rh", "version_error")),
    "pms5003st": (36, (*_PM, *_COUNTS, "hcho", "temp", "rh", "", "version_error")),
}
MODELS = tuple(_LAYOUT)
_BY_LENGTH = {20: "pms3003", 28: "pms5003", 36: "pms5003st"}
_ACK_LENGTH = 4
_SCALE = {"temp": 10, "rh": 10, "hcho": 1000}  # temp 0.1 degC (signed), rh 0.1 %, hcho ug -> mg

#: command name -> (command byte, data)
COMMANDS: dict[str, tuple[int, int]] = {
    "passive": (0xE1, 0),
    "active": (0xE1, 1),
    "read": (0xE2, 0),
    "sleep": (0xE4, 0),
    "wake": (0xE4, 1),
}
_COMMAND_NAMES = {v: k for k, v in COMMANDS.items()}

Value = int | float | str


class Pms5003Error(CodecError):
    """Bytes that are not a valid Plantower frame or command; the message says why."""


class Pms5003CrcError(Pms5003Error, CrcError):
    """The frame's checksum does not match its bytes (``expected``, ``got``)."""


def checksum(data: bytes) -> int:
    """Plantower's checksum: the sum of the bytes, mod 65536."""
    return sum(data) & 0xFFFF


def _check_sum(frame: bytes) -> None:
    expected, got = checksum(frame[:-2]), int.from_bytes(frame[-2:], "big")
    if expected != got:
        raise Pms5003CrcError(
            f"bad checksum: the bytes sum to {expected:04X}, the frame says {got:04X}",
            expected=expected,
            got=got,
        )


def _model(model: str | None) -> str | None:
    if model is not None and model not in _LAYOUT:
        raise Pms5003Error(f"unknown model {model!r}; known: {', '.join(MODELS)}", model=model)
    return model


def parse_frame(frame: bytes, *, model: str | None = None) -> dict[str, Value]:
    """Decode one data frame (or a command ack) into a dict; see the module docstring."""
    model = _model(model)
    frame = bytes(frame)
    if frame[:2] != START:
        raise Pms5003Error(f"bad start bytes {frame[:2].hex(' ')}: a frame starts with 42 4d")
    if len(frame) < 4:
        raise Pms5003Error(f"a {len(frame)}-byte frame is too short")
    length = int.from_bytes(frame[2:4], "big")
    if length == _ACK_LENGTH:
        return _parse_ack(frame)
    kind = _BY_LENGTH.get(length) if model is None else model
    if kind is None or _LAYOUT[kind][0] != length:
        raise Pms5003Error(
            f"length field {length} is not a {model or 'known'} frame's "
            f"({', '.join(str(n) for n in sorted(_BY_LENGTH))})",
            length=length,
        )
    if len(frame) != length + 4:
        raise Pms5003Error(
            f"frame is {len(frame)} bytes, its length field says {length + 4}", length=length
        )
    _check_sum(frame)
    names = _LAYOUT[kind][1]
    words = struct.unpack(f">{len(names)}H", frame[4:-2])
    out: dict[str, Value] = {"model": kind, "kind": "data"}
    for name, word in zip(names, words, strict=True):
        if name == "version_error":
            out["version"], out["error"] = word >> 8, word & 0xFF
        elif name == "temp":
            out[name] = (word - 0x10000 if word & 0x8000 else word) / _SCALE[name]
        elif name in _SCALE:
            out[name] = word / _SCALE[name]
        elif name:
            out[name] = word
    return out


def _parse_ack(frame: bytes) -> dict[str, Value]:
    if len(frame) != 8:
        raise Pms5003Error(f"an ack is 8 bytes, got {len(frame)}")
    _check_sum(frame)
    cmd, data = frame[4], frame[5]
    name = _COMMAND_NAMES.get((cmd, data), f"0x{cmd:02X}")
    return {"kind": "ack", "command": name, "cmd": cmd, "data": data}


def _word(name: str, value: float, scale: int = 1, signed: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Pms5003Error(f"{name} = {value!r} is not a number", field=name)
    raw = round(value * scale)
    low, high = (-0x8000, 0x7FFF) if signed else (0, 0xFFFF)
    if not low <= raw <= high:
        raise Pms5003Error(
            f"{name} = {value} does not fit a frame ({low / scale} .. {high / scale})",
            field=name,
        )
    return raw & 0xFFFF


def _is_byte(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 0xFF


def build_frame(
    *,
    model: str = "pms5003",
    pm1: float = 0,
    pm25: float = 0,
    pm10: float = 0,
    pm1_cf1: float | None = None,
    pm25_cf1: float | None = None,
    pm10_cf1: float | None = None,
    n0_3: float = 0,
    n0_5: float = 0,
    n1_0: float = 0,
    n2_5: float = 0,
    n5_0: float = 0,
    n10: float = 0,
    temp: float | None = None,
    rh: float | None = None,
    hcho: float | None = None,
    version: int = 0x97,
    error: int = 0,
) -> bytes:
    """A data frame as the sensor sends it. CF=1 values default to the atmospheric ones;
    values are rounded to the frame's resolution; a field the model does not carry, or a
    value out of range, raises ``Pms5003Error``."""
    if _model(model) is None:
        raise Pms5003Error("a model is needed to build a frame")
    values: dict[str, float | None] = {
        "pm1": pm1,
        "pm25": pm25,
        "pm10": pm10,
        "pm1_cf1": pm1 if pm1_cf1 is None else pm1_cf1,
        "pm25_cf1": pm25 if pm25_cf1 is None else pm25_cf1,
        "pm10_cf1": pm10 if pm10_cf1 is None else pm10_cf1,
        "n0_3": n0_3,
        "n0_5": n0_5,
        "n1_0": n1_0,
        "n2_5": n2_5,
        "n5_0": n5_0,
        "n10": n10,
        "temp": temp,
        "rh": rh,
        "hcho": hcho,
    }
    length, names = _LAYOUT[model]
    if not (_is_byte(version) and _is_byte(error)):
        raise Pms5003Error(f"version ({version!r}) and error ({error!r}) are single bytes")
    for name, value in values.items():
        if name not in names and value not in (None, 0):
            raise Pms5003Error(f"a {model} frame has no {name}", field=name)
    words = []
    for name in names:
        if name == "version_error":
            words.append(version << 8 | error)
        elif name:
            words.append(_word(name, values[name] or 0, _SCALE.get(name, 1), name == "temp"))
        else:
            words.append(0)
    body = START + struct.pack(f">H{len(words)}H", length, *words)
    return body + checksum(body).to_bytes(2, "big")


# -- commands -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    """A command sent to the sensor: ``name`` is one of ``COMMANDS``."""

    name: str
    cmd: int
    data: int


def build_command(name: str) -> bytes:
    """The 7-byte command: "active", "passive", "read", "sleep" or "wake"."""
    if name not in COMMANDS:
        raise Pms5003Error(f"unknown command {name!r}; known: {', '.join(COMMANDS)}")
    cmd, data = COMMANDS[name]
    body = START + bytes([cmd]) + data.to_bytes(2, "big")
    return body + checksum(body).to_bytes(2, "big")


def cmd_active() -> bytes:
    return build_command("active")


def cmd_passive() -> bytes:
    return build_command("passive")


def cmd_read() -> bytes:
    return build_command("read")


def cmd_sleep() -> bytes:
    return build_command("sleep")


def cmd_wake() -> bytes:
    return build_command("wake")


def parse_command(frame: bytes) -> Command:
    """What a 7-byte command frame asks for (the simulated sensor's side)."""
    frame = bytes(frame)
    if len(frame) != 7 or frame[:2] != START:
        raise Pms5003Error(f"a command is 7 bytes starting 42 4d, got {frame[:8].hex(' ')}")
    _check_sum(frame)
    cmd, data = frame[2], int.from_bytes(frame[3:5], "big")
    name = _COMMAND_NAMES.get((cmd, data))
    if name is None:
        raise Pms5003Error(f"unknown command {cmd:02X} with data {data:04X}", cmd=cmd)
    return Command(name, cmd, data)


def build_ack(name: str) -> bytes:
    """The 8-byte ack the sensor sends for "passive" and "sleep"."""
    if name not in ("passive", "sleep"):
        raise Pms5003Error(f"the sensor acks only passive and sleep, not {name!r}")
    cmd, data = COMMANDS[name]
    body = START + struct.pack(">HBB", _ACK_LENGTH, cmd, data)
    return body + checksum(body).to_bytes(2, "big")


# -- streams ------------------------------------------------------------------------------


class Pms5003Stream(FrameSplitter[dict[str, Value], Pms5003Error]):
    """Frames from the sensor's serial output: ``feed(chunk)`` returns decoded frames
    (data and acks) and errors, resynchronising after garbage; ``model`` as for
    ``parse_frame``."""

    def __init__(self, *, model: str | None = None, report_every: int = 4096) -> None:
        self.model = _model(model)
        lengths = set(_BY_LENGTH) if model is None else {_LAYOUT[model][0]}
        lengths.add(_ACK_LENGTH)

        def measure(buf: bytearray) -> int | None:
            if len(buf) < 4:
                return None
            length = int.from_bytes(buf[2:4], "big")
            if length not in lengths:
                raise Pms5003Error(f"length field {length} is not a frame's", length=length)
            return length + 4

        super().__init__(
            syncs=(START,),
            measure=measure,
            decode=self._decode,
            error=Pms5003Error,
            max_frame=40,
            report_every=report_every,
        )

    def _decode(self, frame: bytes) -> dict[str, Value]:
        return parse_frame(frame, model=self.model)


class CommandStream(FrameSplitter[Command, Pms5003Error]):
    """Commands arriving at a (simulated) sensor, resynchronising after garbage."""

    def __init__(self, *, report_every: int = 4096) -> None:
        def measure(buf: bytearray) -> int | None:
            if len(buf) < 3:
                return None
            if buf[2] not in (0xE1, 0xE2, 0xE4):
                raise Pms5003Error(f"unknown command byte {buf[2]:02X}")
            return 7

        super().__init__(
            syncs=(START,),
            measure=measure,
            decode=parse_command,
            error=Pms5003Error,
            max_frame=7,
            report_every=report_every,
        )

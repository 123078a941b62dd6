"""HJ 212 packets: parse, build, CRC, TCP stream splitting, multi-packet messages.

A frame is ``##`` + 4-digit data-segment length + data segment + 4 hex digits of CRC +
CR LF; the data segment is ``QN=..;ST=..;CN=..;PW=..;MN=..;Flag=..;[PNUM=..;PNO=..;]CP=&&..&&``.
The CRC is HJ 212's own (``reg = (reg >> 8) ^ byte``, then 8 shifts with 0xA001), not
Modbus CRC. ``parse`` accepts what real senders send (HJ/T 212-2005 packets without QN or
Flag, 14-digit QN, 17-digit DataTime, a trailing ``;`` before ``&&``, repeated fields,
lower-case CRC hex, no CR LF after a single frame) and rejects any frame whose length or
CRC is wrong. ``build`` writes the canonical form: upper-case CRC, CR LF, one group per
factor. Everything raises only ``Hj212Error`` (CRC mismatches ``Hj212CrcError``).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from decimal import Decimal

from protocols._framing import FrameSplitter
from protocols.errors import CodecError, CrcError
from protocols.hj212_codes import (
    CN,
    CODES_2005,
    DATA_CN,
    FACTOR_FOR_QUANTITY,
    FACTORS,
    NUMERIC_FIELDS,
    ST,
    DataFlag,
    ExeRtn,
    QnRtn,
)
from protocols.registers import modbus_crc16

__all__ = [
    "CN",
    "CODES_2005",
    "DATA_CN",
    "FACTORS",
    "FACTOR_FOR_QUANTITY",
    "MAX_SEGMENT",
    "NUMERIC_FIELDS",
    "ST",
    "DataFlag",
    "ExeRtn",
    "Hj212CrcError",
    "Hj212Error",
    "Hj212Reassembler",
    "Hj212Stream",
    "Packet",
    "QnRtn",
    "build",
    "build_split",
    "crc16",
    "parse",
    "reply_9011",
    "reply_9012",
    "reply_9013",
    "reply_9014",
    "segment_text",
    "split_cp",
]

MAX_SEGMENT = 1024  # bytes of data segment the standard allows in one frame
MAX_FRAME = 2 + 4 + 9999 + 4  # the largest frame a 4-digit length can announce (no CR LF)

FieldValue = float | str
CpValue = str | dict[str, FieldValue]


class Hj212Error(CodecError):
    """An HJ 212 frame or packet that cannot be accepted; the message says what is wrong."""


class Hj212CrcError(Hj212Error, CrcError):
    """The CRC in the frame does not match its data segment (``expected``, ``got``)."""


def _crc_table() -> tuple[int, ...]:
    table = []
    for i in range(256):
        reg = i
        for _ in range(8):
            reg = (reg >> 1) ^ 0xA001 if reg & 1 else reg >> 1
        table.append(reg)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc16(data: bytes) -> int:
    """HJ 212's CRC of ``data`` (the data segment): 0x2F80 for b"123456789", 0xFFFF for b""."""
    reg = 0xFFFF
    table = _CRC_TABLE
    for byte in data:
        reg = table[(reg >> 8) ^ byte]
    return reg


# -- the packet ---------------------------------------------------------------------------

_HEADER = ("QN", "ST", "CN", "PW", "MN", "Flag", "PNUM", "PNO")
_HEADER_BY_UPPER = {k.upper(): k for k in _HEADER}
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_FORBIDDEN = re.compile(r"[;,=&\x00-\x1f\x7f]")


def _stamp(text: str) -> datetime:
    """A 14-digit (YYYYMMDDhhmmss) or 17-digit (+ milliseconds) HJ 212 time, naive."""
    if len(text) not in (14, 17) or not text.isascii() or not text.isdigit():
        raise Hj212Error(f"bad DataTime {text!r}: expected 14 or 17 digits", value=text)
    y, mo, d, h, mi, s = (int(text[i : i + 2]) for i in range(2, 14, 2))
    try:
        return datetime(int(text[:2]) * 100 + y, mo, d, h, mi, s, int(text[14:] or 0) * 1000)
    except ValueError as exc:
        raise Hj212Error(f"bad DataTime {text!r}: {exc}", value=text) from exc


@dataclass(frozen=True)
class Packet:
    """One HJ 212 packet. ``cp`` maps factor code -> {field: value} (numeric fields as
    float, others as str) and holds top-level keys (``DataTime``...) as strings.
    ``segment`` is the data segment as received; it takes no part in equality."""

    qn: str | None = None
    st: str | None = None
    cn: str | None = None
    pw: str | None = None
    mn: str | None = None
    flag: int | None = None
    pnum: int | None = None
    pno: int | None = None
    cp: dict[str, CpValue] = field(default_factory=dict, hash=False)
    segment: str = field(default="", compare=False)
    # with ``parse(..., bad_values="skip")``: the numeric fields left out of ``cp`` because
    # their value was not a number, as (factor, field, value as sent)
    skipped: tuple[tuple[str, str, str], ...] = field(default=(), compare=False)

    @property
    def needs_reply(self) -> bool:
        """Flag bit A: the sender wants a reply (9014 for data, 9011/9012 for commands)."""
        return self.flag is not None and bool(self.flag & 1)

    @property
    def is_split(self) -> bool:
        """Flag bit D: this packet is one part (PNO of PNUM) of a longer message."""
        return self.flag is not None and bool(self.flag & 2)

    @property
    def version(self) -> int | None:
        """Flag bits V5..V0: 0 = HJ/T 212-2005, 1 = HJ 212-2017; None without a Flag."""
        return None if self.flag is None else self.flag >> 2

    @property
    def factors(self) -> dict[str, dict[str, FieldValue]]:
        """Only the factor entries of ``cp``."""
        return {k: v for k, v in self.cp.items() if isinstance(v, dict)}

    @property
    def fields(self) -> dict[str, str]:
        """Only the top-level entries of ``cp`` (``DataTime``, ``QnRtn``...)."""
        return {k: v for k, v in self.cp.items() if isinstance(v, str)}

    def value(self, factor: str, name: str = "Rtd") -> float | None:
        """A factor's numeric field, or None when the packet does not carry it."""
        got = self.factors.get(factor, {}).get(name)
        return got if isinstance(got, float) else None

    @property
    def data_time(self) -> datetime | None:
        """``DataTime`` read as UTC (airtrace's senders write UTC); None when absent.
        For loggers that send local time, use ``data_time_in(zone)``."""
        return self.data_time_in(UTC)

    def data_time_in(self, zone: tzinfo) -> datetime | None:
        """``DataTime`` read as local time in ``zone`` (e.g. UTC+8 for Chinese loggers),
        returned in UTC; None when absent."""
        text = self.cp.get("DataTime")
        if not isinstance(text, str):
            return None
        return _stamp(text).replace(tzinfo=zone).astimezone(UTC)


# -- parse --------------------------------------------------------------------------------


def parse(data: bytes | str, *, bad_values: str = "raise") -> Packet:
    """Parse one frame (``##`` + length + data segment + CRC, CR LF optional).

    A numeric field (``Rtd``, ``Avg``...) whose value is not a number raises, unless
    ``bad_values="skip"``: then that field is left out of ``cp`` and listed in
    ``Packet.skipped``, so a logger whose one channel sends ``--`` keeps the packet's other
    values (the frame and its CRC are sound; only that value is unusable)."""
    _check_bad_values(bad_values)
    if isinstance(data, str):
        try:
            raw = data.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise Hj212Error(f"text that cannot be encoded: {exc.reason}") from exc
    elif isinstance(data, bytes | bytearray | memoryview):
        raw = bytes(data)
    else:
        raise Hj212Error(f"expected bytes or str, got {type(data).__name__}")
    if raw.endswith(b"\r\n"):
        raw = raw[:-2]
    elif raw.endswith(b"\n"):
        raw = raw[:-1]
    return _parse_segment(_decode_text(_check_frame(raw)), skip=bad_values == "skip")


def _check_bad_values(bad_values: str) -> None:
    if bad_values not in ("raise", "skip"):
        raise ValueError(f"bad_values must be 'raise' or 'skip', not {bad_values!r}")


def _check_frame(frame: bytes) -> bytes:
    if not frame.startswith(b"##"):
        raise Hj212Error(f"bad header: a frame starts with '##', not {frame[:2]!r}")
    digits = frame[2:6]
    if len(digits) < 4 or not digits.isdigit():
        raise Hj212Error(f"bad length field {digits!r}: expected 4 decimal digits after '##'")
    length = int(digits)
    body = frame[6:]
    if len(body) != length + 4:
        raise Hj212Error(
            f"length mismatch: the header says {length} bytes of data segment, "
            f"the frame holds {len(body) - 4} (plus 4 CRC digits)",
            declared=length,
            actual=len(body) - 4,
        )
    segment, crc_text = body[:length], body[length:]
    if not re.fullmatch(rb"[0-9A-Fa-f]{4}", crc_text):
        raise Hj212Error(f"bad CRC field {crc_text!r}: expected 4 hex digits")
    got, expected = int(crc_text, 16), crc16(segment)
    if got != expected:
        hint = " (the sender used Modbus CRC, not HJ 212's)" if got == modbus_crc16(segment) else ""
        raise Hj212CrcError(
            f"bad CRC: the data segment gives {expected:04X}, the frame says "
            f"{crc_text.decode()}{hint}",
            expected=expected,
            got=got,
        )
    return segment


def _decode_text(segment: bytes) -> str:
    try:
        return segment.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        return segment.decode("gb18030")  # Chinese loggers that send non-ASCII use GBK
    except UnicodeDecodeError as exc:
        raise Hj212Error("the data segment is neither UTF-8 nor GB 18030 text") from exc


def _parse_segment(segment: str, *, skip: bool = False) -> Packet:
    at = segment.find("CP=&&")
    if at < 0:
        raise Hj212Error("missing CP: the data segment has no 'CP=&&'")
    if at and segment[at - 1] != ";":
        raise Hj212Error("CP must follow a ';'")
    if not segment.endswith("&&") or len(segment) < at + 7:
        raise Hj212Error("CP is not closed by '&&' at the end of the data segment")
    header: dict[str, str] = {}
    for item in segment[:at].split(";"):
        if not item:
            continue
        key, sep, value = item.partition("=")
        name = _HEADER_BY_UPPER.get(key.upper())
        if not sep or name is None:
            raise Hj212Error(f"unknown header field {item[:40]!r}", field=key)
        if name in header:
            raise Hj212Error(f"header field {name} appears twice", field=name)
        header[name] = value
    ints = {k: _header_int(k, header.get(k)) for k in ("Flag", "PNUM", "PNO")}
    flag, pnum, pno = ints["Flag"], ints["PNUM"], ints["PNO"]
    if flag is not None and flag > 255:
        raise Hj212Error(f"Flag={flag} is outside 0..255", field="Flag")
    if (pnum is None) != (pno is None):
        raise Hj212Error("PNUM and PNO come together or not at all")
    if pnum is not None and pno is not None and not 1 <= pno <= pnum:
        raise Hj212Error(f"PNO={pno} is outside 1..PNUM={pnum}", field="PNO")
    texts = {k: header.get(k) or None for k in ("QN", "ST", "CN", "PW", "MN")}
    skipped: list[tuple[str, str, str]] | None = [] if skip else None
    cp = _parse_cp(segment[at + 5 : -2], skipped)
    return Packet(
        qn=texts["QN"],
        st=texts["ST"],
        cn=texts["CN"],
        pw=texts["PW"],
        mn=texts["MN"],
        flag=flag,
        pnum=pnum,
        pno=pno,
        cp=cp,
        segment=segment,
        skipped=tuple(skipped or ()),
    )


def _header_int(name: str, text: str | None) -> int | None:
    if not text:
        return None
    if not (text.isascii() and text.isdigit()) or len(text) > 4:
        raise Hj212Error(f"{name}={text[:20]!r} is not a small whole number", field=name)
    value = int(text)
    if name != "Flag" and value < 1:
        raise Hj212Error(f"{name}={value} must be at least 1", field=name)
    return value


def _parse_cp(text: str, skipped: list[tuple[str, str, str]] | None = None) -> dict[str, CpValue]:
    cp: dict[str, CpValue] = {}
    for group in text.split(";"):
        for item in group.split(","):
            if not item:
                continue  # a trailing ';' or ',' (seen in real traffic)
            key, sep, value = item.partition("=")
            code, dash, name = key.partition("-")
            if not sep or not key or (dash and not (code and name)):
                raise Hj212Error(f"bad CP item {item[:40]!r}: expected key=value")
            if not dash:
                if isinstance(cp.get(key), dict):
                    raise Hj212Error(f"CP key {key!r} is both a factor and a field")
                if key == "DataTime":
                    _stamp(value)
                cp[key] = value
                continue
            entry = cp.setdefault(code, {})
            if isinstance(entry, str):
                raise Hj212Error(f"CP key {code!r} is both a field and a factor")
            try:
                entry[name] = _field_value(code, name, value)  # a repeated field: the last wins
            except Hj212Error:
                if skipped is None:
                    raise
                entry.pop(name, None)
                skipped.append((code, name, value))
    return cp


def _field_value(code: str, name: str, value: str) -> FieldValue:
    if name not in NUMERIC_FIELDS:
        return value
    if _NUMBER.fullmatch(value):
        number = float(value)
        if math.isfinite(number):
            return number
    raise Hj212Error(f"{code}-{name}={value[:20]!r} is not a number", factor=code, field=name)


# -- build --------------------------------------------------------------------------------


def build(
    st: str | int | Packet | None,
    cn: str | int | None = None,
    pw: str | None = None,
    mn: str | None = None,
    cp: Mapping[str, object] | str | None = None,
    *,
    qn: str | None = None,
    flag: int | None = None,
    pnum: int | None = None,
    pno: int | None = None,
) -> bytes:
    """One frame other systems accept: upper-case CRC, CR LF. ``cp`` is a mapping shaped
    like ``Packet.cp`` or a raw CP string; ``build(packet)`` rebuilds a parsed packet.
    None omits a header field. Raises ``Hj212Error`` for anything that would break the
    framing (``; , = &`` or control characters in a key or value, a segment over 1024 bytes)."""
    if isinstance(st, Packet):
        if any(x is not None for x in (cn, pw, mn, cp, qn, flag, pnum, pno)):
            raise Hj212Error("build(packet) takes no other arguments")
        p = st
        return build(p.st, p.cn, p.pw, p.mn, p.cp, qn=p.qn, flag=p.flag, pnum=p.pnum, pno=p.pno)
    segment = segment_text(st, cn, pw, mn, cp, qn=qn, flag=flag, pnum=pnum, pno=pno)
    return _frame(segment)


def _frame(segment: str) -> bytes:
    data = segment.encode("utf-8")
    if len(data) > MAX_SEGMENT:
        raise Hj212Error(
            f"data segment of {len(data)} bytes is over the {MAX_SEGMENT} allowed; "
            "use build_split()",
            size=len(data),
        )
    return b"##%04d%s%04X\r\n" % (len(data), data, crc16(data))


def segment_text(
    st: str | int | None,
    cn: str | int | None,
    pw: str | None,
    mn: str | None,
    cp: Mapping[str, object] | str | None = None,
    *,
    qn: str | None = None,
    flag: int | None = None,
    pnum: int | None = None,
    pno: int | None = None,
) -> str:
    """The data segment ``build`` frames (no length limit: a joined split message fits)."""
    if flag is not None and (isinstance(flag, bool) or not 0 <= flag <= 255):
        raise Hj212Error(f"Flag={flag!r} must be an int in 0..255", field="Flag")
    if (pnum is None) != (pno is None):
        raise Hj212Error("give PNUM and PNO together, or neither")
    if pnum is not None and pno is not None:
        if not 1 <= pno <= pnum <= 9999:
            raise Hj212Error(f"need 1 <= PNO ({pno}) <= PNUM ({pnum}) <= 9999", field="PNO")
        if flag is None or not flag & 2:
            raise Hj212Error("a split packet (PNUM/PNO) needs a Flag with bit D (2) set")
    header = {"QN": qn, "ST": st, "CN": cn, "PW": pw, "MN": mn, "Flag": flag}
    header |= {"PNUM": pnum, "PNO": pno}
    parts = []
    for key, value in header.items():
        if value is None:
            continue
        text = str(value)
        if isinstance(value, bool) or not text or _FORBIDDEN.search(text):
            raise Hj212Error(f"bad {key} {value!r}: empty or contains ; , = & or a control char")
        parts.append(f"{key}={text}")
    parts.append(f"CP=&&{_render_cp(cp)}&&")
    return ";".join(parts)


def _render_cp(cp: Mapping[str, object] | str | None) -> str:
    if cp is None:
        return ""
    if isinstance(cp, str):
        if "&" in cp or re.search(r"[\x00-\x1f\x7f]", cp):
            raise Hj212Error("a raw CP string may not contain '&' or control characters")
        _parse_cp(cp)
        return cp
    return ";".join(_cp_groups(cp))


def _cp_groups(cp: Mapping[str, object]) -> list[str]:
    groups = []
    for key, value in cp.items():
        _check_key(key)
        if isinstance(value, Mapping):
            if not value:
                raise Hj212Error(f"factor {key} has no fields", factor=key)
            items = []
            for name, v in value.items():
                _check_key(name)
                items.append(f"{key}-{name}={_render_value(v, name in NUMERIC_FIELDS, name)}")
            groups.append(",".join(items))
        else:
            text = _render_value(value, False, key)
            if key == "DataTime":
                _stamp(text)
            groups.append(f"{key}={text}")
    return groups


def _check_key(key: object) -> None:
    if not isinstance(key, str) or not key or _FORBIDDEN.search(key) or "-" in key:
        raise Hj212Error(f"bad CP key {key!r}: empty or contains ; , = & - or a control char")


def _render_value(value: object, numeric: bool, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise Hj212Error(f"{where}: cannot send a {type(value).__name__}", field=where)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise Hj212Error(f"{where}: {value} is not a finite number", field=where)
        if value.is_integer():
            return str(int(value))
        return format(Decimal(repr(value)), "f")  # shortest round-trip digits, no exponent
    if _FORBIDDEN.search(value) or (numeric and not _NUMBER.fullmatch(value)):
        raise Hj212Error(f"{where}: bad value {value[:20]!r}", field=where)
    return value


# -- replies ------------------------------------------------------------------------------


def _reply(packet: Packet, cn: str, cp: str, flag: int) -> bytes:
    return build("91", cn, packet.pw, packet.mn, cp, qn=packet.qn, flag=flag)


def reply_9014(packet: Packet, *, flag: int = 4) -> bytes:
    """The platform's data ACK: ST=91, CN=9014, the packet's QN/PW/MN, Flag=4, CP=&&&&."""
    return _reply(packet, "9014", "", flag)


def reply_9011(packet: Packet, qn_rtn: int = QnRtn.READY, *, flag: int = 4) -> bytes:
    """The answer to a request: ``QnRtn`` (1 = ready to execute; see ``QnRtn``)."""
    return _reply(packet, "9011", f"QnRtn={int(qn_rtn)}", flag)


def reply_9012(packet: Packet, exe_rtn: int = ExeRtn.SUCCESS, *, flag: int = 4) -> bytes:
    """The execution result of a request: ``ExeRtn`` (1 = success; see ``ExeRtn``)."""
    return _reply(packet, "9012", f"ExeRtn={int(exe_rtn)}", flag)


def reply_9013(packet: Packet, *, flag: int = 4) -> bytes:
    """The notification response."""
    return _reply(packet, "9013", "", flag)


# -- long messages: PNUM/PNO --------------------------------------------------------------


def split_cp(cp: Mapping[str, object], budget: int) -> list[dict[str, object]]:
    """Share a CP out over parts whose CP text fits ``budget`` bytes. Top-level keys
    (``DataTime``...) go into every part; a factor's fields are never split apart."""
    top = {k: v for k, v in cp.items() if not isinstance(v, Mapping)}
    base = len(";".join(_cp_groups(top)).encode())
    parts: list[dict[str, object]] = []
    size = 0  # CP bytes of the open part (0: none open)
    for key, value in cp.items():
        if not isinstance(value, Mapping):
            continue
        group = len(_cp_groups({key: value})[0].encode())
        alone = base + (1 if base else 0) + group
        if alone > budget:
            raise Hj212Error(f"factor {key} alone does not fit in {budget} bytes", factor=key)
        if not size or size + 1 + group > budget:
            parts.append(dict(top))
            size = alone
        else:
            size += 1 + group
        parts[-1][key] = value
    return parts or [dict(top)]


def build_split(
    st: str | int | None,
    cn: str | int | None,
    pw: str | None,
    mn: str | None,
    cp: Mapping[str, object],
    *,
    qn: str | None = None,
    flag: int = 4,
    max_segment: int = MAX_SEGMENT,
) -> list[bytes]:
    """A CP too long for one frame as several frames sharing one QN, each with Flag bit D,
    PNUM and PNO. A CP that fits is one ordinary frame."""
    whole = segment_text(st, cn, pw, mn, cp, qn=qn, flag=flag)
    if len(whole.encode()) <= max_segment:
        return [_frame(whole)]
    flag |= 2
    for digits in (1, 2, 3, 4):
        most = 10**digits - 1
        empty = segment_text(st, cn, pw, mn, "", qn=qn, flag=flag, pnum=most, pno=most)
        parts = split_cp(cp, max_segment - len(empty.encode()))
        if len(parts) <= most:
            break
    n = len(parts)
    return [
        build(st, cn, pw, mn, part, qn=qn, flag=flag, pnum=n, pno=i)
        for i, part in enumerate(parts, start=1)
    ]


class Hj212Reassembler:
    """Join the parts of split messages (Flag bit D, PNUM/PNO) back into one packet.

    ``add`` returns the packet itself when it is not split, the joined packet when its
    last missing part arrives, else None. At most ``max_pending`` messages wait for parts;
    beyond that the oldest is dropped and counted in ``dropped``."""

    def __init__(self, *, max_pending: int = 64) -> None:
        self.max_pending = max_pending
        self.dropped = 0
        self._pending: dict[tuple[object, ...], dict[int, Packet]] = {}

    def add(self, packet: Packet) -> Packet | None:
        if packet.pnum is None or packet.pno is None:
            return packet
        key = (packet.mn, packet.qn, packet.st, packet.cn, packet.pw, packet.pnum)
        parts = self._pending.pop(key, {})
        parts[packet.pno] = packet
        if len(parts) == packet.pnum:
            return _join([parts[i] for i in sorted(parts)])
        self._pending[key] = parts  # re-inserted: the most recently touched goes last
        while len(self._pending) > self.max_pending:
            del self._pending[next(iter(self._pending))]
            self.dropped += 1
        return None

    @property
    def pending(self) -> int:
        return len(self._pending)


def _join(parts: list[Packet]) -> Packet:
    cp: dict[str, CpValue] = {}
    for part in parts:
        for key, value in part.cp.items():
            if isinstance(value, dict):
                entry = cp.setdefault(key, {})
                if isinstance(entry, dict):
                    entry.update(value)
            else:
                cp[key] = value
    first = parts[0]
    flag = None if first.flag is None else first.flag & ~2
    segment = segment_text(first.st, first.cn, first.pw, first.mn, cp, qn=first.qn, flag=flag)
    skipped = tuple(x for part in parts for x in part.skipped)
    return Packet(
        first.qn, first.st, first.cn, first.pw, first.mn, flag, None, None, cp, segment, skipped
    )


# -- TCP stream ---------------------------------------------------------------------------


def _measure(buf: bytearray) -> int | None:
    digits = bytes(buf[2:6])
    if digits and not digits.isdigit():
        raise Hj212Error(f"bad length field {digits!r} after '##'")
    if len(digits) < 4:
        return None
    total = 10 + int(digits)
    newline = buf.find(b"\n", 6, total)
    if newline >= 0:
        raise Hj212Error(
            f"length mismatch: the header says {int(digits)} bytes of data segment, "
            f"but the line ends after {newline - 6}",
            declared=int(digits),
        )
    return total


class Hj212Stream(FrameSplitter[Packet, Hj212Error]):
    """Packets from a TCP byte stream: ``feed(chunk)`` returns the packets and errors
    (bad frames, skipped garbage) it completed, in order; frames may be split across
    chunks or coalesced; CR LF between frames is optional. The buffer is bounded by the
    largest frame a length field can announce."""

    def __init__(self, *, report_every: int = 4096, bad_values: str = "raise") -> None:
        _check_bad_values(bad_values)  # at construction, not at the first frame
        super().__init__(
            syncs=(b"##",),
            measure=_measure,
            decode=functools.partial(parse, bad_values=bad_values),
            error=Hj212Error,
            max_frame=MAX_FRAME,
            ignore=b"\r\n",
            report_every=report_every,
        )

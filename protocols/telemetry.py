"""Gateway <-> central service messages on MQTT (DESIGN 4.2): topics, SenML packs, status,
commands, acks and the custody watermark. Pure: bytes in, typed objects out.

Topics (``{station}`` is the station id)::

    airtrace/v1/{station}/up/telemetry   QoS 1, a SenML pack (RFC 8428, JSON)
    airtrace/v1/{station}/up/status      retained, online/offline (offline is the last will)
    airtrace/v1/{station}/up/ack         results of commands
    airtrace/v1/{station}/down/cmd       commands
    airtrace/v1/{station}/down/stored    retained custody watermark {"upto": N, "epoch": E}

A telemetry pack is a JSON array of SenML records. The first carries the base name
``bn = "urn:airtrace:{station}:"``, the base time ``bt`` (epoch seconds), ``seq`` (the outbox
id of the first reading), ``epoch`` (the outbox's random id) and optionally ``floor`` (every
id below it has left the gateway's outbox for good: the central service counts whatever of
those it lacks as lost instead of waiting for it). Every record carries ``n`` (quantity),
``u`` (unit), ``v`` (calibrated value; absent when the reading is a fault without a value),
``t`` (seconds relative to ``bt``) and the extension fields ``raw``, ``q`` (one-letter data
flag, HJ 212 meanings), ``cal`` (calibration version) and ``id`` (outbox id); optionally
``sensor`` (the station's sensor name) and ``why`` (the reason for a flag other than N).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice, repeat
from operator import itemgetter
from typing import Any, Final

from protocols.errors import CodecError

PREFIX: Final = "airtrace/v1"
UP_TELEMETRY: Final = "up/telemetry"
UP_STATUS: Final = "up/status"
UP_ACK: Final = "up/ack"
DOWN_CMD: Final = "down/cmd"
DOWN_STORED: Final = "down/stored"
KINDS: Final = (UP_TELEMETRY, UP_STATUS, UP_ACK, DOWN_CMD, DOWN_STORED)

#: what the central service subscribes to (prefix with ``$share/<group>/`` to share it)
UP_FILTER: Final = f"{PREFIX}/+/up/#"

#: HJ 212 data flags: N normal, S set value (both valid), F stopped, M maintenance,
#: D fault, C calibration, T over range, B communication fault, H too few samples.
FLAGS: Final = frozenset("NSFMDCTBH")
VALID_FLAGS: Final = frozenset("NS")

COMMANDS: Final = frozenset(
    {"set_calibration", "set_interval", "actuate", "alert", "ping", "set_config"}
)

MAX_PACK_BYTES: Final = 4 * 1024 * 1024
MAX_RECORDS: Final = 50_000
DEFAULT_EPOCH: Final = ""
_SENML_ABSOLUTE: Final = 2**28  # RFC 8428: times below this are relative to "now"

_STATION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,63}$")
_EPOCH_RE = re.compile(r"^[A-Za-z0-9_-]{0,64}$")
_BASE_LABELS = frozenset({"bn", "bt", "bu", "bv", "bs", "bver"})
_KNOWN_LABELS = (
    frozenset(
        {
            "n",
            "u",
            "v",
            "vs",
            "vb",
            "vd",
            "s",
            "t",
            "ut",
            "raw",
            "q",
            "cal",
            "id",
            "sensor",
            "why",
            "seq",
            "epoch",
            "floor",
        }
    )
    | _BASE_LABELS
)


class TelemetryError(CodecError):
    """A message that does not decode under DESIGN 4.2; the message says what is wrong."""


# --------------------------------------------------------------------------- topics


def check_station(station: str) -> str:
    """Return ``station`` if it is a valid station id (a single MQTT topic level)."""
    if not isinstance(station, str) or not _STATION_RE.match(station):
        raise TelemetryError(
            f"bad station id {station!r}: 1-64 of A-Z a-z 0-9 . _ -, "
            "starting with a letter or digit",
            station=station,
        )
    return station


def topic(station: str, kind: str) -> str:
    """``topic("GX-M-001", UP_TELEMETRY)`` -> ``airtrace/v1/GX-M-001/up/telemetry``."""
    if kind not in KINDS:
        raise TelemetryError(f"unknown topic kind {kind!r}; one of {', '.join(KINDS)}")
    return f"{PREFIX}/{check_station(station)}/{kind}"


@dataclass(frozen=True)
class TopicRef:
    station: str
    kind: str  # one of KINDS


def parse_topic(name: str) -> TopicRef:
    """Split an airtrace topic into station and kind; a ``$share/<group>/`` prefix is ignored."""
    parts = name.split("/")
    if len(parts) >= 2 and parts[0] == "$share":
        parts = parts[2:]
    if len(parts) != 5 or "/".join(parts[:2]) != PREFIX:
        raise TelemetryError(f"not an airtrace topic: {name!r}")
    kind = "/".join(parts[3:])
    if kind not in KINDS:
        raise TelemetryError(f"unknown topic kind {kind!r} in {name!r}")
    return TopicRef(check_station(parts[2]), kind)


# --------------------------------------------------------------------------- JSON helpers


def _reject_constant(name: str) -> Any:
    raise TelemetryError(f"non-finite number {name} is not valid JSON")


def _loads(payload: bytes | str, what: str) -> Any:
    if isinstance(payload, bytes | bytearray | memoryview):
        if len(payload) > MAX_PACK_BYTES:
            raise TelemetryError(f"{what} too large: {len(payload)} bytes > {MAX_PACK_BYTES}")
        try:
            text = bytes(payload).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise TelemetryError(f"{what} is not UTF-8: {exc.reason} at byte {exc.start}") from None
    elif isinstance(payload, str):
        text = payload
    else:
        raise TelemetryError(f"{what} must be bytes or str, not {type(payload).__name__}")
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except TelemetryError:
        raise
    except (ValueError, RecursionError) as exc:
        raise TelemetryError(f"{what} is not JSON: {exc}") from None


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TelemetryError(f"{where} must be a number, got {value!r}")
    f = float(value)
    if not math.isfinite(f):
        raise TelemetryError(f"{where} must be finite, got {value!r}")
    return f


def _opt_number(value: Any, where: str) -> float | None:
    return None if value is None else _number(value, where)


def _int(value: Any, where: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise TelemetryError(f"{where} must be an integer, got {value!r}")
    if value < minimum:
        raise TelemetryError(f"{where} must be >= {minimum}, got {value}")
    return int(value)


def _str(value: Any, where: str, pattern: re.Pattern[str] | None = None) -> str:
    if not isinstance(value, str):
        raise TelemetryError(f"{where} must be a string, got {value!r}")
    if pattern is not None and not pattern.match(value):
        raise TelemetryError(f"{where} has a bad value {value!r}")
    return value


# --------------------------------------------------------------------------- telemetry


@dataclass(frozen=True)
class Record:
    """One reading as it crosses the wire."""

    id: int  # outbox id, >= 1, unique per (station, epoch)
    quantity: str
    unit: str
    ts: float  # epoch seconds, UTC
    value: float | None  # calibrated; None for a fault reading without a value
    raw: float | None = None  # engineering units before calibration
    flag: str = "N"
    cal: int | str = 0  # calibration version that produced `value`
    sensor: str | None = None
    why: str | None = None  # reason for a flag other than N

    def __post_init__(self) -> None:
        _int(self.id, "record id", 1)
        _str(self.quantity, "quantity n", _NAME_RE)
        _str(self.unit, "unit u")
        _number(self.ts, "time")
        _opt_number(self.value, "value v")
        _opt_number(self.raw, "raw")
        if self.flag not in FLAGS:
            raise TelemetryError(
                f"flag q must be one of {''.join(sorted(FLAGS))}, got {self.flag!r}"
            )
        if self.value is None and self.flag in VALID_FLAGS:
            raise TelemetryError(f"record {self.id}: a valid ({self.flag}) reading needs a value")
        if isinstance(self.cal, bool) or not isinstance(self.cal, int | str):
            raise TelemetryError(f"cal must be an integer or a string, got {self.cal!r}")

    @property
    def valid(self) -> bool:
        return self.flag in VALID_FLAGS


@dataclass(frozen=True)
class Pack:
    """A batch of one station's readings, ids increasing, as published on up/telemetry."""

    station: str
    records: tuple[Record, ...]
    epoch: str = DEFAULT_EPOCH
    floor: int | None = None  # ids below this are gone from the gateway for good

    def __post_init__(self) -> None:
        check_station(self.station)
        _str(self.epoch, "epoch", _EPOCH_RE)
        if not self.records:
            raise TelemetryError("a pack needs at least one record")
        if self.floor is not None:
            _int(self.floor, "floor", 1)
        ids = [r.id for r in self.records]
        if len(set(ids)) != len(ids):
            raise TelemetryError("record ids repeat within the pack")

    @property
    def seq(self) -> int:
        return self.records[0].id

    @property
    def ids(self) -> list[int]:
        return [r.id for r in self.records]


def base_name(station: str) -> str:
    return f"urn:airtrace:{check_station(station)}:"


def encode_pack(pack: Pack) -> bytes:
    """SenML JSON for a pack; times to the millisecond relative to the first reading."""
    bt = pack.records[0].ts
    out: list[dict[str, Any]] = []
    for i, r in enumerate(pack.records):
        rec: dict[str, Any] = {}
        if i == 0:
            rec["bn"] = base_name(pack.station)
            rec["bt"] = bt
            rec["seq"] = r.id
            rec["epoch"] = pack.epoch
            if pack.floor is not None:
                rec["floor"] = pack.floor
        rec["n"] = r.quantity
        rec["u"] = r.unit
        if r.value is not None:
            rec["v"] = r.value
        rec["t"] = round(r.ts - bt, 3)
        if r.raw is not None:
            rec["raw"] = r.raw
        rec["q"] = r.flag
        rec["cal"] = r.cal
        rec["id"] = r.id
        if r.sensor is not None:
            rec["sensor"] = r.sensor
        if r.why is not None:
            rec["why"] = r.why
        out.append(rec)
    return _dumps(out)


def _station_from_bn(bn: str) -> str:
    if not (bn.startswith("urn:airtrace:") and bn.endswith(":")):
        raise TelemetryError(f"base name bn must be 'urn:airtrace:{{station}}:', got {bn!r}")
    return check_station(bn[len("urn:airtrace:") : -1])


def decode_pack(payload: bytes | str, station: str | None = None) -> Pack:
    """Decode and validate a SenML pack.

    ``station`` is the one named by the topic; a pack whose base name names another station
    is refused (a gateway may only speak for itself). Record ids default to ``seq`` + index.
    Labels ending in ``_`` that are not understood make the pack invalid (RFC 8428).
    """
    data = _loads(payload, "telemetry pack")
    if not isinstance(data, list) or not data:
        raise TelemetryError("telemetry pack must be a non-empty JSON array of records")
    if len(data) > MAX_RECORDS:
        raise TelemetryError(f"telemetry pack has {len(data)} records > {MAX_RECORDS}")
    first = data[0]
    if not isinstance(first, dict):
        raise TelemetryError("record 0 is not a JSON object")
    bn = first.get("bn")
    if bn is None:
        if station is None:
            raise TelemetryError("record 0 has no base name bn and no station is known")
        pack_station = check_station(station)
    else:
        pack_station = _station_from_bn(_str(bn, "bn"))
        if station is not None and pack_station != station:
            raise TelemetryError(
                f"pack names station {pack_station!r} but arrived on the topic of {station!r}",
                station=station,
            )
    epoch = _str(first.get("epoch", DEFAULT_EPOCH), "epoch", _EPOCH_RE)
    seq = first.get("seq")
    seq_int = None if seq is None else _int(seq, "seq", 1)
    floor = first.get("floor")
    floor_int = None if floor is None else _int(floor, "floor", 1)

    bt = 0.0
    bu: str | None = None
    bv = 0.0
    records: list[Record] = []
    for i, raw_rec in enumerate(data):
        if not isinstance(raw_rec, dict):
            raise TelemetryError(f"record {i} is not a JSON object")
        for label in raw_rec:
            if label.endswith("_") and label not in _KNOWN_LABELS:
                raise TelemetryError(
                    f"record {i}: must-understand label {label!r} is not supported"
                )
        if i > 0 and "bn" in raw_rec and raw_rec["bn"] != bn:
            raise TelemetryError(f"record {i}: a pack may carry one station only")
        if "bt" in raw_rec:
            bt = _number(raw_rec["bt"], f"record {i} bt")
        if "bu" in raw_rec:
            bu = _str(raw_rec["bu"], f"record {i} bu")
        if "bv" in raw_rec:
            bv = _number(raw_rec["bv"], f"record {i} bv")
        records.append(_decode_record(raw_rec, i, bt, bu, bv, seq_int))
    return Pack(station=pack_station, records=tuple(records), epoch=epoch, floor=floor_int)


def _decode_record(
    rec: Mapping[str, Any], i: int, bt: float, bu: str | None, bv: float, seq: int | None
) -> Record:
    where = f"record {i}"
    if "n" not in rec:
        raise TelemetryError(f"{where} has no name n")
    quantity = _str(rec["n"], f"{where} n", _NAME_RE)
    unit = rec.get("u", bu)
    if unit is None:
        raise TelemetryError(f"{where} ({quantity}) has no unit u and the pack no bu")
    unit = _str(unit, f"{where} u")
    ts = bt + _number(rec.get("t", 0), f"{where} t")
    if ts < _SENML_ABSOLUTE:
        raise TelemetryError(f"{where}: time {ts} is relative; give bt as absolute epoch seconds")
    for other in ("vs", "vb", "vd", "s"):
        if other in rec:
            raise TelemetryError(f"{where}: only numeric values v are accepted, not {other}")
    value = None if "v" not in rec else bv + _number(rec["v"], f"{where} v")
    raw = _opt_number(rec.get("raw"), f"{where} raw")
    flag = rec.get("q", "N")
    if not isinstance(flag, str) or flag not in FLAGS:
        raise TelemetryError(f"{where} q must be one of {''.join(sorted(FLAGS))}, got {flag!r}")
    cal = rec.get("cal", 0)
    if isinstance(cal, bool) or not isinstance(cal, int | str):
        raise TelemetryError(f"{where} cal must be an integer or a string, got {cal!r}")
    if "id" in rec:
        rid = _int(rec["id"], f"{where} id", 1)
    elif seq is not None:
        rid = seq + i
    else:
        raise TelemetryError(f"{where} has no id and the pack no seq")
    sensor = rec.get("sensor")
    if sensor is not None:
        sensor = _str(sensor, f"{where} sensor", _NAME_RE)
    why = rec.get("why")
    if why is not None:
        why = _str(why, f"{where} why")
    if value is None and flag in VALID_FLAGS:
        raise TelemetryError(f"{where} ({quantity}) flagged {flag} has no value v")
    return Record(
        id=rid,
        quantity=quantity,
        unit=unit,
        ts=ts,
        value=value,
        raw=raw,
        flag=flag,
        cal=cal,
        sensor=sensor,
        why=why,
    )


# --------------------------------------------------------------------------- rows

#: one reading as the central store takes it:
#: (id, quantity, ts, value, raw, unit, q, cal, sensor, why) — ``cal`` as its string
Row = tuple[int, str, float, float | None, float | None, str, str, str, str | None, str | None]


@dataclass(frozen=True)
class PackRows:
    """A telemetry pack flattened into plain row tuples, ids ascending (``decode_rows``)."""

    station: str
    epoch: str
    rows: Sequence[Row]
    floor: int | None = None

    @classmethod
    def from_pack(cls, pack: Pack) -> PackRows:
        """The rows of a decoded ``Pack`` (the slow path, and the judge of the fast one)."""
        rows = [
            (r.id, r.quantity, r.ts, r.value, r.raw, r.unit, r.flag, str(r.cal), r.sensor, r.why)
            for r in pack.records
        ]
        rows.sort(key=lambda row: row[0])
        return cls(station=pack.station, epoch=pack.epoch, rows=rows, floor=pack.floor)


def decode_rows(payload: bytes | str, station: str) -> PackRows:
    """Decode a telemetry pack published on ``station``'s topic into row tuples, fast.

    The same contract as ``PackRows.from_pack(decode_pack(payload, station))`` — the same
    rows for what that accepts, ``TelemetryError`` with its reason for what it refuses — at
    a fraction of the cost: a pack in the canonical shape ``encode_pack`` writes (base
    fields in the first record only, the known labels, plain JSON types) is checked column
    by column, without a ``Record`` per reading; anything else, and anything the fast path
    doubts, is decided by ``decode_pack``. Hypothesis holds the two to the same answers.
    """
    try:
        return _fast_rows(payload, station)
    except (_Doubt, ValueError, TypeError, KeyError, OverflowError, RecursionError):
        return PackRows.from_pack(decode_pack(payload, station))


_FIRST_ONLY: Final = frozenset({"bn", "bt", "seq", "epoch", "floor"})
_RECORD: Final = frozenset({"n", "u", "v", "t", "raw", "q", "cal", "id", "sensor", "why"})
_FIRST: Final = _RECORD | _FIRST_ONLY
_NUMBER: Final = frozenset({int, float})
_MISSING: Final = object()
_get = dict.get
_n = itemgetter("n")
_u = itemgetter("u")
_names: set[str] = set()  # names that matched _NAME_RE (bounded)


class _Doubt(Exception):
    """The fast path will not decide: ``decode_pack`` does."""


def _no_constant(_: str) -> Any:
    raise _Doubt


def _check_names(names: Iterable[Any], optional: bool = False) -> None:
    for x in names:
        if x in _names or (optional and x is None):
            continue
        if type(x) is not str or not _NAME_RE.match(x):
            raise _Doubt
        if len(_names) < 10_000:
            _names.add(x)


def _column(data: list[Any], label: str, default: Any) -> list[Any]:
    return list(map(_get, data, repeat(label), repeat(default)))


def _finite(xs: Iterable[float]) -> None:
    # a sum of finite floats is finite (or overflows: a harmless doubt); any inf or nan
    # among them makes it non-finite
    if not math.isfinite(sum(xs)):
        raise _Doubt


def _fast_rows(payload: bytes | str, station: str) -> PackRows:
    if isinstance(payload, bytes):
        if len(payload) > MAX_PACK_BYTES:
            raise _Doubt
        text = payload.decode("utf-8")
    elif isinstance(payload, str):
        text = payload
    else:
        raise _Doubt
    data = json.loads(text, parse_constant=_no_constant)
    if type(data) is not list or not data or len(data) > MAX_RECORDS:
        raise _Doubt
    if set(map(type, data)) != {dict}:
        raise _Doubt
    first = data[0]
    if not first.keys() <= _FIRST or not _RECORD.issuperset(set().union(*data[1:])):
        raise _Doubt
    if first.get("bn") != base_name(station):
        raise _Doubt
    bt = first.get("bt", 0.0)
    if type(bt) not in _NUMBER:
        raise _Doubt
    bt = float(bt)
    epoch = first.get("epoch", DEFAULT_EPOCH)
    if type(epoch) is not str or not _EPOCH_RE.match(epoch):
        raise _Doubt
    seq = first.get("seq")
    if seq is not None and (type(seq) is not int or seq < 1):
        raise _Doubt
    floor = first.get("floor")
    if floor is not None and (type(floor) is not int or floor < 1):
        raise _Doubt

    quantities = list(map(_n, data))
    _check_names(set(quantities))
    units = list(map(_u, data))
    if set(map(type, set(units))) != {str}:
        raise _Doubt
    rel = _column(data, "t", 0)
    if not set(map(type, rel)) <= _NUMBER:
        raise _Doubt
    ts = list(map(bt.__add__, rel))
    _finite(ts)
    if min(ts) < _SENML_ABSOLUTE:
        raise _Doubt
    flags = _column(data, "q", "N")
    if not set(flags) <= FLAGS:
        raise _Doubt
    vs = _column(data, "v", _MISSING)
    kinds = set(map(type, vs))
    if kinds <= _NUMBER:
        values: list[float | None] = list(map((0.0).__add__, vs))  # 0.0 + v, as decode_pack
        _finite(values)  # type: ignore[arg-type]
    elif kinds <= {int, float, object}:
        values = [None if v is _MISSING else 0.0 + v for v in vs]
        _finite([v for v in values if v is not None])
        if any(v is None and q in VALID_FLAGS for v, q in zip(values, flags, strict=True)):
            raise _Doubt
    else:
        raise _Doubt
    raws = _column(data, "raw", None)
    kinds = set(map(type, raws))
    if kinds <= {float, type(None)}:
        pass
    elif kinds <= {int, float, type(None)}:
        raws = [float(r) if type(r) is int else r for r in raws]
    else:
        raise _Doubt
    _finite([r for r in raws if r is not None] if type(None) in kinds else raws)
    cals = _column(data, "cal", 0)
    if not set(map(type, cals)) <= {int, str}:  # the whole column: True == 1 in a set
        raise _Doubt
    # one calibration for the whole pack is the usual case
    cals = [str(cals[0])] * len(cals) if len(set(cals)) == 1 else list(map(str, cals))
    ids = _column(data, "id", _MISSING)
    if set(map(type, ids)) != {int}:
        if seq is None or not set(map(type, ids)) <= {int, object}:
            raise _Doubt
        ids = [seq + i if rid is _MISSING else rid for i, rid in enumerate(ids)]
    if min(ids) < 1:
        raise _Doubt
    sensors = _column(data, "sensor", None)
    _check_names(set(sensors), optional=True)
    whys = _column(data, "why", None)
    if not set(map(type, whys)) <= {str, type(None)}:
        raise _Doubt
    columns = (ids, quantities, ts, values, raws, units, flags, cals, sensors, whys)
    rows: list[Row] = list(zip(*columns, strict=True))
    if ids != list(range(ids[0], ids[0] + len(ids))) and not all(
        map(int.__lt__, ids, islice(ids, 1, None))
    ):  # consecutive, or at least increasing: unique and sorted already
        if len(set(ids)) != len(ids):
            raise _Doubt
        rows.sort(key=itemgetter(0))
    return PackRows(station=station, epoch=epoch, rows=rows, floor=floor)


# --------------------------------------------------------------------------- watermark


@dataclass(frozen=True)
class Stored:
    """The custody watermark: every reading of the station's ``epoch`` with id <= upto is stored."""

    upto: int
    epoch: str = DEFAULT_EPOCH

    def __post_init__(self) -> None:
        _int(self.upto, "upto", 0)
        _str(self.epoch, "epoch", _EPOCH_RE)


def encode_stored(stored: Stored) -> bytes:
    return _dumps({"upto": stored.upto, "epoch": stored.epoch})


def decode_stored(payload: bytes | str) -> Stored:
    data = _loads(payload, "stored watermark")
    if not isinstance(data, dict) or "upto" not in data:
        raise TelemetryError('stored watermark must be a JSON object {"upto": N}')
    return Stored(
        upto=_int(data["upto"], "upto", 0),
        epoch=_str(data.get("epoch", DEFAULT_EPOCH), "epoch", _EPOCH_RE),
    )


# --------------------------------------------------------------------------- status


@dataclass(frozen=True)
class Status:
    """A gateway's retained presence and self-description (online), or its last will."""

    state: str  # "online" | "offline"
    station: str | None = None
    kind: str | None = None
    lat: float | None = None
    lon: float | None = None
    inlet_height_m: float | None = None
    sensors: tuple[Mapping[str, Any], ...] = ()
    version: str | None = None
    ts: float | None = None
    epoch: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.state not in ("online", "offline"):
            raise TelemetryError(f"status state must be online or offline, got {self.state!r}")
        if self.station is not None:
            check_station(self.station)
        for name in ("lat", "lon", "inlet_height_m", "ts"):
            _opt_number(getattr(self, name), name)
        if self.lat is not None and not -90 <= self.lat <= 90:
            raise TelemetryError(f"lat {self.lat} out of range")
        if self.lon is not None and not -180 <= self.lon <= 180:
            raise TelemetryError(f"lon {self.lon} out of range")


_STATUS_FIELDS = ("station", "kind", "lat", "lon", "inlet_height_m", "version", "ts", "epoch")


def encode_status(status: Status) -> bytes:
    out: dict[str, Any] = {"state": status.state}
    for name in _STATUS_FIELDS:
        value = getattr(status, name)
        if value is not None:
            out[name] = value
    if status.sensors:
        out["sensors"] = [dict(s) for s in status.sensors]
    out.update({k: v for k, v in status.extra.items() if k not in out})
    return _dumps(out)


def decode_status(payload: bytes | str) -> Status:
    data = _loads(payload, "status")
    if not isinstance(data, dict):
        raise TelemetryError("status must be a JSON object")
    state = data.get("state")
    if not isinstance(state, str):
        raise TelemetryError('status needs "state": "online" or "offline"')
    sensors = data.get("sensors", [])
    if not isinstance(sensors, list) or not all(isinstance(s, dict) for s in sensors):
        raise TelemetryError("status sensors must be a list of objects")
    kwargs: dict[str, Any] = {}
    for name in _STATUS_FIELDS:
        if name in data and data[name] is not None:
            kwargs[name] = data[name]
    for name in ("station", "kind", "version", "epoch"):
        if name in kwargs:
            _str(kwargs[name], name)
    extra = {k: v for k, v in data.items() if k not in (*_STATUS_FIELDS, "state", "sensors")}
    return Status(state=state, sensors=tuple(sensors), extra=extra, **kwargs)


# --------------------------------------------------------------------------- commands


@dataclass(frozen=True)
class Command:
    """An order from the central service on down/cmd; answered by an Ack with the same id."""

    id: str
    cmd: str
    args: Mapping[str, Any] = field(default_factory=dict)
    ts: float | None = None  # when it was issued
    expires: float | None = None  # epoch seconds after which the gateway must not execute it

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id or len(self.id) > 128:
            raise TelemetryError(f"command id must be a non-empty string, got {self.id!r}")
        if self.cmd not in COMMANDS:
            raise TelemetryError(
                f"unknown command {self.cmd!r}; one of {', '.join(sorted(COMMANDS))}", id=self.id
            )
        if not isinstance(self.args, Mapping):
            raise TelemetryError("command args must be an object", id=self.id)
        _opt_number(self.ts, "ts")
        _opt_number(self.expires, "expires")


_CMD_KEYS = ("cmd", "command", "type", "name")
_ARGS_KEYS = ("args", "params", "arguments")


def encode_command(command: Command) -> bytes:
    out: dict[str, Any] = {"id": command.id, "cmd": command.cmd, "args": dict(command.args)}
    if command.ts is not None:
        out["ts"] = command.ts
    if command.expires is not None:
        out["expires"] = command.expires
    return _dumps(out)


def command_id(payload: bytes | str) -> str | None:
    """Best-effort id of a command that may not decode, so even a refusal can be acked."""
    try:
        data = _loads(payload, "command")
    except TelemetryError:
        return None
    if isinstance(data, dict):
        cid = data.get("id")
        if isinstance(cid, str | int) and not isinstance(cid, bool):
            return str(cid)
    return None


def decode_command(payload: bytes | str) -> Command:
    """Decode a command, liberal in its shape: the verb under ``cmd`` (or ``command``,
    ``type``, ``name``), its arguments under ``args`` (or ``params``), else the remaining
    top-level keys. A numeric id is accepted and kept as its string."""
    data = _loads(payload, "command")
    if not isinstance(data, dict):
        raise TelemetryError("command must be a JSON object")
    cid = data.get("id")
    if isinstance(cid, int) and not isinstance(cid, bool):
        cid = str(cid)
    if not isinstance(cid, str) or not cid:
        raise TelemetryError('command needs a non-empty "id"')
    verb_key = next((k for k in _CMD_KEYS if k in data), None)
    if verb_key is None:
        raise TelemetryError('command needs "cmd" (the verb)', id=cid)
    verb = data[verb_key]
    if not isinstance(verb, str):
        raise TelemetryError(f"command verb must be a string, got {verb!r}", id=cid)
    args_key = next((k for k in _ARGS_KEYS if k in data), None)
    if args_key is not None:
        args = data[args_key]
        if args is None:
            args = {}
        if not isinstance(args, dict):
            raise TelemetryError(f'command "{args_key}" must be an object', id=cid)
    else:
        reserved = {"id", verb_key, "ts", "expires"}
        args = {k: v for k, v in data.items() if k not in reserved}
    return Command(
        id=cid,
        cmd=verb,
        args=args,
        ts=_opt_number(data.get("ts"), "ts"),
        expires=_opt_number(data.get("expires"), "expires"),
    )


ACK_STATES: Final = ("ok", "error", "rejected")


@dataclass(frozen=True)
class Ack:
    """The result of a command. ``status``: ok (done), error (tried and failed), rejected
    (not executed: malformed, unknown, unauthorised or expired)."""

    id: str
    status: str
    cmd: str | None = None
    result: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None
    ts: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise TelemetryError(f"ack id must be a non-empty string, got {self.id!r}")
        if self.status not in ACK_STATES:
            raise TelemetryError(f"ack status must be one of {', '.join(ACK_STATES)}")
        if self.status != "ok" and not self.error:
            raise TelemetryError(f"an ack with status {self.status} needs an error reason")
        _opt_number(self.ts, "ts")

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def encode_ack(ack: Ack) -> bytes:
    out: dict[str, Any] = {"id": ack.id, "ok": ack.ok, "status": ack.status}
    if ack.cmd is not None:
        out["cmd"] = ack.cmd
    if ack.result:
        out["result"] = dict(ack.result)
    if ack.error is not None:
        out["error"] = ack.error
    if ack.ts is not None:
        out["ts"] = ack.ts
    return _dumps(out)


def decode_ack(payload: bytes | str) -> Ack:
    data = _loads(payload, "ack")
    if not isinstance(data, dict):
        raise TelemetryError("ack must be a JSON object")
    cid = data.get("id")
    if not isinstance(cid, str):
        raise TelemetryError('ack needs a string "id"')
    status = data.get("status")
    if status is None and isinstance(data.get("ok"), bool):
        status = "ok" if data["ok"] else "error"
    if not isinstance(status, str):
        raise TelemetryError('ack needs "status": ok, error or rejected')
    result = data.get("result") or {}
    if not isinstance(result, dict):
        raise TelemetryError("ack result must be an object")
    error = data.get("error")
    if error is not None:
        error = _str(error, "error")
    cmd = data.get("cmd")
    if cmd is not None:
        cmd = _str(cmd, "cmd")
    return Ack(
        id=cid,
        status=status,
        cmd=cmd,
        result=result,
        error=error,
        ts=_opt_number(data.get("ts"), "ts"),
    )


# --------------------------------------------------------------------------- packing


def chunk_records(records: Sequence[Record], max_records: int) -> Iterable[tuple[Record, ...]]:
    """Split readings into pack-sized runs, keeping order."""
    if max_records < 1:
        raise ValueError("max_records must be >= 1")
    for start in range(0, len(records), max_records):
        yield tuple(records[start : start + max_records])

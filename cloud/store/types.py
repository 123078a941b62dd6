"""The values that cross the store's boundary: what goes in (a ``Batch``) and what comes out
(readings, stations, sites, gaps, quarantine, commands, calibrations, health)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from protocols.errors import InputError
from protocols.telemetry import Ack, Status

# a decoded pack as row tuples is defined once, in protocols.telemetry; re-exported here
from protocols.telemetry import PackRows as PackRows  # noqa: PLC0414 - explicit re-export
from protocols.telemetry import Row as Row  # noqa: PLC0414 - explicit re-export

STATION_KINDS: Final = ("reference", "micro", "dust", "met", "high", "other")
STATION_STATUSES: Final = ("pending", "confirmed", "retired")
SITE_KINDS: Final = ("construction", "industrial", "restaurant", "traffic", "other")


@dataclass(frozen=True)
class StatusUpdate:
    station: str
    status: Status
    received: float


@dataclass(frozen=True)
class AckUpdate:
    station: str
    ack: Ack
    received: float


@dataclass(frozen=True)
class Quarantined:
    """Something that could not be taken in: kept with the reason, never silently dropped."""

    received: float
    source: str  # mqtt | hj212
    topic: str  # MQTT topic, or the peer address for HJ 212
    reason: str
    reason_class: str  # e.g. "telemetry", "status", "topic", "auth", "crc"
    payload: bytes = b""
    size: int = 0
    station: str | None = None


@dataclass(frozen=True)
class Batch:
    """Everything one ingest round commits in one transaction."""

    packs: Sequence[PackRows] = ()
    statuses: Sequence[StatusUpdate] = ()
    acks: Sequence[AckUpdate] = ()
    quarantine: Sequence[Quarantined] = ()
    received: float = 0.0


@dataclass(frozen=True)
class Committed:
    new: int  # readings stored by this batch
    duplicates: int  # readings already there (resends): no-ops
    touched: frozenset[tuple[str, str]] = frozenset()  # (station, epoch) that got readings


@dataclass(frozen=True)
class StoredReading:
    station: str
    epoch: str
    id: int
    quantity: str
    ts: float
    value: float | None
    raw: float | None
    unit: str
    q: str
    cal: str
    sensor: str | None
    why: str | None
    received: float

    @property
    def valid(self) -> bool:
        return self.q in ("N", "S") and self.value is not None


@dataclass(frozen=True)
class Custody:
    station: str
    epoch: str
    upto: int  # every id <= upto is stored or counted lost
    floor: int  # highest floor a pack declared (0: none)
    lost: int  # ids counted lost in gaps
    stored: int  # readings stored under this (station, epoch)
    received: float | None  # when the last reading arrived
    updated: float | None  # when the watermark was last computed


@dataclass(frozen=True)
class Gap:
    station: str
    epoch: str
    first_id: int
    last_id: int
    detected: float
    missing: int  # ids of the range still missing (a late arrival fills a gap)

    @property
    def size(self) -> int:
        return self.last_id - self.first_id + 1


@dataclass(frozen=True)
class QuarantineEntry:
    seq: int
    received: float
    source: str
    topic: str
    station: str | None
    reason: str
    reason_class: str
    size: int
    payload: bytes


def _check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise InputError(f"{name} must be one of {', '.join(choices)}, got {value!r}")


def _check_latlon(lat: float | None, lon: float | None) -> None:
    if (lat is None) != (lon is None):
        raise InputError("lat and lon go together")
    if lat is not None and not -90 <= lat <= 90:
        raise InputError(f"lat {lat} out of range")
    if lon is not None and not -180 <= lon <= 180:
        raise InputError(f"lon {lon} out of range")


@dataclass(frozen=True)
class Station:
    id: str
    kind: str = "other"
    status: str = "pending"
    name: str | None = None
    lat: float | None = None
    lon: float | None = None
    inlet_height_m: float | None = None
    gateway: str | None = None  # software version the gateway reported
    sensors: tuple[Mapping[str, Any], ...] = ()
    hj212_mn: str | None = None
    hj212_pw: str | None = field(default=None, repr=False)
    state: str = "unknown"  # online | offline | unknown (retained status / last will)
    state_at: float | None = None
    epoch: str | None = None
    first_seen: float | None = None
    confirmed_at: float | None = None
    reported: Mapping[str, Any] = field(default_factory=dict)  # last online status, as sent

    def __post_init__(self) -> None:
        from protocols.telemetry import check_station

        check_station(self.id)
        _check_choice("kind", self.kind, STATION_KINDS)
        _check_choice("status", self.status, STATION_STATUSES)
        _check_latlon(self.lat, self.lon)
        if self.inlet_height_m is not None and not 0 <= self.inlet_height_m <= 500:
            raise InputError(f"inlet_height_m {self.inlet_height_m} out of range 0-500")

    @property
    def has_position(self) -> bool:
        return self.lat is not None and self.lon is not None


@dataclass(frozen=True)
class Person:
    site: str
    name: str
    role: str | None = None
    phone: str | None = None
    email: str | None = None
    webhook: str | None = None


@dataclass(frozen=True)
class Site:
    """A registered emitter: construction site, enterprise, restaurant, road segment..."""

    id: str
    kind: str = "other"
    name: str | None = None
    lat: float | None = None
    lon: float | None = None
    h_m: float | None = None  # release height
    control_level: str | None = None
    enterprise: str | None = None
    address: str | None = None
    persons: tuple[Person, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id.strip() or len(self.id) > 128:
            raise InputError(f"site id must be 1-128 characters, got {self.id!r}")
        _check_choice("kind", self.kind, SITE_KINDS)
        _check_latlon(self.lat, self.lon)


@dataclass(frozen=True)
class Area:
    """A grid cell, district or control zone with a GeoJSON geometry (lat/lon, RFC 7946)."""

    id: str
    name: str | None = None
    kind: str = "area"
    geometry: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id.strip() or len(self.id) > 128:
            raise InputError(f"area id must be 1-128 characters, got {self.id!r}")
        if self.geometry and "type" not in self.geometry:
            raise InputError(f"area {self.id}: geometry needs a GeoJSON type")


@dataclass(frozen=True)
class CommandRecord:
    id: str
    station: str
    cmd: str
    args: Mapping[str, Any]
    issued: float
    status: str = "sent"  # sent | ok | error | rejected
    acked: float | None = None
    result: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True)
class Calibration:
    """A co-location fit of a micro station against a reference, and what became of it."""

    station: str
    quantity: str
    reference: str
    window_start: float
    window_end: float
    n: int
    slope: float
    offset: float
    kappa: float | None
    r2: float
    rmse: float
    raw_slope: float
    raw_intercept: float
    raw_r2: float
    raw_rmse: float
    meets_targets: bool
    created: float
    sensor: str | None = None
    command_id: str | None = None
    seq: int | None = None


@dataclass(frozen=True)
class Health:
    station: str
    status: str  # ok | offline | stale | stuck | drift | unknown
    reasons: tuple[str, ...]
    computed: float
    last_received: float | None = None


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, sort_keys=True)

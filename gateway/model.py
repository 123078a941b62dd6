"""The values that flow through the gateway's stages.

``driver.read() -> [Sample] -> calibrate -> Reading -> qc -> Reading(flag) -> outbox``.
A ``Sample`` is what a device said, in engineering units after the profile's scale and
offset; a ``Reading`` adds the calibrated value, the calibration version and the data flag.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from protocols.errors import InputError
from protocols.timefmt import to_iso


class Flag(StrEnum):
    """HJ 212 data flags (a reading carries exactly one)."""

    NORMAL = "N"  # valid
    SET = "S"  # manually entered set value (valid)
    STOPPED = "F"  # instrument stopped
    MAINTENANCE = "M"
    FAULT = "D"  # instrument fault (also: failed QC)
    CALIBRATION = "C"
    OVER_RANGE = "T"  # beyond the instrument's measurement range
    COMM_FAULT = "B"  # no answer from the instrument
    INSUFFICIENT = "H"  # too few samples for an average

    @property
    def valid(self) -> bool:
        return self in (Flag.NORMAL, Flag.SET)


@dataclass(frozen=True, slots=True)
class Sample:
    """One quantity as a device reported it, at the gateway's clock (UTC epoch seconds)."""

    sensor: str
    quantity: str
    unit: str
    raw: float | None  # None: the device gave no value (timeout, fault)
    ts: float
    flag: Flag = Flag.NORMAL  # a driver may already know (comm fault, device error bit)
    why: str | None = None

    def __post_init__(self) -> None:
        if self.raw is not None and not math.isfinite(self.raw):
            raise InputError(f"{self.sensor}/{self.quantity}: non-finite raw value {self.raw}")
        if self.raw is None and self.flag.valid:
            raise InputError(f"{self.sensor}/{self.quantity}: a sample without value needs a flag")


@dataclass(frozen=True, slots=True)
class Reading:
    """A calibrated, flagged reading of one station's sensor — the unit of custody."""

    station: str
    sensor: str
    quantity: str
    unit: str
    ts: float
    raw: float | None
    value: float | None
    flag: Flag = Flag.NORMAL
    why: str | None = None
    cal_version: int = 0

    def replace(self, **changes: Any) -> Reading:
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        """The shape ``airtrace gateway read --json`` prints (DESIGN 4.1)."""
        return {
            "station": self.station,
            "sensor": self.sensor,
            "quantity": self.quantity,
            "raw": self.raw,
            "value": self.value,
            "unit": self.unit,
            "flags": str(self.flag),
            "reason": self.why,
            "cal_version": self.cal_version,
            "ts": to_iso(self.ts),
        }

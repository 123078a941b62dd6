"""The values alerts, routing, events and orders share: levels, the alert, the inversion hit,
label fingerprints and durations.

Levels follow the Chinese graded warnings (blue < yellow < orange < red). An alert's
identity is the fingerprint of its labels *without* ``level``, so a condition that grows
from yellow to orange stays one alert whose level changes.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from protocols.errors import InputError

LEVELS: Final = ("blue", "yellow", "orange", "red")
SOURCE_TYPES: Final = ("construction", "industrial", "restaurant", "traffic", "unknown")
FIRING: Final = "firing"
RESOLVED: Final = "resolved"
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def level_rank(level: str) -> int:
    """0 (blue) .. 3 (red); InputError for anything else."""
    try:
        return LEVELS.index(level)
    except ValueError:
        raise InputError(f"level must be one of {', '.join(LEVELS)}, got {level!r}") from None


def higher(a: str, b: str) -> str:
    return a if level_rank(a) >= level_rank(b) else b


def parse_duration(value: Any) -> float:
    """Seconds from ``"30s"``, ``"5m"``, ``"4h"``, ``"2d"``, ``"1.5h"`` or a number of seconds."""
    if isinstance(value, bool):
        raise InputError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise InputError(f"a duration cannot be negative: {value!r}")
        return float(value)
    if isinstance(value, str):
        m = _DURATION_RE.match(value)
        if m:
            return float(m.group(1)) * _UNITS[m.group(2)]
    raise InputError(f"not a duration: {value!r} (e.g. 30s, 5m, 4h, 2d)")


def fingerprint(labels: Mapping[str, str]) -> str:
    """Stable id of an alert: its labels without ``level``, hashed."""
    items = sorted((k, v) for k, v in labels.items() if k != "level")
    return hashlib.sha256(json.dumps(items, separators=(",", ":")).encode()).hexdigest()[:16]


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, sort_keys=True, default=str)


@dataclass(frozen=True)
class Alert:
    """One alerting condition with its labels; ``labels["level"]`` always equals ``level``."""

    fingerprint: str
    rule: str
    kind: str  # threshold | rise | health | inversion | event | command
    labels: Mapping[str, str]
    level: str
    state: str = FIRING
    value: float | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)
    starts_at: float = 0.0
    updated_at: float = 0.0
    ends_at: float | None = None
    event_id: str | None = None

    def __post_init__(self) -> None:
        level_rank(self.level)
        if self.state not in (FIRING, RESOLVED):
            raise InputError(f"alert state must be firing or resolved, got {self.state!r}")

    @property
    def firing(self) -> bool:
        return self.state == FIRING

    def to_json(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "rule": self.rule,
            "kind": self.kind,
            "status": self.state,
            "level": self.level,
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "value": self.value,
            "starts_at": self.starts_at,
            "updated_at": self.updated_at,
            "ends_at": self.ends_at,
            "event": self.event_id,
        }


@dataclass(frozen=True)
class Hit:
    """A source the hourly inversion located: what ``on_sources`` hands over, per source."""

    x_m: float
    y_m: float
    rate_g_s: float
    rate_sigma_g_s: float
    confidence: float
    site: str | None
    quantity: str
    hour: float  # epoch seconds, start of the hour

    @classmethod
    def from_source(cls, source: Any, *, hour: float, quantity: str) -> Hit:
        """From anything shaped like ``cloud.inversion_types.FoundSource`` (or its JSON)."""

        def get(name: str, default: Any = None) -> Any:
            if isinstance(source, Mapping):
                return source.get(name, default)
            return getattr(source, name, default)

        return cls(
            x_m=float(get("x_m")),
            y_m=float(get("y_m")),
            rate_g_s=float(get("rate_g_s")),
            rate_sigma_g_s=float(get("rate_sigma_g_s", 0.0) or 0.0),
            confidence=float(get("confidence", 0.0) or 0.0),
            site=get("site"),
            quantity=str(get("quantity", None) or quantity),
            hour=float(hour),
        )


def format_summary(template: str, fields: Mapping[str, Any], annotations: Mapping[str, Any]) -> str:
    """Fill a rule's summary template; a value it cannot format leaves the template."""
    values = dict(fields)
    values.update({k: v for k, v in annotations.items() if v is not None})
    values.setdefault("value", float("nan"))
    values.setdefault("bound", float("nan"))
    for k in ("rate", "sigma", "confidence", "x_m", "y_m", "value", "bound"):
        try:
            values[k] = float(values.get(k, "nan"))
        except (TypeError, ValueError):
            values[k] = float("nan")
    try:
        return template.format(**values)
    except (KeyError, IndexError, ValueError):
        return template

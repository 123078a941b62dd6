"""ISO 8601 <-> epoch seconds, UTC, for everything a human or a CSV file reads."""

from __future__ import annotations

from datetime import UTC, datetime

from protocols.errors import InputError


def to_iso(ts: float, *, ms: bool = True) -> str:
    """``1700000000.5`` -> ``2023-11-14T22:13:20.500Z``."""
    dt = datetime.fromtimestamp(ts, tz=UTC)
    text = dt.isoformat(timespec="milliseconds" if ms else "seconds")
    return text.replace("+00:00", "Z")


def parse_iso(text: str) -> float:
    """An ISO 8601 time (``Z`` or an offset; a naive time is taken as UTC) -> epoch seconds."""
    try:
        dt = datetime.fromisoformat(text.strip())
    except (ValueError, AttributeError) as exc:
        raise InputError(f"not an ISO 8601 time: {text!r}") from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()

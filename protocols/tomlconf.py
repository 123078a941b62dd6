"""Strict reading of TOML config tables: typed values, clear errors, unknown keys rejected.

Config files are read by the gateway (station config, device profiles) and the central
service (cloud config, alert rules) alike; this is the one place that turns a parsed TOML
table into checked values and a technician-readable error::

    t = Table(doc["uplink"], source="station.toml", section="uplink")
    url = t.text("mqtt", pattern=r"^mqtts?://")
    batch = t.integer("batch_max", 500, min=1)
    t.done()      # 'station.toml [uplink]: unknown key "bach_max" (did you mean "batch_max"?)'

Pure: ``parse_toml`` takes text; reading the file is the caller's job.
"""

from __future__ import annotations

import difflib
import math
import re
import tomllib
from collections.abc import Iterator, Mapping
from typing import Any, Final, TypeVar

from protocols.errors import ConfigError

T = TypeVar("T")


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Final[Any] = _Required()


def parse_toml(text: str, source: str) -> dict[str, Any]:
    """Parse TOML text; a syntax error becomes a ConfigError naming ``source`` and the line."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}", source=source) from None


class Table:
    """One TOML table being read; remembers which keys were used so ``done()`` can reject
    the others."""

    def __init__(self, data: Any, *, source: str, section: str = "") -> None:
        self.source = source
        self.section = section
        if not isinstance(data, Mapping):
            raise ConfigError(f"{self._where()}: must be a table, got {_kind(data)}")
        self._data: Mapping[str, Any] = data
        self._used: set[str] = set()

    # -- plumbing ---------------------------------------------------------------------
    def _where(self, key: str | None = None) -> str:
        place = f"{self.source} [{self.section}]" if self.section else self.source
        return f"{place} {key}" if key else place

    def error(self, key: str | None, reason: str) -> ConfigError:
        """A ConfigError for ``key`` of this table: 'file [section] key: reason'."""
        return ConfigError(
            f"{self._where(key)}: {reason}", source=self.source, section=self.section, key=key
        )

    def __contains__(self, key: str) -> bool:
        return key in self._data

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._data))

    def raw(self, key: str, default: Any = REQUIRED) -> Any:
        self._used.add(key)
        if key in self._data:
            return self._data[key]
        if default is REQUIRED:
            raise self.error(key, "is required")
        return default

    def done(self) -> None:
        """Reject every key that was not read: a misspelt key must not be silently ignored."""
        unknown = [k for k in self._data if k not in self._used]
        if unknown:
            key = unknown[0]
            close = difflib.get_close_matches(key, sorted(self._used), n=1)
            hint = f' (did you mean "{close[0]}"?)' if close else ""
            known = ", ".join(sorted(self._used))
            raise self.error(None, f'unknown key "{key}"{hint}; known keys: {known}')

    # -- typed getters ----------------------------------------------------------------
    def text(
        self,
        key: str,
        default: Any = REQUIRED,
        *,
        choices: tuple[str, ...] | None = None,
        pattern: str | None = None,
    ) -> Any:
        value = self.raw(key, default)
        if value is default and default is not REQUIRED:
            return value
        if not isinstance(value, str):
            raise self.error(key, f"must be a string, got {_kind(value)}")
        if choices is not None and value not in choices:
            raise self.error(key, f"must be one of {', '.join(choices)}; got {value!r}")
        if pattern is not None and not re.search(pattern, value):
            raise self.error(key, f"has a bad value {value!r}")
        return value

    def integer(
        self,
        key: str,
        default: Any = REQUIRED,
        *,
        min: int | None = None,
        max: int | None = None,
    ) -> Any:
        value = self.raw(key, default)
        if value is default and default is not REQUIRED:
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"must be an integer, got {_kind(value)}")
        return self._bounded(key, value, min, max)

    def number(
        self,
        key: str,
        default: Any = REQUIRED,
        *,
        min: float | None = None,
        max: float | None = None,
        positive: bool = False,
    ) -> Any:
        value = self.raw(key, default)
        if value is default and default is not REQUIRED:
            return value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, f"must be a number, got {_kind(value)}")
        value = float(value)
        if not math.isfinite(value):
            raise self.error(key, "must be a finite number")
        if positive and value <= 0:
            raise self.error(key, f"must be > 0, got {value:g}")
        return self._bounded(key, value, min, max)

    def flag(self, key: str, default: Any = REQUIRED) -> Any:
        value = self.raw(key, default)
        if value is default and default is not REQUIRED:
            return value
        if not isinstance(value, bool):
            raise self.error(key, f"must be true or false, got {_kind(value)}")
        return value

    def array(self, key: str, item: type[T], default: Any = REQUIRED) -> Any:
        value = self.raw(key, default)
        if value is default and default is not REQUIRED:
            return value
        if not isinstance(value, list):
            raise self.error(key, f"must be an array, got {_kind(value)}")
        for i, v in enumerate(value):
            ok = isinstance(v, item) and not (item in (int, float) and isinstance(v, bool))
            if item is float and isinstance(v, int) and not isinstance(v, bool):
                ok = True
            if not ok:
                raise self.error(key, f"item {i} must be {item.__name__}, got {_kind(v)}")
        return [float(v) for v in value] if item is float else list(value)

    def table(self, key: str, *, required: bool = False) -> Table:
        """A sub-table (``[section.key]``); an empty one when absent and not required."""
        section = f"{self.section}.{key}" if self.section else key
        if required and key not in self._data:
            raise ConfigError(f"{self.source}: [{section}] is required", source=self.source)
        value = self.raw(key, {})
        return Table(value, source=self.source, section=section)

    def tables(self, key: str, *, required: bool = False) -> list[Table]:
        """An array of tables (``[[key]]``), each named ``key #n`` (1-based) in errors."""
        value = self.raw(key, REQUIRED if required else [])
        if not isinstance(value, list):
            raise self.error(key, f"must be an array of tables ([[{key}]]), got {_kind(value)}")
        prefix = f"{self.section}.{key}" if self.section else key
        return [
            Table(v, source=self.source, section=f"{prefix} #{i}")
            for i, v in enumerate(value, start=1)
        ]

    def _bounded(self, key: str, value: Any, lo: Any, hi: Any) -> Any:
        if lo is not None and value < lo:
            raise self.error(key, f"must be >= {lo}, got {value}")
        if hi is not None and value > hi:
            raise self.error(key, f"must be <= {hi}, got {value}")
        return value


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return f"{type(value).__name__} {value!r}"

"""ISO 8601 round trips in UTC."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.errors import InputError
from protocols.timefmt import parse_iso, to_iso


def test_known_values() -> None:
    assert to_iso(0) == "1970-01-01T00:00:00.000Z"
    assert to_iso(1_700_000_000.5) == "2023-11-14T22:13:20.500Z"
    assert parse_iso("2023-11-14T22:13:20.500Z") == 1_700_000_000.5
    assert parse_iso("2023-11-15T06:13:20+08:00") == 1_700_000_000
    assert parse_iso("2023-11-14T22:13:20") == 1_700_000_000  # naive is UTC


@given(st.integers(0, 4_000_000_000_000))
def test_round_trip_to_the_millisecond(ms: int) -> None:
    assert parse_iso(to_iso(ms / 1000)) == pytest.approx(ms / 1000, abs=1e-6)


def test_bad_time_is_input_error() -> None:
    with pytest.raises(InputError, match="ISO 8601"):
        parse_iso("yesterday")

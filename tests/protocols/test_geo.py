"""The local frame is consistent both ways and matches known distances."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.geo import Origin, to_latlon, to_local

ORIGIN = Origin(34.8, 113.55)


def test_one_degree_of_latitude_is_about_111_km() -> None:
    x, y = to_local(35.8, 113.55, ORIGIN)
    assert x == 0
    assert y == pytest.approx(111_195.08, abs=0.01)


def test_east_distance_shrinks_with_cos_latitude() -> None:
    x, _ = to_local(34.8, 113.56, ORIGIN)
    assert x == pytest.approx(0.01 * 111_195.08 * math.cos(math.radians(34.8)), rel=1e-6)


@given(st.floats(-20_000, 20_000), st.floats(-20_000, 20_000))
def test_round_trip(x: float, y: float) -> None:
    lat, lon = to_latlon(x, y, ORIGIN)
    bx, by = to_local(lat, lon, ORIGIN)
    assert bx == pytest.approx(x, abs=1e-6)
    assert by == pytest.approx(y, abs=1e-6)

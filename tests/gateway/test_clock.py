"""The fake clock moves only when told, both clocks together."""

from __future__ import annotations

from gateway.clock import FakeClock, SystemClock


def test_fake_clock_advances_wall_and_monotonic_together() -> None:
    c = FakeClock(start=100.0)
    c.sleep(2.5)
    c.advance(0.5)
    assert (c.now(), c.monotonic()) == (103.0, 3.0)
    c.sleep(-1)
    assert c.now() == 103.0


def test_system_clock_is_monotonic() -> None:
    c = SystemClock()
    a = c.monotonic()
    assert c.monotonic() >= a
    assert c.now() > 1.7e9

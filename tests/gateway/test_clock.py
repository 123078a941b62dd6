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


def test_scaled_clocks_with_one_anchor_agree() -> None:
    import time

    from gateway.clock import ScaledClock, clock_from_env

    anchor = time.time()
    a = ScaledClock(start=1_000_000.0, rate=360.0, anchor=anchor)
    b = clock_from_env({"AIRTRACE_CLOCK": f"1000000@360@{anchor}"})
    assert isinstance(b, ScaledClock)
    assert abs(a.now() - b.now()) < 360 * 0.05  # both read within one real 50 ms
    assert a.now() >= 1_000_000.0
    assert isinstance(clock_from_env({}), SystemClock)

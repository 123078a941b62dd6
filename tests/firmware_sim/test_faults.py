"""Faults, clocks and value sources on their own: what a device consults, step by step."""

from __future__ import annotations

import asyncio

import pytest

from firmware_sim.clock import AcceleratedClock, ManualClock, as_clock, from_env
from firmware_sim.faults import Faults, flip_byte
from firmware_sim.sources import Values, constant, scripted


def test_stuck_freezes_at_the_first_value_and_star_freezes_each() -> None:
    f = Faults(ManualClock())
    f.stick("pm25")
    assert f.value("pm25", 0, 10.0) == 10.0
    assert f.value("pm25", 1, 99.0) == 10.0
    assert f.value("pm10", 1, 99.0) == 99.0
    f.stick("*")
    assert (f.value("pm10", 2, 5.0), f.value("temp", 2, 7.0)) == (5.0, 7.0)
    assert (f.value("pm10", 3, 50.0), f.value("temp", 3, 70.0)) == (5.0, 7.0)
    f.unstick("*")
    assert f.value("pm10", 4, 50.0) == 50.0 and f.value("pm25", 4, 50.0) == 10.0
    f.stick("no2", 41.0)
    assert f.value("no2", 5, 3.0) == 41.0


def test_drift_grows_with_simulated_time() -> None:
    clock = ManualClock(1000.0)
    f = Faults(clock)
    f.drift("temp", per_hour=-0.5)
    assert f.value("temp", 1000.0, 20.0) == 20.0
    assert f.value("temp", 1000.0 + 4 * 3600, 20.0) == pytest.approx(18.0)
    f.drift("temp", 0)
    assert f.value("temp", 1000.0 + 4 * 3600, 20.0) == 20.0


def test_dropouts_are_seeded_and_counted() -> None:
    draws = []
    for _ in range(2):
        f = Faults(ManualClock(), seed=42)
        f.dropout(0.3)
        draws.append([f.answers() for _ in range(200)])
        assert f.events["dropped"] == draws[-1].count(False)
    assert draws[0] == draws[1]
    assert 30 < draws[0].count(False) < 90


def test_reboot_is_silent_for_its_time_and_calls_hooks() -> None:
    clock = ManualClock()
    f = Faults(clock)
    calls = []
    f.on_reboot(lambda: calls.append(clock.now()))
    f.reboot(down_s=10)
    assert calls == [clock.now()] and f.down and not f.answers()
    clock.advance(9.9)
    assert f.down
    clock.advance(0.2)
    assert not f.down and f.answers() and f.boots == 2


def test_frames_break_the_device_way() -> None:
    f = Faults(ManualClock(), seed=1)
    frame = bytes(range(10))
    assert f.frame(frame, flip_byte(-1)) == frame
    f.corrupt_crc()
    assert f.frame(frame, flip_byte(-1)) == frame[:-1] + bytes([0xF6])
    f.corrupt_crc(0)
    f.garbage(3, where="before")
    out = f.frame(frame, flip_byte(-1))
    assert len(out) == 13 and out.endswith(frame)
    with pytest.raises(ValueError, match="where must be"):
        f.garbage(3, where="inside")
    assert f.events == {"crc": 1, "garbage": 1}
    f.clear()
    assert f.frame(frame, flip_byte(-1)) == frame and f.time(5.0) == 5.0


def test_accelerated_clock_shares_its_spec() -> None:
    real = [1000.0]
    clock = AcceleratedClock(start=5000.0, rate=60.0, real=lambda: real[0])
    real[0] += 2.0
    assert clock.now() == 5120.0 and clock.real_seconds(120) == 2.0
    again = from_env({"AIRTRACE_CLOCK": clock.spec})
    assert isinstance(again, AcceleratedClock)
    assert (again.start, again.rate, again.anchor) == (5000.0, 60.0, 1000.0)
    with pytest.raises(ValueError, match="START@RATE@ANCHOR"):
        from_env({"AIRTRACE_CLOCK": "soon"})


def test_manual_clock_sleep_waits_for_advance() -> None:
    clock = ManualClock(0.0, poll_s=0.001)

    async def scenario() -> float:
        sleeper = asyncio.ensure_future(clock.sleep(5.0))
        await asyncio.sleep(0.01)
        assert not sleeper.done()
        clock.advance(5.0)
        await asyncio.wait_for(sleeper, 1.0)
        return clock.now()

    assert asyncio.run(scenario()) == 5.0
    assert as_clock(lambda: 7.0).now() == 7.0


def test_values_overrides_and_scripts() -> None:
    values = Values(scripted({"pm25": [(0, 10.0), (100, 30.0)], "temp": [(0, 1.0)]}))
    assert values("pm25", 50) == 20.0 and values("pm25", 500) == 30.0
    values.set(pm25=99.0)
    assert values("pm25", 50) == 99.0
    values.clear()
    assert values("pm25", -5) == 10.0
    assert values.get("no2", 0) is None
    values.source = {"no2": 4.0}
    assert values("no2", 0) == 4.0
    step = scripted({"rh": [(0, 50.0), (10, 80.0)]}, step=True)
    assert step("rh", 9.9) == 50.0 and step("rh", 10) == 80.0
    with pytest.raises(KeyError):
        constant(pm25=1.0)("pm10", 0)

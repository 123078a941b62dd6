"""The scheduler against real pymodbus servers: one RS485 line over a pty pair with several
units and one dead one, a TCP device, burst sampling, writes, the circuit breaker and the
clock's health. Time is a FakeClock advanced by the test; counts and order are asserted,
never durations."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from firmware_sim.ptypair import PtyPair
from gateway import poller as poller_module
from gateway.clock import FakeClock, ScaledClock, SystemClock
from gateway.errors import DeviceError, DeviceTimeout
from gateway.model import Flag, Sample
from gateway.poller import FAILURES_TO_BACK_OFF, Poller
from protocols.errors import ConfigError
from tests.gateway.modbus_sim import ModbusSim, Unit
from tests.gateway.station_text import station


@dataclass
class Line:
    sim: ModbusSim
    path: str


@pytest.fixture
def line() -> Iterator[Line]:
    """An RS485 line with a T/H transmitter (unit 1), an anemometer (2) and a dust
    transmitter (3), all answering; unit 7 is on the line but dead."""
    with ModbusSim() as sim, PtyPair() as pair:
        sim.rtu(pair.a, {
            1: Unit(holding={0: [0x0292, 0xFF9B]}),
            2: Unit(holding={0: [34]}),
            3: Unit(holding={0: [35, 80, 120]}, coils=8),
            7: Unit(holding={0: [1, 2, 3]}),
        })  # fmt: skip
        sim.silence(7)
        yield Line(sim, pair.b)


def _rtu(name: str, profile: str, unit: int, path: str, **kw: object) -> dict[str, object]:
    return {
        "name": name, "profile": profile, "transport": "modbus-rtu", "address": path,
        "unit_id": unit, "interval_s": 10, "timeout_s": 1.0, "retries": 0, **kw,
    }  # fmt: skip


def _line_station(path: str, extra: str = ""):
    return station(
        [
            _rtu("th", "rs-ws-n01", 1, path),
            _rtu("dead", "rs-pm-n01", 7, path, timeout_s=0.1),
            _rtu("wind", "rs-fs-n01", 2, path),
            _rtu("dust", "rs-pm-n01", 3, path),
        ],
        extra,
    )


class Collect:
    def __init__(self) -> None:
        self.batches: list[list[Sample]] = []
        self.cond = threading.Condition()

    def __call__(self, samples: list[Sample]) -> None:
        with self.cond:
            self.batches.append(samples)
            self.cond.notify_all()

    def sensors(self) -> list[str]:
        return [b[0].sensor for b in self.batches]

    def wait_for(self, predicate, timeout: float = 20.0) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: predicate(self), timeout), self.sensors()


def test_a_dead_unit_costs_only_its_own_slot(line: Line, caplog) -> None:
    caplog.set_level(logging.INFO, logger="gateway.poller")
    clock, sink = FakeClock(), Collect()
    poller = Poller(_line_station(line.path), clock=clock, sink=sink)
    try:
        cycles = 6
        for _ in range(cycles):
            last_cycle = clock.now()
            assert poller.run_due() == 4
            clock.advance(10)
        # every device had its slot in every cycle, in config order
        assert sink.sensors() == ["th", "dead", "wind", "dust"] * cycles
        for batch in sink.batches:
            if batch[0].sensor == "dead":
                assert all(s.raw is None and s.flag is Flag.COMM_FAULT for s in batch)
                assert [s.quantity for s in batch] == ["pm25", "pm10", "tsp"]
            else:
                assert all(s.raw is not None and s.flag is Flag.NORMAL for s in batch)
        # the live units were asked every cycle; the dead one only until it was backed off
        assert [line.sim.asked(u) for u in (1, 2, 3)] == [cycles] * 3
        # the dead one: 3 tries in a row, then backed off for 2 intervals (t = 0, 10, 20, 40)
        assert line.sim.asked(7) == FAILURES_TO_BACK_OFF + 1
        health = poller.health()
        assert not health["dead"].available
        assert health["dead"].consecutive_failures == FAILURES_TO_BACK_OFF + 1
        assert health["dead"].backed_off_until is not None
        assert "no answer" in (health["dead"].last_error or "")
        assert health["th"].available and health["th"].last_ok is not None
        assert health["th"].last_ok >= last_cycle  # read in the last cycle
        assert health["th"].polls == cycles and health["th"].failures == 0
    finally:
        poller.stop()
    dead_logs = [r for r in caplog.records if r.getMessage().startswith("dead:")]
    assert [r.levelno for r in dead_logs] == [logging.WARNING, logging.WARNING]
    assert "unavailable after 3 failed polls" in dead_logs[1].getMessage()


def test_a_backed_off_device_is_tried_again_and_recovers(line: Line, caplog) -> None:
    caplog.set_level(logging.INFO, logger="gateway.poller")
    clock, sink = FakeClock(), Collect()
    poller = Poller(_line_station(line.path), clock=clock, sink=sink)
    try:
        asked = []
        for _ in range(12):
            poller.run_due()
            asked.append(line.sim.asked(7))
            clock.advance(10)
        # 3 tries in a row, then the next ones 2, 4 ... intervals apart
        assert asked == [1, 2, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5]
        line.sim.wake(7)
        for _ in range(8):
            poller.run_due()
            clock.advance(10)
        assert poller.health()["dead"].available
        last = [b for b in sink.batches if b[0].sensor == "dead"][-1]
        assert [s.raw for s in last] == [1, 2, 3] and last[0].flag is Flag.NORMAL
    finally:
        poller.stop()
    recovered = [r for r in caplog.records if "answering again" in r.getMessage()]
    assert len(recovered) == 1 and recovered[0].getMessage().startswith("dead:")


def test_poll_once_reads_everything_now_and_never_raises(line: Line) -> None:
    clock = FakeClock()
    poller = Poller(_line_station(line.path), clock=clock, sink=Collect())
    try:
        samples = poller.poll_once()
    finally:
        poller.stop()
    assert [(s.sensor, s.quantity) for s in samples] == [
        ("th", "rh"), ("th", "temp"),
        ("dead", "pm25"), ("dead", "pm10"), ("dead", "tsp"),
        ("wind", "wind_speed"),
        ("dust", "pm25"), ("dust", "pm10"), ("dust", "tsp"),
    ]  # fmt: skip
    by = {(s.sensor, s.quantity): s for s in samples}
    assert by["th", "rh"].raw == pytest.approx(65.8)
    assert by["dead", "pm10"].raw is None and by["dead", "pm10"].flag is Flag.COMM_FAULT
    assert "no answer" in (by["dead", "pm10"].why or "")
    assert by["dust", "tsp"].raw == 120


def test_stale_values_are_never_restamped(line: Line) -> None:
    clock, sink = FakeClock(), Collect()
    config = station([_rtu("dust", "rs-pm-n01", 3, line.path)])
    poller = Poller(config, clock=clock, sink=sink)
    try:
        poller.run_due()
        line.sim.silence(3)
        clock.advance(10)
        poller.run_due()
    finally:
        poller.stop()
    first, second = sink.batches
    assert [s.raw for s in first] == [35, 80, 120]
    assert [s.raw for s in second] == [None, None, None]
    assert {s.ts for s in second} == {clock.now()} and {s.ts for s in first} == {clock.now() - 10}


def test_burst_sampling_for_a_while_then_back(line: Line) -> None:
    clock, sink = FakeClock(), Collect()
    config = station(
        [_rtu("th", "rs-ws-n01", 1, line.path), _rtu("wind", "rs-fs-n01", 2, line.path)]
    )
    poller = Poller(config, clock=clock, sink=sink)
    try:
        poller.run_due()  # t = 0: both
        poller.set_interval("th", 2.0, 10.0)  # th every 2 s until t = 10
        assert poller.health()["th"].interval_s == 2.0
        for _ in range(15):  # t = 1 .. 15
            clock.advance(1)
            poller.run_due()
    finally:
        poller.stop()
    th = sum(1 for s in sink.sensors() if s == "th")
    wind = sum(1 for s in sink.sensors() if s == "wind")
    assert wind == 2  # t = 0 and t = 10, its own interval, untouched
    assert th == 1 + 5  # t = 0, then 2, 4, 6, 8, 10 in the burst; next at 20 (back to 10 s)
    assert poller.health()["th"].interval_s == 10.0


def test_burst_for_every_sensor_and_bad_arguments(line: Line) -> None:
    clock = FakeClock()
    poller = Poller(_line_station(line.path), clock=clock, sink=Collect())
    try:
        poller.set_interval(None, 1.0, None)
        assert {h.interval_s for h in poller.health().values()} == {1.0}
        with pytest.raises(KeyError):
            poller.set_interval("nope", 1.0, 5.0)
        with pytest.raises(ValueError, match="interval_s"):
            poller.set_interval("th", 0.0, 5.0)
    finally:
        poller.stop()


ACTUATORS = """
[[actuator]]
name = "spray"
transport = "modbus-rtu"
address = "{path}"
unit_id = 3
coil = 2

[[actuator]]
name = "valve"
transport = "modbus-rtu"
address = "{path}"
unit_id = 7
register = 4
"""


def test_writes_share_the_line_with_the_polls(line: Line, monkeypatch) -> None:
    monkeypatch.setattr(poller_module, "WRITE_TIMEOUT_S", 0.1)
    clock = FakeClock()
    config = _line_station(line.path, ACTUATORS.format(path=line.path))
    poller = Poller(config, clock=clock, sink=Collect())
    try:
        poller.run_due()
        poller.write(config.actuator("spray"), 1)
        poller.write(config.actuator("spray"), 0)
        assert line.sim.writes == [(3, 5, 2, [True]), (3, 5, 2, [False])]
        with pytest.raises(DeviceTimeout, match="valve: no answer"):
            poller.write(config.actuator("valve"), 1)
    finally:
        poller.stop()


def test_an_actuator_on_its_own_tcp_bus() -> None:
    with ModbusSim() as sim:
        port = sim.tcp({1: Unit(holding={0: [0, 0, 0, 0, 0]}, coils=4)})
        config = station(
            [],
            f"""
[[actuator]]
name = "fog"
transport = "modbus-tcp"
address = "127.0.0.1:{port}"
register = 3
""",
        )
        poller = Poller(config, clock=FakeClock(), sink=Collect())
        try:
            poller.write(config.actuator("fog"), 0x00FF)
            with pytest.raises(DeviceError, match="does not fit"):
                poller.write(config.actuator("fog"), 70000)
        finally:
            poller.stop()
        assert sim.writes == [(1, 6, 3, [0x00FF])]


def test_threads_poll_each_bus_until_stopped(line: Line) -> None:
    with ModbusSim() as tcp_sim:
        port = tcp_sim.tcp({1: Unit(holding={0: [0x0292, 0xFF9B]})})
        config = station([
            _rtu("wind", "rs-fs-n01", 2, line.path, interval_s=0.05),
            _rtu("dead", "rs-pm-n01", 7, line.path, interval_s=0.05, timeout_s=0.1),
            {"name": "th", "profile": "rs-ws-n01", "transport": "modbus-tcp",
             "address": f"127.0.0.1:{port}", "interval_s": 0.05},
        ])  # fmt: skip
        sink = Collect()
        poller = Poller(config, clock=SystemClock(), sink=sink)
        poller.start()
        try:
            sink.wait_for(lambda c: all(c.sensors().count(n) >= 5 for n in ("wind", "th", "dead")))
        finally:
            poller.stop()
        n = len(sink.batches)
        # stopped means stopped: no thread delivers afterwards
        threading.Event().wait(0.2)
        assert len(sink.batches) == n
        assert not poller.health()["dead"].available


def test_a_failing_sink_does_not_stop_polling(line: Line) -> None:
    calls = []

    def sink(samples: list[Sample]) -> None:
        calls.append(samples[0].sensor)
        raise OSError("disk full")

    clock = FakeClock()
    poller = Poller(station([_rtu("wind", "rs-fs-n01", 2, line.path)]), clock=clock, sink=sink)
    try:
        for _ in range(3):
            poller.run_due()
            clock.advance(10)
    finally:
        poller.stop()
    assert calls == ["wind"] * 3 and poller.sink_errors == 3


class JumpClock(FakeClock):
    """A FakeClock whose wall clock can be set back or forward without the monotonic one."""

    def __init__(self, start: float) -> None:
        super().__init__(start)
        self.offset = 0.0

    def now(self) -> float:
        return super().now() + self.offset


def test_clock_health(line: Line) -> None:
    config = station([_rtu("wind", "rs-fs-n01", 2, line.path)])
    unset = Poller(config, clock=FakeClock(start=86_400.0), sink=Collect())  # 1970-01-02
    try:
        health = unset.clock_health()
        assert not health.ok and "before 2024" in (health.problem or "")
        assert not unset.health()["wind"].clock_ok
    finally:
        unset.stop()
    clock = JumpClock(1_780_000_000.0)
    poller = Poller(config, clock=clock, sink=Collect())
    try:
        poller.run_due()
        assert poller.clock_health().ok
        clock.advance(10)
        clock.offset = -3600.0  # an NTP step back by an hour
        poller.run_due()
        health = poller.clock_health()
        assert not health.ok and health.jumps == 1 and "-3600" in (health.problem or "")
        clock.advance(4000)
        poller.run_due()
        assert poller.clock_health().ok  # remembered for an hour, then forgiven
    finally:
        poller.stop()


def test_devices_on_one_line_must_agree_on_its_settings(line: Line) -> None:
    config = station([
        _rtu("a", "rs-fs-n01", 2, line.path, baudrate=4800),
        _rtu("b", "rs-ws-n01", 1, line.path, baudrate=9600),
    ])  # fmt: skip
    with pytest.raises(ConfigError, match=r"share the RS485 line .* but not its settings"):
        Poller(config, clock=FakeClock(), sink=Collect())


def test_disabled_sensors_are_not_polled(line: Line) -> None:
    config = station([
        _rtu("wind", "rs-fs-n01", 2, line.path),
        _rtu("th", "rs-ws-n01", 1, line.path, enabled=False),
    ])  # fmt: skip
    poller = Poller(config, clock=FakeClock(), sink=Collect())
    try:
        assert [s.sensor for s in poller.poll_once()] == ["wind"]
        assert set(poller.health()) == {"wind"}
    finally:
        poller.stop()


def test_an_accelerated_clock_polls_at_its_own_pace(line: Line) -> None:
    # 60x: a 10 s interval is a sixth of a real second; waiting in real seconds would take
    # the 4 polls 30 s, beyond the wait below
    clock = ScaledClock(start=1_780_000_000.0, rate=60.0)
    sink = Collect()
    poller = Poller(station([_rtu("wind", "rs-fs-n01", 2, line.path)]), clock=clock, sink=sink)
    start = clock.monotonic()
    poller.start()
    try:
        sink.wait_for(lambda c: len(c.batches) >= 4, timeout=20.0)
    finally:
        poller.stop()
    elapsed = clock.monotonic() - start
    assert len(sink.batches) <= elapsed / 10 + 1  # and never faster than its interval

"""Actuators keep their safety timeout whatever they are told; rules act on valid readings."""

from __future__ import annotations

import pytest

from gateway.actuators import Actuators
from gateway.clock import FakeClock
from gateway.config import ActuatorConfig, RuleConfig
from gateway.errors import CommandRejected, DeviceError
from gateway.model import Flag, Reading
from gateway.rules import Rules

SPRAY = ActuatorConfig("spray", "modbus-tcp", "127.0.0.1:5030", coil=0, max_on_s=600)


class Bus:
    def __init__(self) -> None:
        self.writes: list[tuple[str, int]] = []
        self.fail = False

    def __call__(self, a: ActuatorConfig, value: int) -> None:
        if self.fail:
            raise DeviceError(f"{a.name}: no answer")
        self.writes.append((a.name, value))


@pytest.fixture
def rig():
    clock, bus = FakeClock(), Bus()
    return clock, bus, Actuators([SPRAY], bus, clock=clock)


def test_on_for_a_duration_then_off(rig) -> None:
    clock, bus, acts = rig
    st = acts.switch("spray", True, duration_s=60, reason="test")
    assert st.on and st.until == pytest.approx(clock.now() + 60)
    acts.switch("spray", True, duration_s=30, reason="again")  # no second write, no shortening
    assert bus.writes == [("spray", 1)]
    clock.advance(59)
    acts.tick()
    assert acts.state("spray").on
    clock.advance(2)
    acts.tick()
    assert bus.writes == [("spray", 1), ("spray", 0)] and not acts.state("spray").on


def test_the_safety_timeout_caps_every_extension(rig) -> None:
    clock, _, acts = rig
    acts.switch("spray", True, duration_s=10_000, reason="centre")  # capped at max_on_s
    for _ in range(10):
        clock.advance(60)
        acts.switch("spray", True, duration_s=300, reason="rule")  # keeps asking
        acts.tick()
    assert not acts.state("spray").on
    assert acts.state("spray").reason == "safety timeout (600 s)"
    clock.advance(30)
    with pytest.raises(CommandRejected, match="cooling down"):
        acts.switch("spray", True, duration_s=300, reason="rule")
    clock.advance(31)
    assert acts.switch("spray", True, duration_s=300, reason="rule").on


def test_a_failed_switch_off_is_retried_until_it_works(rig) -> None:
    clock, bus, acts = rig
    acts.switch("spray", True, duration_s=5, reason="t")
    bus.fail = True
    clock.advance(6)
    acts.tick()
    assert acts.state("spray").error
    clock.advance(6)
    acts.tick()
    bus.fail = False
    clock.advance(6)
    acts.tick()
    assert bus.writes[-1] == ("spray", 0) and acts.state("spray").error is None


def test_failed_switch_on_and_unknown_names(rig) -> None:
    _, bus, acts = rig
    bus.fail = True
    with pytest.raises(DeviceError):
        acts.switch("spray", True, reason="t")
    assert not acts.state("spray").on
    with pytest.raises(CommandRejected, match="no actuator"):
        acts.switch("fogger", True, reason="t")


def reading(value: float, ts: float, flag: Flag = Flag.NORMAL, sensor: str = "pm") -> Reading:
    return Reading("S", sensor, "pm10", "ug/m3", ts, value, value, flag)


def test_rule_needs_the_value_above_for_the_whole_period(rig) -> None:
    clock, bus, acts = rig
    assert bus.writes == []
    rules = Rules(
        [RuleConfig("dust", "pm10", above=150, for_s=300, actuator="spray", hold_s=120)], acts
    )
    t = clock.now()
    assert rules.observe([reading(200, t), reading(200, t + 200)]) == []
    assert rules.observe([reading(100, t + 250)]) == []  # dipped: the run starts again
    assert rules.observe([reading(200, t + 300), reading(999, t + 400, Flag.FAULT)]) == []
    assert rules.observe([reading(200, t + 600)]) == ["dust"]
    assert acts.state("spray").on and bus.writes == [("spray", 1)]
    assert rules.observe([reading(220, t + 660)]) == []  # already on: the hold is extended
    assert rules.thresholds() == {"pm10": 150}

"""The Modbus driver against real pymodbus servers: TCP on a free port, RTU over a pty pair."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest

from firmware_sim.ptypair import PtyPair
from gateway.clock import FakeClock
from gateway.drivers import failure_flag, open_driver
from gateway.drivers.modbus import LinkSettings, ModbusDriver, ModbusLink
from gateway.errors import DeviceError, DeviceTimeout
from gateway.model import Flag
from gateway.profiles import load_profile, loads_profile
from protocols.registers import encode
from tests.conftest import free_port
from tests.gateway.modbus_sim import ModbusSim, Unit
from tests.gateway.station_text import station


@pytest.fixture
def sim() -> Iterator[ModbusSim]:
    with ModbusSim() as s:
        yield s


def _sensor(profile: str, address: str, transport: str = "modbus-tcp", **kw: object):
    spec = {"name": "dev", "profile": profile, "transport": transport, "address": address}
    spec.update({"timeout_s": 1.0, "retries": 0, **kw})
    return station([spec]).sensors[0]


def _driver(profile: str, address: str, transport: str = "modbus-tcp", **kw: object):
    sensor = _sensor(profile, address, transport, **kw)
    return open_driver(sensor, load_profile(sensor.profile), clock=FakeClock())


def _words(profile: str, values: dict[str, float]) -> dict[int, list[int]]:
    p = load_profile(profile)
    return {s.address: encode(values[s.quantity], s) for s in p.registers}


def test_th_transmitter_gives_the_reference_values_m1_m2(sim: ModbusSim) -> None:
    port = sim.tcp({1: Unit(holding={0: [0x0292, 0xFF9B]})})
    clock = FakeClock()
    sensor = _sensor("rs-ws-n01", f"127.0.0.1:{port}")
    driver = open_driver(sensor, load_profile("rs-ws-n01"), clock=clock)
    try:
        samples = driver.read()
    finally:
        driver.close()
    assert [(s.quantity, s.unit, s.flag) for s in samples] == [
        ("rh", "%RH", Flag.NORMAL),
        ("temp", "Cel", Flag.NORMAL),
    ]
    assert [s.raw for s in samples] == pytest.approx([65.8, -10.1])
    assert {s.ts for s in samples} == {clock.now()}  # stamped by the gateway's clock
    assert {s.sensor for s in samples} == {"dev"}


def test_a_register_block_is_one_request(sim: ModbusSim) -> None:
    values = {"rh": 55.5, "temp": 21.3, "noise": 61.2, "pm25": 35, "pm10": 80, "pressure": 1012}
    port = sim.tcp({1: Unit(holding=_words("louver-box", values))})
    driver = _driver("louver-box", f"127.0.0.1:{port}")
    got = {s.quantity: s.raw for s in driver.read()}
    driver.close()
    assert got == pytest.approx(values)
    assert sim.requests == [(1, 3, 0x01F4, 6)]


def test_float32_in_little_word_order_from_input_registers(sim: ModbusSim) -> None:
    values = {"no2": 41.25, "so2": 7.5, "co": 0.875, "o3": 96.0}
    port = sim.tcp({5: Unit(input=_words("gas-f32-le", values))})
    driver = _driver("gas-f32-le", f"127.0.0.1:{port}", unit_id=5)
    got = {s.quantity: s.raw for s in driver.read()}
    driver.close()
    assert got == pytest.approx(values)
    assert sim.requests == [(5, 4, 0, 8)]


def test_separate_blocks_are_separate_requests(sim: ModbusSim) -> None:
    values = {"co2": 415.0, "no2": 20.0, "co": 0.5, "o3": 60.0}
    port = sim.tcp({1: Unit(input=_words("sensorbee-gas", values))})
    driver = _driver("sensorbee-gas", f"127.0.0.1:{port}")
    assert {s.quantity: s.raw for s in driver.read()} == pytest.approx(values)
    driver.close()
    assert [r[2:] for r in sim.requests] == [(0xA0, 2), (0xC0, 2), (0xE0, 2), (0x100, 2)]


def test_nan_register_is_a_fault_without_value(sim: ModbusSim) -> None:
    p = load_profile("gas-f32-le")
    words = {s.address: encode(1.0, s) for s in p.registers}
    words[2] = [0x0000, 0x7FC0]  # NaN, low word first
    port = sim.tcp({1: Unit(input=words)})
    driver = _driver("gas-f32-le", f"127.0.0.1:{port}")
    samples = {s.quantity: s for s in driver.read()}
    driver.close()
    assert samples["so2"].raw is None and samples["so2"].flag is Flag.FAULT
    assert "no valid measurement" in (samples["so2"].why or "")
    assert samples["no2"].raw == 1.0 and samples["no2"].flag is Flag.NORMAL


TWO_BLOCKS = """
[model]
name = "two-blocks"
protocol = "modbus"
[[register]]
quantity = "temp"
address = 0
scale = 0.1
type = "int16"
[[register]]
quantity = "rh"
address = 10
scale = 0.1
"""


def test_an_exception_response_faults_only_its_block(sim: ModbusSim) -> None:
    port = sim.tcp({1: Unit(holding={0: [215]})})
    sensor = _sensor("rs-ws-n01", f"127.0.0.1:{port}")
    profile = loads_profile(TWO_BLOCKS, source="two-blocks.toml")
    driver = ModbusDriver(sensor, profile, clock=FakeClock())
    samples = {s.quantity: s for s in driver.read()}
    driver.close()
    assert samples["temp"].raw == pytest.approx(21.5) and samples["temp"].flag is Flag.NORMAL
    assert samples["rh"].raw is None and samples["rh"].flag is Flag.FAULT
    assert "exception response 2 (illegal data address)" in (samples["rh"].why or "")


def test_a_device_refusing_everything_is_a_device_fault(sim: ModbusSim) -> None:
    port = sim.tcp({1: Unit(holding={100: [1]})})
    driver = _driver("rs-pm-n01", f"127.0.0.1:{port}")
    with pytest.raises(DeviceError) as err:
        driver.read()
    driver.close()
    assert not isinstance(err.value, DeviceTimeout)
    assert err.value.fields["exception_code"] == 2
    assert failure_flag(err.value) is Flag.FAULT


def test_silence_is_a_timeout_after_the_devices_own_retries(sim: ModbusSim) -> None:
    port = sim.tcp({1: Unit(holding={0: [1, 2, 3]})})
    sim.silence(1)
    driver = _driver("rs-pm-n01", f"127.0.0.1:{port}", retries=2, timeout_s=0.1)
    with pytest.raises(DeviceTimeout) as err:
        driver.read()
    assert str(err.value) == "dev: no answer to FC3 read of 3 at 0 within 0.1 s (3 attempts)"
    assert failure_flag(err.value) is Flag.COMM_FAULT
    assert sim.asked(1) == 3  # one request and two retries, no more
    sim.wake(1)
    assert [s.raw for s in driver.read()] == [1, 2, 3]  # the same link carries on
    driver.close()


def test_a_broken_checksum_is_not_taken_as_an_answer(sim: ModbusSim) -> None:
    with PtyPair() as pair:
        sim.rtu(pair.a, {1: Unit(holding={0: [9, 8, 7]})})
        driver = _driver("rs-pm-n01", pair.b, "modbus-rtu", timeout_s=0.2)
        sim.corrupt.add(1)
        with pytest.raises(DeviceError) as err:
            driver.read()
        assert failure_flag(err.value) is Flag.COMM_FAULT
        sim.corrupt.clear()
        assert [s.raw for s in driver.read()] == [9, 8, 7]
        driver.close()


def test_nothing_listening_is_a_communication_fault() -> None:
    driver = _driver("rs-pm-n01", f"127.0.0.1:{free_port()}")
    with pytest.raises(DeviceError) as err:
        driver.read()
    driver.close()
    assert "cannot open modbus-tcp:127.0.0.1:" in str(err.value)
    assert failure_flag(err.value) is Flag.COMM_FAULT


def test_a_missing_serial_port_is_a_communication_fault(tmp_path) -> None:
    driver = _driver("rs-pm-n01", str(tmp_path / "ttyUSB9"), "modbus-rtu")
    with pytest.raises(DeviceError) as err:
        driver.read()
    driver.close()
    assert failure_flag(err.value) is Flag.COMM_FAULT


def test_a_restarted_tcp_device_is_read_again() -> None:
    with ModbusSim() as first:
        port = first.tcp({1: Unit(holding={0: [1, 2, 3]})})
        driver = _driver("rs-pm-n01", f"127.0.0.1:{port}")
        assert [s.raw for s in driver.read()] == [1, 2, 3]
    with pytest.raises(DeviceError):
        driver.read()
    with ModbusSim() as second:
        second.tcp_on(port, {1: Unit(holding={0: [4, 5, 6]})})
        assert [s.raw for s in driver.read()] == [4, 5, 6]
    driver.close()


def test_rtu_line_with_several_units_and_writes(sim: ModbusSim) -> None:
    with PtyPair() as pair:
        sim.rtu(pair.a, {
            1: Unit(holding={0: [0x0292, 0xFF9B]}),
            2: Unit(holding={0: [123], 7: [0]}),
            3: Unit(holding={0: [10, 20, 30]}),
        })  # fmt: skip
        clock = FakeClock()
        link = ModbusLink(LinkSettings("modbus-rtu", pair.b), clock=clock)
        read = {}
        for unit, profile in ((1, "rs-ws-n01"), (2, "rs-fs-n01"), (3, "rs-pm-n01")):
            sensor = _sensor(profile, pair.b, "modbus-rtu", unit_id=unit)
            driver = ModbusDriver(sensor, load_profile(profile), clock=clock, link=link)
            read[unit] = [s.raw for s in driver.read()]
            driver.close()  # a driver on a shared link leaves the link open
        assert read[1] == pytest.approx([65.8, -10.1])
        assert read[2] == pytest.approx([12.3])
        assert read[3] == [10, 20, 30]
        link.write_coil(3, 0, True)
        link.write_register(2, 7, 0x1234)
        assert sim.writes[-2:] == [(3, 5, 0, [True]), (2, 6, 7, [0x1234])]
        assert link.read(2, 3, 7, 1, timeout_s=0.5, retries=0) == [0x1234]
        link.close()


def test_rtu_requests_keep_the_inter_frame_gap() -> None:
    settings = LinkSettings("modbus-rtu", "/dev/null", baudrate=9600)
    assert settings.frame_gap_s == pytest.approx(3.5 * 10 / 9600)
    assert LinkSettings("modbus-rtu", "/x", baudrate=115200).frame_gap_s == 0.00175
    assert LinkSettings("modbus-tcp", "h:1").frame_gap_s == 0.0
    assert math.isclose(LinkSettings("modbus-rtu", "/x", 9600, "E").frame_gap_s, 3.5 * 11 / 9600)


def test_the_gap_is_kept_between_requests_on_a_line(sim: ModbusSim) -> None:
    with PtyPair() as pair:
        sim.rtu(pair.a, {1: Unit(holding={0: [1]})})
        clock = FakeClock()  # only the link's own waiting moves it
        link = ModbusLink(LinkSettings("modbus-rtu", pair.b, baudrate=9600), clock=clock)
        start = clock.monotonic()
        for _ in range(3):
            link.read(1, 3, 0, 1, timeout_s=0.5, retries=0)
        link.close()
        assert clock.monotonic() - start == pytest.approx(2 * link.settings.frame_gap_s)

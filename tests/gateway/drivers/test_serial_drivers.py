"""PMS5003 and SDS011 drivers over a real pty pair, against a sensor thread on the other end."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import serial

from firmware_sim.ptypair import PtyPair
from gateway.clock import FakeClock
from gateway.drivers import failure_flag, open_driver
from gateway.errors import DeviceError, DeviceTimeout
from gateway.model import Flag
from gateway.profiles import load_profile
from protocols import pms5003
from tests.gateway.serial_sim import UartSensor
from tests.gateway.station_text import station


@pytest.fixture
def pair() -> Iterator[PtyPair]:
    with PtyPair() as p:
        yield p


def _driver(profile: str, path: str, mode: str = "active", timeout_s: float = 1.0):
    sensor = station([{
        "name": "pm", "profile": profile, "transport": "serial", "address": path,
        "mode": mode, "timeout_s": timeout_s,
    }]).sensors[0]  # fmt: skip
    return open_driver(sensor, load_profile(profile), clock=FakeClock())


@pytest.mark.parametrize("kind", ["pms5003", "sds011"])
@pytest.mark.parametrize("mode", ["active", "query"])
def test_reads_fresh_values_in_both_modes(pair: PtyPair, kind: str, mode: str) -> None:
    device = UartSensor(pair.a, kind)
    driver = _driver(kind, pair.b, mode)
    try:
        device.set(pm1=3, pm25=4.2 if kind == "sds011" else 4, pm10=7)
        first = {s.quantity: s.raw for s in driver.read()}
        device.set(pm1=10, pm25=20, pm10=30)
        second = {s.quantity: s.raw for s in driver.read()}
        if mode == "active" and second == first:
            # a frame already on its way when the values changed is still a fresh frame
            second = {s.quantity: s.raw for s in driver.read()}
    finally:
        driver.close()
        device.close()
    if kind == "pms5003":
        assert first == {"pm1": 3, "pm25": 4, "pm10": 7}
        assert second == {"pm1": 10, "pm25": 20, "pm10": 30}
        setup = ["wake", "passive" if mode == "query" else "active"]
    else:
        assert first == pytest.approx({"pm25": 4.2, "pm10": 7.0})
        assert second == pytest.approx({"pm25": 20.0, "pm10": 30.0})
        setup = ["sleep_work=1", f"reporting_mode={1 if mode == 'query' else 0}"]
    assert device.commands[:2] == setup
    requests = device.commands[2:]
    if mode == "query":  # one request per poll
        assert requests == (["read"] * 2 if kind == "pms5003" else ["query_data"] * 2)
    else:
        assert requests == []


@pytest.mark.parametrize("kind", ["pms5003", "sds011"])
def test_resynchronises_after_garbage_and_broken_frames(pair: PtyPair, kind: str) -> None:
    device = UartSensor(pair.a, kind)
    driver = _driver(kind, pair.b, "query")
    try:
        driver.read()
        good = device.frame()
        broken = good[:-3] + bytes([good[-3] ^ 0x01]) + good[-2:]
        device.garbage = b"\x00\xff noise \x42\x4d\x00" + good[:7] + broken + b"\xaa\xaa"
        device.set(pm25=55, pm10=66)
        got = {s.quantity: s.raw for s in driver.read()}
        assert got["pm25"] == 55 and got["pm10"] == 66
        assert driver.bad_frames >= 1
    finally:
        driver.close()
        device.close()


def test_only_garbage_is_a_communication_fault_with_the_codecs_reason(pair: PtyPair) -> None:
    device = UartSensor(pair.a, "pms5003")
    driver = _driver("pms5003", pair.b, "query", timeout_s=0.3)
    try:
        driver.read()
        frame = device.frame()
        device.garbage = frame[:-1] + bytes([frame[-1] ^ 0xFF])  # then the frame
        device.silent = False
        # every frame from now on has a bad checksum
        device.frame = lambda: frame[:-1] + bytes([frame[-1] ^ 0xFF])  # type: ignore[method-assign]
        with pytest.raises(DeviceError) as err:
            driver.read()
    finally:
        driver.close()
        device.close()
    assert not isinstance(err.value, DeviceTimeout)
    assert "no valid frame within 0.3 s" in str(err.value) and "checksum" in str(err.value)
    assert failure_flag(err.value) is Flag.COMM_FAULT


def test_a_sensor_that_stopped_is_not_read_from_its_old_frames(pair: PtyPair) -> None:
    device = UartSensor(pair.a, "pms5003", period_s=0.01)
    driver = _driver("pms5003", pair.b, "active", timeout_s=0.3)
    try:
        assert [s.raw for s in driver.read()] == [3, 4, 7]
        # it streams on for a while, then dies; its last frames are still in the buffer
        sent = device.sent
        while device.sent < sent + 3:
            threading.Event().wait(0.01)
        device.go_silent()
        threading.Event().wait(0.2)  # let the cable deliver what was already sent
        with pytest.raises(DeviceTimeout, match=r"pm: no frame within 0\.3 s"):
            driver.read()
        device.silent = False
        assert [s.raw for s in driver.read()] == [3, 4, 7]
    finally:
        driver.close()
        device.close()


def test_pms5003_error_byte_flags_the_values(pair: PtyPair) -> None:
    device = UartSensor(pair.a, "pms5003")
    device.error = 0x20
    driver = _driver("pms5003", pair.b, "query")
    try:
        samples = driver.read()
    finally:
        driver.close()
        device.close()
    assert {s.flag for s in samples} == {Flag.FAULT}
    assert [s.raw for s in samples] == [3, 4, 7]
    assert "error code 0x20" in (samples[0].why or "")


def test_a_missing_port_is_a_communication_fault(tmp_path) -> None:
    driver = _driver("sds011", str(tmp_path / "ttyUSB0"))
    with pytest.raises(DeviceError, match="pm: cannot open") as err:
        driver.read()
    assert failure_flag(err.value) is Flag.COMM_FAULT


def test_reference_frame_p1_through_the_driver(pair: PtyPair) -> None:
    # P1: CF1 PM1/2.5/10 = 3/4/7, atmospheric = 4/5/8 (the profile reports atmospheric)
    p1 = bytes.fromhex(
        "424d001c00030004000700040005000803 1b00f9001b0006000300039a0002a2".replace(" ", "")
    )
    assert pms5003.parse_frame(p1)["pm25"] == 5
    driver = _driver("pms5003", pair.b, "active")
    with serial.Serial(pair.a, 9600, timeout=0.1) as device:
        stop = threading.Event()

        def stream() -> None:
            while not stop.wait(0.02):
                device.write(p1)

        t = threading.Thread(target=stream, daemon=True)
        t.start()
        try:
            assert {s.quantity: s.raw for s in driver.read()} == {"pm1": 4, "pm25": 5, "pm10": 8}
        finally:
            stop.set()
            t.join()
            driver.close()

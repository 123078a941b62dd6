"""``gateway scan`` against real devices: an RS485 line over a pty pair, a Modbus TCP
endpoint, and particle sensors that stream or wait to be asked."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from firmware_sim.ptypair import PtyPair
from gateway.clock import SystemClock
from gateway.profiles import load_profile
from gateway.scan import parse_port, parse_units, scan
from protocols.errors import InputError
from protocols.registers import encode
from tests.gateway.modbus_sim import ModbusSim, Unit
from tests.gateway.serial_sim import UartSensor


def words(profile: str, values: dict[str, float]) -> dict[int, list[int]]:
    p = load_profile(profile)
    return {s.address: encode(values[s.quantity], s) for s in p.registers}


LOUVER = {"rh": 55.5, "temp": 21.3, "noise": 61.2, "pm25": 35, "pm10": 80, "pressure": 1012}
GAS = {"no2": 41.25, "so2": 7.5, "co": 0.875, "o3": 96.0}


@pytest.fixture
def line() -> Iterator[str]:
    with ModbusSim() as sim, PtyPair() as pair:
        sim.rtu(pair.a, {
            1: Unit(holding={0: [0x0292, 0xFF9B]}),
            3: Unit(holding=words("louver-box", LOUVER)),
            5: Unit(input=words("gas-f32-le", GAS)),
        })  # fmt: skip
        yield pair.b


def test_scan_finds_each_unit_and_its_profile(line: str) -> None:
    found = scan(line, clock=SystemClock(), units=parse_units("1-6"), baudrates=[9600],
                 timeout_s=0.5, listen_s=0)  # fmt: skip
    assert [f.unit_id for f in found] == [1, 3, 5]
    best = {f.unit_id: f.candidates[0] for f in found}
    assert best == {1: "rs-ws-n01", 3: "louver-box", 5: "gas-f32-le"}
    by = {f.unit_id: f for f in found}
    assert by[1].values == pytest.approx({"rh": 65.8, "temp": -10.1})
    assert by[3].values == pytest.approx(LOUVER)
    assert by[5].values == pytest.approx(GAS)
    assert by[3].sensor_toml("box").splitlines() == [
        "[[sensor]]", 'name = "box"', 'profile = "louver-box"', 'transport = "modbus-rtu"',
        f'address = "{line}"', "unit_id = 3", "baudrate = 9600",
    ]  # fmt: skip


def test_scan_command_on_a_tcp_endpoint(cli) -> None:
    with ModbusSim() as sim:
        port = sim.tcp({2: Unit(holding={0: [35, 80, 120]})})
        r = cli("gateway", "scan", "--port", f"127.0.0.1:{port}", "--units", "1-3",
                "--timeout", "0.5", "--json")  # fmt: skip
    assert r.code == 0, r.stderr
    (device,) = [json.loads(line) for line in r.stdout.splitlines()]
    assert device["transport"] == "modbus-tcp" and device["unit_id"] == 2
    assert device["profiles"][0] == "rs-pm-n01"
    assert device["values"] == {"pm25": 35, "pm10": 80, "tsp": 120}
    assert device["baudrate"] is None


def test_scan_command_prints_a_sensor_block(cli, line: str) -> None:
    r = cli("gateway", "scan", "--port", line, "--units", "3", "--baud", "9600",
            "--timeout", "1", "--listen", "0")  # fmt: skip
    assert r.code == 0, r.stderr
    assert "9600 8N1 unit 3: louver-box" in r.stdout
    assert 'profile = "louver-box"' in r.stdout and "unit_id = 3" in r.stdout
    assert "scanning modbus-rtu:" in r.stderr  # progress goes to stderr


@pytest.mark.parametrize("mode", ["active", "query"])
def test_scan_recognises_a_particle_sensor(mode: str) -> None:
    with PtyPair() as pair:
        device = UartSensor(pair.a, "sds011")
        if mode == "query":
            device.mode = "query"
        try:
            found = scan(pair.b, clock=SystemClock(), units=[1], baudrates=[9600],
                         timeout_s=0.05, listen_s=0.5)  # fmt: skip
        finally:
            device.close()
    (f,) = found
    assert (f.protocol, f.transport, f.candidates) == ("sds011", "serial", ("sds011",))
    assert f.values == {"pm25": 4.0, "pm10": 7.0}
    assert ("query mode" in f.note) == (mode == "query")


def test_nothing_there(cli) -> None:
    with PtyPair() as pair:
        found = scan(pair.b, clock=SystemClock(), units=[1, 2], baudrates=[9600],
                     timeout_s=0.05, listen_s=0.1)  # fmt: skip
        assert found == []
        r = cli("gateway", "scan", "--port", pair.b, "--units", "1", "--baud", "9600",
                "--timeout", "0.05", "--listen", "0")  # fmt: skip
    assert r.code == 0 and r.stdout.strip() == f"no device answered on {pair.b}"


def test_arguments() -> None:
    assert parse_units("1-3,7, 5") == [1, 2, 3, 7, 5]
    assert parse_port("/dev/ttyUSB0") == "modbus-rtu"
    assert parse_port("10.0.0.7:502") == "modbus-tcp"
    for bad in ("0-3", "5-2", "x", "1-300"):
        with pytest.raises(InputError, match="--units"):
            parse_units(bad)
    with pytest.raises(InputError, match="--port"):
        parse_port("ttyUSB0")


def test_bad_arguments_exit_2(cli) -> None:
    for args in (
        ["--port", "nowhere"],
        ["--port", "/dev/null", "--units", "0"],
        ["--port", "/dev/null", "--baud", "fast"],
    ):
        r = cli("gateway", "scan", *args)
        assert r.code == 2 and r.stderr.count("\n") == 1, r.stderr
        assert r.stderr.startswith("airtrace: error: --")

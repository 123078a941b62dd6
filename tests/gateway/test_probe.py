"""``gateway probe``: one device's raw registers (or frame) and decoded values, by station
config or by explicit transport arguments."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from firmware_sim.ptypair import PtyPair
from gateway.clock import SystemClock
from gateway.probe import probe, render, target
from tests.gateway.modbus_sim import ModbusSim, Unit
from tests.gateway.serial_sim import UartSensor
from tests.gateway.station_text import station_toml


def test_probe_a_configured_sensor(cli, tmp_path: Path) -> None:
    with ModbusSim() as sim:
        port = sim.tcp({4: Unit(holding={0: [0x0292, 0xFF9B], 2: [7]})})
        cfg = tmp_path / "station.toml"
        cfg.write_text(station_toml([{
            "name": "th", "profile": "rs-ws-n01", "transport": "modbus-tcp",
            "address": f"127.0.0.1:{port}", "unit_id": 4,
        }]))  # fmt: skip
        r = cli("gateway", "probe", "--config", str(cfg), "--sensor", "th", "--raw", "3:0:3")
        j = cli("gateway", "probe", "-c", str(cfg), "-s", "th", "--raw", "3:5:1", "--json")
    assert r.code == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == f"th: profile rs-ws-n01 (modbus), unit 4 on modbus-tcp:127.0.0.1:{port}"
    assert lines[1] == "  FC3 holding 0..1 (0000H..0001H): 0292 FF9B"
    assert lines[2].split() == ["rh", "uint16", "[0292]", "->", "65.8", "%RH"]
    assert lines[3].split() == ["temp", "int16", "[FF9B]", "->", "-10.1", "Cel"]
    assert lines[4] == "  FC3 holding 0..2 (0000H..0002H): 0292 FF9B 0007"
    assert j.code == 0, j.stderr
    doc = json.loads(j.stdout)
    assert doc["reads"][0]["registers"][0] == {
        "quantity": "rh", "type": "uint16", "words": [0x0292], "value": 65.8, "unit": "%RH",
        "problem": None,
    }  # fmt: skip
    assert doc["reads"][1]["words"] is None
    assert "exception response 2 (illegal data address)" in doc["reads"][1]["error"]


def test_probe_by_explicit_arguments_over_rtu() -> None:
    with ModbusSim() as sim, PtyPair() as pair:
        sim.rtu(pair.a, {9: Unit(holding={0: [34]})})
        sensor, profile = target(None, None, pair.b, "rs-fs-n01", 9, None, None, None,
                                 "active", 1.0)  # fmt: skip
        assert (sensor.transport, sensor.baudrate, sensor.unit_id) == ("modbus-rtu", 4800, 9)
        result = probe(sensor, profile, clock=SystemClock())
    assert result.error is None
    (read,) = result.reads
    assert read.words == (34,) and read.mapped[0][3] == pytest.approx(3.4)


def test_a_silent_device_exits_1_with_one_line(cli) -> None:
    with PtyPair() as pair:
        r = cli("gateway", "probe", "--port", pair.b, "--profile", "rs-pm-n01", "--unit", "3",
                "--timeout", "0.1")  # fmt: skip
    assert r.code == 1
    assert r.stderr.strip() == (
        "airtrace: error: probe: no answer to FC3 read of 3 at 0 within 0.1 s (1 attempt)"
    )
    assert r.stdout.startswith("probe: profile rs-pm-n01 (modbus), unit 3 on modbus-rtu:")


def test_probe_a_particle_sensor_shows_its_frame() -> None:
    with PtyPair() as pair:
        device = UartSensor(pair.a, "pms5003")
        try:
            sensor, profile = target(None, None, pair.b, "pms5003", 1, None, None, None,
                                     "query", 1.0)  # fmt: skip
            result = probe(sensor, profile, clock=SystemClock())
        finally:
            device.close()
    assert result.frame is not None and result.frame["pm25"] == 4
    text = render(result)
    assert "frame: model=pms5003, kind=data" in text
    assert [(s.quantity, s.raw) for s in result.samples] == [("pm1", 3), ("pm25", 4), ("pm10", 7)]


def test_usage_mistakes_exit_2(cli, tmp_path: Path) -> None:
    cfg = tmp_path / "station.toml"
    cfg.write_text(
        station_toml(
            [
                {
                    "name": "th",
                    "profile": "rs-ws-n01",
                    "transport": "modbus-tcp",
                    "address": "127.0.0.1:1502",
                }
            ]
        )
    )
    cases = [
        (["--config", str(cfg)], "--config needs --sensor NAME"),
        (["--config", str(cfg), "--sensor", "pm"], "no [[sensor]] 'pm'; there are: th"),
        (["--port", "/dev/null"], "give --config and --sensor, or --port and --profile"),
        (["--port", "/dev/null", "--profile", "nope"], "unknown profile 'nope'"),
        (["--port", "x:1", "--profile", "rs-fs-n01", "--raw", "5:0:1"], "--raw '5:0:1'"),
        (["--port", "/dev/null", "--profile", "sds011", "--raw", "3:0:1"], "only for Modbus"),
    ]  # fmt: skip
    for args, message in cases:
        r = cli("gateway", "probe", *args)
        assert r.code == 2, (args, r.stderr)
        assert message in r.stderr and r.stderr.count("\n") == 1, r.stderr

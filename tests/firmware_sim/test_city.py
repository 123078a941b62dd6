"""A simulated district from the synthetic world: its devices answer real clients with the
world's readings, and each station config is one a gateway accepts."""

from __future__ import annotations

import math
import re
import signal
from pathlib import Path

import pytest
import serial
from pymodbus.client import ModbusSerialClient, ModbusTcpClient

from firmware_sim.city import start_city
from firmware_sim.city_config import CityConfig, load_config, loads_config
from firmware_sim.clock import ManualClock
from firmware_sim.world import World
from gateway.config import load as load_station
from gateway.profiles import load_profile
from protocols import pms5003, sds011
from protocols.errors import ConfigError
from protocols.registers import decode
from tests.sim_fixtures import Hj212Platform, wait_for

START = 1_750_000_020.0  # 2025-06-15 15:07:00 UTC


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    config = CityConfig(
        seed=11,
        stations=20,
        transports=("modbus-tcp", "modbus-rtu", "serial", "hj212"),
        rtu_every=6,
        serial_every=4,
        max_pty=6,
        out=tmp_path_factory.mktemp("city"),
    )
    c = start_city(config, clock=ManualClock(START))
    yield c
    c.stop()


def _read(client, station, sensor) -> dict[str, float]:
    profile = load_profile(sensor.profile)
    out = {}
    for block in profile.blocks():
        read = client.read_holding_registers if block.function == 3 else client.read_input_registers
        words = read(block.address, count=block.count, device_id=sensor.unit_id).registers
        for spec in block.specs:
            out[spec.quantity] = decode(block.extract(words, spec), spec)
    return out


def test_every_station_config_is_one_a_gateway_accepts(city) -> None:
    world = city.world
    assert isinstance(world, World) and len(city.stations) == len(world.stations) == 20
    assert {s.kind for s in city.stations} == {"reference", "micro", "dust", "met"}
    for station in city.stations:
        config = load_station(city.station_configs[station.id])
        truth = world.station(station.id)
        assert config.station.id == station.id and config.station.kind == truth.kind
        assert math.isclose(config.station.lat, truth.lat, abs_tol=1e-6)
        assert config.station.inlet_height_m == truth.z_m
        assert config.outbox.path.name == f"{station.id}.db"
        assert [s.name for s in config.sensors] == [s.name for s in station.sensors]
        if station.kind == "dust":
            assert config.actuators[0].name == "spray" and config.actuators[0].coil == 0
    transports = {s.transport for st in city.stations for s in st.sensors}
    assert transports == {"modbus-tcp", "modbus-rtu", "serial", "hj212-tcp"}
    assert any(s.site for s in city.stations if s.kind == "dust")


def test_modbus_devices_show_what_the_world_says(city) -> None:
    world, t = city.world, city.clock.now()
    checked = 0
    for station in city.stations:
        for sensor in station.sensors:
            if sensor.transport == "modbus-tcp":
                host, port = sensor.address.rsplit(":", 1)
                client = ModbusTcpClient(host, port=int(port), timeout=2, retries=0)
            elif sensor.transport == "modbus-rtu":
                client = ModbusSerialClient(sensor.address, baudrate=9600, timeout=1, retries=0)
            else:
                continue
            assert client.connect()
            try:
                got = _read(client, station, sensor)
            finally:
                client.close()
            for spec in load_profile(sensor.profile).registers:
                expected = world.sensor_value(station.id, spec.quantity, t)
                assert got[spec.quantity] == pytest.approx(
                    expected, abs=spec.scale / 2 + 1e-4 * abs(expected) + 0.51
                ), (station.id, sensor.name, spec.quantity)
                checked += 1
    assert checked > 40


def test_faults_and_the_spray_by_station_and_sensor(city) -> None:
    dust = next(s for s in city.stations if s.kind == "dust" and s.actuators)
    spray = dust.actuators[0]
    client = _client(spray.transport, spray.address)
    try:
        assert not client.write_coil(0, True, device_id=spray.unit_id).isError()
        city.faults(dust.id, "spray").kill()
        with pytest.raises(Exception, match="No response"):
            client.read_coils(0, count=1, device_id=spray.unit_id)
        city.faults(dust.id, "spray").revive()
        assert client.read_coils(0, count=1, device_id=spray.unit_id).bits[0] is True
    finally:
        client.close()
    assert [(e.channel, e.on) for e in city.spray_history(dust.id)] == [(0, True)]
    with pytest.raises(KeyError, match="no sensor"):
        city.faults(dust.id, "nothing")


def _client(transport: str, address: str):
    if transport == "modbus-tcp":
        host, port = address.rsplit(":", 1)
        client = ModbusTcpClient(host, port=int(port), timeout=0.5, retries=0)
    else:
        client = ModbusSerialClient(address, baudrate=9600, timeout=0.5, retries=0)
    assert client.connect()
    return client


def test_dust_monitor_reports_to_its_gateway_port(city) -> None:
    dust = next(s for s in city.stations if s.sensors and s.sensors[0].transport == "hj212-tcp")
    sensor = dust.sensors[0]
    host, port = sensor.address.rsplit(":", 1)
    gateway = Hj212Platform(host=host, port=int(port)).start()  # plays the station's gateway
    try:
        city.clock.advance(30)
        packet = wait_for(lambda: gateway.received("2011"), timeout=15, what="a packet")[0]
    finally:
        gateway.stop()
    assert packet.mn == sensor.hj212_mn and packet.pw == sensor.hj212_password
    sampled_at = packet.data_time.timestamp()  # packets made before the gateway was up wait
    world_pm10 = city.world.sensor_value(dust.id, "pm10", sampled_at)
    assert packet.value("a34002") == pytest.approx(world_pm10, abs=0.06)


def test_serial_particle_sensors_stream(city) -> None:
    serials = [(st, s) for st in city.stations for s in st.sensors if s.transport == "serial"]
    assert {s.profile for _, s in serials} == {"pms5003", "sds011"}
    for station, sensor in serials:
        stream = pms5003.Pms5003Stream() if sensor.profile == "pms5003" else sds011.Sds011Stream()
        with serial.Serial(sensor.address, 9600, timeout=0.05) as port:
            port.reset_input_buffer()

            def frames(port=port, stream=stream) -> list[dict]:
                city.clock.advance(1.0)
                return [f for f in stream.feed(port.read(256)) if isinstance(f, dict)]

            frame = wait_for(frames, what=f"{sensor.profile} frames")[-1]
        expected = city.world.sensor_value(station.id, "pm25", city.clock.now())
        assert frame["pm25"] == pytest.approx(expected, rel=0.2, abs=2.0)


def test_district_file_is_strict(tmp_path: Path) -> None:
    config = loads_config(
        '[city]\nseed = 3\nstations = 30\nstart = "2026-06-01T00:00:00Z"\nrate = 120\n'
        'hj212_rtd_s = 300\nhj212_minute_min = 10\n'
        '[city.kinds]\nmicro = 3\ndust = 1\n[gateway]\nhj212 = "10.0.0.5:9000"\n',
        base=tmp_path,
    )
    assert (config.seed, config.stations, config.rate) == (3, 30, 120.0)
    assert (config.hj212_rtd_s, config.hj212_minute_min) == (300.0, 10)
    assert config.kinds == {"micro": 3.0, "dust": 1.0} and config.out == tmp_path / "city"
    assert config.start == 1_780_272_000.0
    for text, message in (
        ("[city]\nstaions = 3\n", 'unknown key "staions" (did you mean "stations"?)'),
        ('[city]\ntransports = ["carrier-pigeon"]\n', "unknown 'carrier-pigeon'"),
        ('[city]\ntransports = ["serial"]\n', "needs modbus-tcp or modbus-rtu"),
        ('[gateway]\nhj212 = "somewhere"\n', '"gateway" or host:port'),
        ("[city.kinds]\nfactory = 2\n", "unknown kind 'factory'"),
        ("[city]\nhj212_minute_min = 0\n", "hj212_minute_min"),
    ):
        with pytest.raises(ConfigError, match=re.escape(message)):
            loads_config(text, source="d.toml")
    with pytest.raises(ConfigError, match="no such city file"):
        load_config(tmp_path / "missing.toml")


@pytest.mark.slow
def test_sim_city_command(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    (tmp_path / "city.toml").write_text(
        '[city]\nseed = 5\nstations = 20\nrate = 30\nout = "out"\n'
        'transports = ["modbus-tcp", "hj212"]\n[gateway]\nmqtt = "mqtt://127.0.0.1:1884"\n'
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "airtrace", "sim", "city", "--config", str(tmp_path / "city.toml")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    lines = []
    assert proc.stdout is not None
    while not (lines and lines[-1].startswith("AIRTRACE_CLOCK=")):
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else ""
        lines.append(line.strip())
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode == 0
    configs = sorted((tmp_path / "out").glob("*.toml"))
    assert len(configs) == 20 and sum(" config " in line for line in lines) == 20
    station = load_station(configs[0])
    assert station.uplink.mqtt == "mqtt://127.0.0.1:1884"


def test_the_districts_devices_stop_side_by_side_and_a_failing_one_stops_none_of_the_rest(
    tmp_path: Path,
) -> None:
    """A device slow to stop (a socat to end, a peer that reads nothing) must not make the
    district's stop the sum of them all: every device's stop has begun before any ends.
    One that fails is logged and the others still stop."""
    import asyncio

    from firmware_sim.device import Device

    class Slow(Device):
        def __init__(self, name: str, fail: bool = False) -> None:
            super().__init__(name=name)
            self.fail = fail

        async def astart(self) -> None:
            self.running = True

        async def astop(self) -> None:
            entered.append(self.name)
            async with asyncio.timeout(10):  # all four have begun to stop, or none could
                while len(entered) < 4:
                    await asyncio.sleep(0.01)
            self.running = False
            if self.fail:
                raise OSError("the cable would not unplug")
            stopped.append(self.name)

    entered: list[str] = []
    stopped: list[str] = []
    config = CityConfig(seed=3, stations=20, transports=("modbus-tcp",), out=tmp_path)
    c = start_city(config, clock=ManualClock(START))
    real = c.all_devices()
    c.stop()  # the district's own devices; the slow ones go in their place
    c.running = True
    slow = [Slow("a"), Slow("b", fail=True), Slow("c"), Slow("d")]
    for d in slow:
        d.start()
    c.devices = {"S": {d.name: d for d in slow}}
    c.stop()
    assert sorted(entered) == ["a", "b", "c", "d"]
    assert sorted(stopped) == ["a", "c", "d"]
    assert not any(d.running for d in real)

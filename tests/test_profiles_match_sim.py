"""The gateway's built-in device profiles and firmware_sim's simulated models are written
independently from the same manuals; each profile must read its simulated device right.

For every built-in Modbus profile: start the simulated model of that name, read it with a
real pymodbus client the way the gateway plans it (``Profile.blocks()``), decode with the
profile and get the simulated values back, to the register's resolution. A mismatch is a
bug in one of the two.
"""

from __future__ import annotations

import pytest
from pymodbus.client import ModbusSerialClient, ModbusTcpClient

from firmware_sim.models import MODELS
from gateway.profiles import builtin_profiles, load_profile
from protocols.registers import decode

MODBUS_PROFILES = [n for n in builtin_profiles() if load_profile(n).protocol == "modbus"]

VALUE_SETS = {
    "mild": {
        "pm1": 21.4, "pm25": 37.0, "pm10": 83.0, "tsp": 149.0,
        "rh": 63.4, "temp": 17.3, "pressure": 1007.0, "noise": 61.7,
        "wind_speed": 4.6, "wind_dir": 212.0,
        "no2": 41.3, "so2": 7.9, "co": 0.93, "o3": 58.2, "co2": 433.5,
    },
    "winter smog": {
        "pm1": 180.2, "pm25": 286.0, "pm10": 455.0, "tsp": 912.0,
        "rh": 91.2, "temp": -17.6, "pressure": 1031.0, "noise": 44.2,
        "wind_speed": 0.3, "wind_dir": 11.0,
        "no2": 121.7, "so2": 64.0, "co": 3.1, "o3": 12.5, "co2": 512.0,
    },
}  # fmt: skip


def _read(client, profile, unit_id: int) -> dict[str, float]:
    out = {}
    for block in profile.blocks():
        read = client.read_holding_registers if block.function == 3 else client.read_input_registers
        response = read(block.address, count=block.count, device_id=unit_id)
        assert not response.isError(), f"{profile.name}: block at {block.address}: {response}"
        for spec in block.specs:
            out[spec.quantity] = decode(block.extract(response.registers, spec), spec)
    return out


def _check(profile, got: dict[str, float], values: dict[str, float]) -> None:
    for spec in profile.registers:
        expected = values[spec.quantity]
        tolerance = abs(spec.scale) / 2 + 1e-4 * abs(expected) + 1e-9
        assert got[spec.quantity] == pytest.approx(expected, abs=tolerance), (
            f"{profile.name} {spec.quantity}: profile decodes {got[spec.quantity]}, "
            f"the simulated device shows {expected}"
        )


def test_every_builtin_modbus_profile_has_a_simulated_model() -> None:
    assert MODBUS_PROFILES, "no built-in Modbus profiles found"
    assert [n for n in MODBUS_PROFILES if n not in MODELS] == []


@pytest.mark.parametrize("values", list(VALUE_SETS), ids=list(VALUE_SETS))
@pytest.mark.parametrize("name", MODBUS_PROFILES)
def test_profile_reads_its_simulated_device_over_tcp(name, values, modbus_tcp_device) -> None:
    profile = load_profile(name)
    unit_id = profile.defaults.unit_id or 1
    dev = modbus_tcp_device(model=name, unit_ids=(unit_id,), source=VALUE_SETS[values])
    client = ModbusTcpClient("127.0.0.1", port=dev.port, timeout=2, retries=0)
    assert client.connect()
    try:
        got = _read(client, profile, unit_id)
    finally:
        client.close()
    _check(profile, got, VALUE_SETS[values])
    sim_units = {r.spec.quantity: r.spec.unit for r in MODELS[name].registers}
    for spec in profile.registers:
        assert sim_units[spec.quantity] == spec.unit, f"{name} {spec.quantity}: unit differs"


def test_all_profiles_read_one_rtu_bus(modbus_rtu_bus) -> None:
    """The same, every model on one RS485 line at its own unit id."""
    units = {i + 1: name for i, name in enumerate(MODBUS_PROFILES)}
    bus = modbus_rtu_bus(units, source=VALUE_SETS["mild"])
    client = ModbusSerialClient(bus.address, baudrate=9600, timeout=1, retries=0)
    assert client.connect()
    try:
        for unit_id, name in units.items():
            profile = load_profile(name)
            _check(profile, _read(client, profile, unit_id), VALUE_SETS["mild"])
    finally:
        client.close()

"""Simulated Modbus devices answer a real pymodbus client over TCP and over a pty (RTU), and
each fault shows on the wire as a real client sees it."""

from __future__ import annotations

import pytest
import serial
from pymodbus.client import ModbusSerialClient, ModbusTcpClient
from pymodbus.exceptions import ModbusIOException

from firmware_sim.modbus import ModbusDevice
from protocols.registers import RegisterSpec, decode, modbus_crc16

VALUES = {"pm25": 35.0, "pm10": 80.0, "tsp": 121.0, "rh": 65.8, "temp": -10.1}


def _tcp(dev: ModbusDevice, timeout: float = 1.0) -> ModbusTcpClient:
    client = ModbusTcpClient("127.0.0.1", port=dev.port, timeout=timeout, retries=0)
    assert client.connect()
    return client


def _rtu(dev: ModbusDevice, timeout: float = 0.5) -> ModbusSerialClient:
    client = ModbusSerialClient(dev.address, baudrate=9600, timeout=timeout, retries=0)
    assert client.connect()
    return client


def _raw_request(port: serial.Serial, unit: int, address: int, count: int) -> bytes:
    """Send FC 3 by hand and return every byte that comes back within the timeout."""
    pdu = bytes([unit, 3]) + address.to_bytes(2, "big") + count.to_bytes(2, "big")
    port.reset_input_buffer()
    port.write(pdu + modbus_crc16(pdu).to_bytes(2, "little"))
    data = b""
    while chunk := port.read(64):
        data += chunk
    return data


def test_tcp_device_answers_with_the_values_of_its_source(modbus_tcp_device) -> None:
    dev = modbus_tcp_device(model="rs-pm-n01", unit_ids=(1, 2), source=VALUES)
    assert dev.transport == "modbus-tcp" and dev.address == f"127.0.0.1:{dev.port}"
    client = _tcp(dev)
    try:
        assert client.read_holding_registers(0, count=3, device_id=1).registers == [35, 80, 121]
        dev.unit(2).values.set("pm25", 250.4)
        assert client.read_holding_registers(0, count=1, device_id=2).registers == [250]
        assert client.read_holding_registers(0, count=1, device_id=1).registers == [35]
        # an address the transmitter does not have: exception 2, as real devices answer
        response = client.read_holding_registers(3, count=1, device_id=1)
        assert response.isError() and response.exception_code == 2
    finally:
        client.close()


def test_rtu_bus_has_several_units_on_one_line(modbus_rtu_bus) -> None:
    bus = modbus_rtu_bus({1: "rs-pm-n01", 2: "rs-ws-n01", 7: "gas-f32-le"}, source=VALUES)
    assert bus.transport == "modbus-rtu" and bus.address.startswith("/dev/")
    bus.unit(7).values.set(no2=41.25, so2=7.5, co=0.85, o3=66.0)
    client = _rtu(bus)
    try:
        assert client.read_holding_registers(0, count=3, device_id=1).registers == [35, 80, 121]
        rh, temp = client.read_holding_registers(0, count=2, device_id=2).registers
        assert (rh, temp) == (658, 0xFF9B)  # -10.1 degC as int16 x10, vector M2
        words = client.read_input_registers(0, count=8, device_id=7).registers
        spec = RegisterSpec("co", 4, function=4, type="float32", word_order="little")
        assert decode(words[4:6], spec) == pytest.approx(0.85)
    finally:
        client.close()


def test_rtu_frames_are_byte_exact_as_the_manual(modbus_rtu_bus) -> None:
    """Vectors M1/M2: the RS-WS-N01 answers 01 03 00 00 00 02 with 02 92 FF 9B and CRC."""
    bus = modbus_rtu_bus({1: "rs-ws-n01"}, source={"rh": 65.8, "temp": -10.1})
    with serial.Serial(bus.address, 4800, timeout=0.2) as port:
        assert _raw_request(port, 1, 0, 2) == bytes.fromhex("01 03 04 02 92 FF 9B 5A 3D")


def test_spray_coils_switch_and_keep_a_history(modbus_tcp_device) -> None:
    dev = modbus_tcp_device(model="spray-relay")
    client = _tcp(dev)
    try:
        assert not client.write_coil(0, True, device_id=1).isError()
        assert not client.write_register(1, 1, device_id=1).isError()  # the register mirror
        assert client.read_coils(0, count=4, device_id=1).bits[:4] == [True, True, False, False]
        assert not client.write_coils(0, [False, True], device_id=1).isError()
        assert client.read_holding_registers(0, count=4, device_id=1).registers == [0, 1, 0, 0]
        bad = client.write_register(2, 7, device_id=1)
        assert bad.isError() and bad.exception_code == 3
    finally:
        client.close()
    history = [(e.channel, e.on, e.via) for e in dev.unit(1).history]
    assert history == [(0, True, "coil"), (1, True, "register"), (0, False, "coil")]


def test_dead_unit_times_out_while_the_others_answer(modbus_rtu_bus) -> None:
    bus = modbus_rtu_bus({1: "rs-pm-n01", 2: "rs-ws-n01"}, source=VALUES)
    bus.unit(1).faults.kill()
    client = _rtu(bus, timeout=0.3)
    try:
        with pytest.raises(ModbusIOException):
            client.read_holding_registers(0, count=3, device_id=1)
        assert client.read_holding_registers(0, count=2, device_id=2).registers[0] == 658
        with pytest.raises(ModbusIOException):  # nobody has unit 9: silence
            client.read_holding_registers(0, count=1, device_id=9)
        bus.unit(1).faults.revive()
        assert client.read_holding_registers(0, count=1, device_id=1).registers == [35]
    finally:
        client.close()
    assert bus.unit(1).faults.events["silent"] == 1


def test_slow_unit_misses_a_short_timeout_and_meets_a_long_one(modbus_tcp_device) -> None:
    dev = modbus_tcp_device(source=VALUES)
    dev.faults.slow(0.5)
    impatient = _tcp(dev, timeout=0.1)
    try:
        with pytest.raises(ModbusIOException):
            impatient.read_holding_registers(0, count=1, device_id=1)
    finally:
        impatient.close()
    patient = _tcp(dev, timeout=3.0)
    try:
        assert patient.read_holding_registers(0, count=1, device_id=1).registers == [35]
    finally:
        patient.close()


def test_crc_corrupted_frames(modbus_rtu_bus) -> None:
    bus = modbus_rtu_bus({1: "rs-pm-n01"}, source=VALUES)
    bus.faults.corrupt_crc()
    with serial.Serial(bus.address, 9600, timeout=0.2) as port:
        frame = _raw_request(port, 1, 0, 3)
    assert frame[:9] == bytes.fromhex("01 03 06 00 23 00 50 00 79")
    assert modbus_crc16(frame[:-2]) != int.from_bytes(frame[-2:], "little")
    client = _rtu(bus, timeout=0.3)
    try:
        with pytest.raises(ModbusIOException):  # pymodbus drops a frame with a bad CRC
            client.read_holding_registers(0, count=3, device_id=1)
        bus.faults.corrupt_crc(0.0)
        assert client.read_holding_registers(0, count=3, device_id=1).registers == [35, 80, 121]
    finally:
        client.close()


def test_garbage_between_frames_is_on_the_line_and_skipped(modbus_rtu_bus) -> None:
    bus = modbus_rtu_bus({1: "rs-pm-n01"}, source=VALUES)
    bus.faults.garbage(6)
    with serial.Serial(bus.address, 9600, timeout=0.2) as port:
        data = _raw_request(port, 1, 0, 1)
    frame, noise = data[:7], data[7:]
    assert modbus_crc16(frame[:-2]) == int.from_bytes(frame[-2:], "little")
    assert len(noise) == 6
    client = _rtu(bus)
    try:
        for _ in range(3):  # the noise after each answer does not spoil the next one
            assert client.read_holding_registers(0, count=3, device_id=1).registers == [35, 80, 121]
    finally:
        client.close()
    assert bus.faults.events["garbage"] == 4


def test_stuck_drifting_and_dropping_out(modbus_tcp_device, sim_clock) -> None:
    dev = modbus_tcp_device(model="rs-ws-n01", source={"rh": 50.0, "temp": 20.0}, clock=sim_clock)
    client = _tcp(dev, timeout=0.3)
    try:
        dev.faults.stick("rh")
        assert client.read_holding_registers(0, count=1, device_id=1).registers == [500]
        dev.values.set("rh", 80.0)
        assert client.read_holding_registers(0, count=1, device_id=1).registers == [500]
        dev.faults.drift("temp", per_hour=2.0)
        sim_clock.advance(3 * 3600)
        assert client.read_holding_registers(1, count=1, device_id=1).registers == [260]
        dev.faults.clear()
        assert client.read_holding_registers(0, count=2, device_id=1).registers == [800, 200]
        dev.faults.dropout(0.5)
        answered = lost = 0
        for _ in range(12):
            try:
                client.read_holding_registers(0, count=1, device_id=1)
                answered += 1
            except ModbusIOException:
                lost += 1
    finally:
        client.close()
    assert answered and lost
    assert dev.faults.events["dropped"] == lost


def test_reboot_goes_silent_and_comes_back_fresh(modbus_tcp_device, sim_clock) -> None:
    dev = modbus_tcp_device(model="spray-relay", clock=sim_clock)
    client = _tcp(dev, timeout=0.3)
    try:
        client.write_coil(0, True, device_id=1)
        dev.faults.reboot(down_s=30)
        with pytest.raises(ModbusIOException):
            client.read_coils(0, count=1, device_id=1)
        sim_clock.advance(31)
        assert client.read_coils(0, count=1, device_id=1).bits[0] is False
    finally:
        client.close()
    assert [(e.on, e.via) for e in dev.unit(1).history] == [(True, "coil"), (False, "reboot")]


def test_unit_id_can_be_changed_in_its_config_register(modbus_rtu_bus) -> None:
    bus = modbus_rtu_bus({1: "rs-fs-n01"}, source={"wind_speed": 3.4})
    client = _rtu(bus)
    try:
        assert client.read_holding_registers(0x07D0, count=2, device_id=1).registers == [1, 1]
        assert not client.write_register(0x07D0, 12, device_id=1).isError()
        assert client.read_holding_registers(0, count=1, device_id=12).registers == [34]
    finally:
        client.close()
    assert sorted(bus.units) == [12]

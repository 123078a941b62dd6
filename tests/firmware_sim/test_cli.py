"""``airtrace sim ...`` as a user runs it: start, print the address, serve, stop on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest
import serial
from pymodbus.client import ModbusSerialClient, ModbusTcpClient

from protocols import hj212, pms5003
from tests.conftest import ROOT
from tests.sim_fixtures import wait_for


class Running:
    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "airtrace", "sim", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert self.proc.stdout is not None
        self.first_line = self.proc.stdout.readline().strip()
        assert self.first_line, "the command printed no address"
        self.stderr = ""

    def word(self, n: int) -> str:
        return self.first_line.split()[n]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            _, self.stderr = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
        return self.proc.returncode


@pytest.fixture
def sim() -> Iterator[type[Running]]:
    started: list[Running] = []

    def start(*args: str) -> Running:
        r = Running(*args)
        started.append(r)
        return r

    yield start  # type: ignore[misc]
    for r in started:
        r.stop()


def test_modbus_tcp_serves_until_sigterm(sim) -> None:
    run = sim("modbus-tcp", "--port", "0", "--unit", "3=rs-ws-n01", "--value", "temp=-4.2")
    assert run.word(0) == "modbus-tcp"
    host, port = run.word(1).rsplit(":", 1)
    client = ModbusTcpClient(host, port=int(port), timeout=2, retries=0)
    assert client.connect()
    try:
        assert client.read_holding_registers(1, count=1, device_id=3).registers == [0xFFD6]
    finally:
        client.close()
    assert run.stop() == 0


def test_modbus_rtu_with_a_dead_unit(sim) -> None:
    run = sim("modbus-rtu", "--unit", "1=rs-pm-n01", "--value", "pm25=77", "--dead")
    client = ModbusSerialClient(run.word(1), baudrate=9600, timeout=0.3, retries=0)
    assert client.connect()
    try:
        with pytest.raises(Exception, match="No response"):
            client.read_holding_registers(0, count=1, device_id=1)
    finally:
        client.close()
    assert run.stop() == 0


def test_pms5003_streams_on_its_pty(sim) -> None:
    run = sim("pms5003", "--value", "pm25=44", "--rate", "20")
    stream = pms5003.Pms5003Stream()
    with serial.Serial(run.word(1), 9600, timeout=0.1) as port:
        frames = wait_for(
            lambda: [f for f in stream.feed(port.read(256)) if isinstance(f, dict)],
            what="a frame",
        )
    assert frames[0]["pm25"] == 44
    assert run.stop() == 0


def test_hj212_reports_to_a_platform(sim, hj212_platform) -> None:
    platform = hj212_platform()
    run = sim("hj212", "--to", platform.address, "--mn", "SITE42", "--value", "pm10=120")
    packet = wait_for(lambda: platform.received("2011"), what="a packet")[0]
    assert (packet.mn, packet.flag, packet.value("a34002")) == ("SITE42", 5, 120.0)
    assert isinstance(packet, hj212.Packet)
    assert run.stop() == 0


def test_bad_options_exit_2_with_one_line(cli) -> None:
    for args in (
        ["sim", "modbus-tcp", "--value", "pm25=lots"],
        ["sim", "modbus-rtu", "--unit", "1=no-such-model"],
        ["sim", "hj212", "--to", "nowhere"],
    ):
        r = cli(*args)
        assert r.code == 2, args
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_hj212_survives_its_reboots(sim, hj212_platform) -> None:
    platform = hj212_platform()
    run = sim("hj212", "--to", platform.address, "--rate", "50", "--rtd-interval", "10",
              "--reboot-every", "20", "--reboot-down", "5")  # fmt: skip
    wait_for(lambda: len(platform.received("2011")) >= 8, what="packets across reboots")
    assert run.proc.poll() is None
    assert run.stop() == 0


def test_a_stop_signal_is_recorded_not_acted_on_inside_the_handler() -> None:
    """A real SIGTERM to this process, in a ``sim`` command's wait: the wait ends, nothing
    else happens inside the handler (a handler that set an Event could deadlock on a lock
    the interrupted thread holds), and the previous handlers come back afterwards."""
    import threading
    import time

    from firmware_sim.cli import _Stopper

    before = signal.getsignal(signal.SIGTERM)
    with _Stopper() as stopper:
        assert stopper.wait(0.05) is False
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM)).start()
        t0 = time.monotonic()
        assert stopper.wait(30) is True
        assert time.monotonic() - t0 < 5
        assert stopper.signalled == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) == before

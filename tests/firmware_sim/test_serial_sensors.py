"""The simulated PMS5003 and SDS011 on a pty, read with pyserial as a gateway reads them."""

from __future__ import annotations

import time

import pytest
import serial

from protocols import pms5003, sds011
from tests.sim_fixtures import wait_for


class Reader:
    """The gateway's side of the cable: pyserial plus the codec's stream splitter."""

    def __init__(self, path: str, stream: pms5003.Pms5003Stream | sds011.Sds011Stream) -> None:
        self.port = serial.Serial(path, 9600, timeout=0.05)
        self.stream = stream
        self.frames: list[dict] = []
        self.errors: list[Exception] = []

    def pump(self) -> None:
        for item in self.stream.feed(self.port.read(4096)):
            (self.errors if isinstance(item, Exception) else self.frames).append(item)

    def until(self, n: int, kind: str = "data", timeout: float = 5.0) -> list[dict]:
        def enough() -> list[dict] | None:
            self.pump()
            got = [f for f in self.frames if f["kind"] == kind]
            return got if len(got) >= n else None

        return wait_for(enough, timeout, f"{n} {kind} frames")

    def send(self, command: bytes) -> None:
        self.port.write(command)

    def close(self) -> None:
        self.port.close()


@pytest.fixture
def reader():
    opened: list[Reader] = []

    def open_(path: str, stream) -> Reader:
        r = Reader(path, stream)
        opened.append(r)
        return r

    yield open_
    for r in opened:
        r.close()


def _crc_errors(r: Reader) -> list[Exception]:
    return [e for e in r.errors if isinstance(e, pms5003.Pms5003CrcError)]


def _advance_until(clock, reader: Reader, n: int, step: float = 0.5) -> list[dict]:
    def enough() -> list[dict] | None:
        clock.advance(step)
        reader.pump()
        got = [f for f in reader.frames if f["kind"] == "data"]
        return got if len(got) >= n else None

    return wait_for(enough, 10.0, f"{n} data frames")


# -- PMS5003 ------------------------------------------------------------------------------


def test_pms5003_streams_in_active_mode_on_its_clock(pms5003_device, reader, sim_clock) -> None:
    dev = pms5003_device(source={"pm1": 12, "pm25": 35.4, "pm10": 61}, clock=sim_clock)
    r = reader(dev.address, pms5003.Pms5003Stream())
    frames = _advance_until(sim_clock, r, 3)
    assert {(f["pm1"], f["pm25"], f["pm10"]) for f in frames} == {(12, 35, 61)}
    assert frames[0]["pm25_cf1"] >= frames[0]["pm25"]
    # steady air: the stable rhythm, one frame per 2.3 simulated seconds
    before = dev.frames_sent
    for _ in range(10):
        sim_clock.advance(2.3)
        wait_for(lambda n=dev.frames_sent: dev.frames_sent > n or None, 2.0, "a frame")
    assert dev.frames_sent - before == 10


def test_pms5003_passive_mode_sleep_and_wake(pms5003_device, reader, sim_clock) -> None:
    dev = pms5003_device(source={"pm25": 80.0}, clock=sim_clock)
    r = reader(dev.address, pms5003.Pms5003Stream())
    r.send(pms5003.cmd_passive())
    r.until(1, "ack")
    assert dev.mode == "passive"
    r.frames.clear()
    sim_clock.advance(30)  # passive: nothing of its own
    time.sleep(0.1)
    r.pump()
    assert [f for f in r.frames if f["kind"] == "data"] == []
    r.send(pms5003.cmd_read())
    assert r.until(1)[0]["pm25"] == 80
    r.send(pms5003.cmd_sleep())
    assert r.until(1, "ack")[-1]["command"] == "sleep"
    r.frames.clear()
    r.send(pms5003.cmd_read())  # asleep: heard, not answered
    r.send(pms5003.cmd_wake())
    r.until(1)
    time.sleep(0.1)
    r.pump()
    assert len([f for f in r.frames if f["kind"] == "data"]) == 1 and not dev.asleep
    assert dev.commands == ["passive", "read", "sleep", "read", "wake"]


def test_pms5003_faults_seen_by_the_reader(pms5003_device, reader, sim_clock) -> None:
    dev = pms5003_device(source={"pm25": 20.0}, clock=sim_clock)
    r = reader(dev.address, pms5003.Pms5003Stream())
    r.send(pms5003.cmd_passive())
    r.until(1, "ack")
    r.frames.clear()  # what it sent in active mode before
    dev.faults.garbage(7)
    r.send(pms5003.cmd_read())
    r.send(pms5003.cmd_read())  # the noise after one frame shows when the next one starts
    r.until(2)
    assert [str(e) for e in r.errors] == ["skipped 7 bytes that are not part of a frame"]
    dev.faults.garbage(0)
    dev.faults.corrupt_crc(1.0)
    r.send(pms5003.cmd_read())
    wait_for(lambda: r.pump() or _crc_errors(r), what="a checksum error")
    dev.faults.corrupt_crc(0.0)
    dev.faults.stick("pm25")
    r.send(pms5003.cmd_read())
    assert r.until(3)[-1]["pm25"] == 20
    dev.values.set("pm25", 90)
    r.send(pms5003.cmd_read())
    assert r.until(4)[-1]["pm25"] == 20  # stuck


def test_pms5003_reboot_returns_to_active_mode(pms5003_device, reader, sim_clock) -> None:
    dev = pms5003_device(source={"pm25": 20.0}, clock=sim_clock)
    r = reader(dev.address, pms5003.Pms5003Stream())
    r.send(pms5003.cmd_passive())
    r.until(1, "ack")
    dev.faults.reboot(down_s=10)
    wait_for(lambda: dev.mode == "active", what="fresh state")
    sent = dev.frames_sent
    sim_clock.advance(5)
    time.sleep(0.1)
    assert dev.frames_sent == sent  # still down: silent
    r.frames.clear()
    _advance_until(sim_clock, r, 2)


# -- SDS011 -------------------------------------------------------------------------------


def test_sds011_reports_every_second_and_answers_queries(sds011_device, reader, sim_clock) -> None:
    dev = sds011_device(source={"pm25": 12.3, "pm10": 45.6}, clock=sim_clock, device_id=0x58D9)
    r = reader(dev.address, sds011.Sds011Stream())
    frames = _advance_until(sim_clock, r, 2, step=1.0)
    assert (frames[0]["pm25"], frames[0]["pm10"], frames[0]["device_id"]) == (12.3, 45.6, 0x58D9)
    r.send(sds011.cmd_set_reporting_mode("query"))
    reply = r.until(1, "reply")[-1]
    assert (reply["reply"], reply["mode"], reply["set"]) == ("reporting_mode", "query", 1)
    r.frames.clear()
    sim_clock.advance(10)
    time.sleep(0.1)
    r.pump()
    assert [f for f in r.frames if f["kind"] == "data"] == []
    r.send(sds011.cmd_query_data())
    assert r.until(1)[0]["pm25"] == 12.3
    r.send(sds011.cmd_firmware())
    assert r.until(1, "reply")[-1]["firmware"] == "18-11-16"
    r.send(sds011.cmd_set_working_period(5))
    assert r.until(2, "reply")[-1]["period_min"] == 5
    r.send(sds011.cmd_query_data(device_id=0x1111))  # another sensor's id: ignored
    r.send(sds011.cmd_set_device_id(0x1234, device_id=0x58D9))
    assert r.until(3, "reply")[-1]["device_id"] == 0x1234
    assert len([f for f in r.frames if f["kind"] == "data"]) == 1
    assert [c.name for c in dev.commands][-1] == "device_id"


def test_sds011_sleeps_hears_only_work_and_keeps_settings(sds011_device, reader, sim_clock) -> None:
    dev = sds011_device(source={"pm25": 5.0, "pm10": 9.0}, clock=sim_clock)
    r = reader(dev.address, sds011.Sds011Stream())
    r.send(sds011.cmd_set_reporting_mode("query"))
    r.until(1, "reply")
    r.frames.clear()  # what it sent in active mode before
    r.send(sds011.cmd_sleep())
    assert r.until(1, "reply")[-1]["state"] == "sleep"
    r.send(sds011.cmd_query_data())  # asleep: ignored
    r.send(sds011.cmd_work())
    assert r.until(2, "reply")[-1]["state"] == "work"
    assert [f for f in r.frames if f["kind"] == "data"] == []
    dev.faults.reboot(down_s=1)
    sim_clock.advance(2)
    r.send(sds011.cmd_query_data())
    assert r.until(1)[0]["pm10"] == 9.0
    assert dev.mode == "query"  # kept in flash across the reboot


def test_sds011_dead_and_drifting(sds011_device, reader, sim_clock) -> None:
    dev = sds011_device(source={"pm25": 10.0, "pm10": 20.0}, clock=sim_clock)
    r = reader(dev.address, sds011.Sds011Stream())
    dev.faults.kill()
    time.sleep(0.05)
    r.pump()
    r.frames.clear()
    for _ in range(5):
        sim_clock.advance(1)
        time.sleep(0.02)
    wait_for(lambda: dev.faults.events["silent"] >= 3, what="silent sends")
    r.pump()
    assert r.frames == []
    dev.faults.revive()
    dev.faults.drift("pm25", per_hour=6.0)
    sim_clock.advance(1800)
    frames = _advance_until(sim_clock, r, 1, step=1.0)
    assert frames[-1]["pm25"] == pytest.approx(13.0, abs=0.2)
    assert frames[-1]["pm10"] == 20.0

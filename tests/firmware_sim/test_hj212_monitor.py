"""The simulated HJ 212 dust monitor against a real TCP server playing the platform."""

from __future__ import annotations

import time

import pytest

from firmware_sim.clock import ManualClock
from firmware_sim.sources import scripted
from protocols import hj212
from tests.sim_fixtures import Hj212Platform, wait_for

START = 1_779_999_960.0  # 2026-05-28 20:26:00 UTC, on a minute boundary
VALUES = {
    "tsp": 182.0,
    "pm10": 95.0,
    "pm25": 41.0,
    "noise": 63.2,
    "temp": -3.5,
    "rh": 71.0,
    "pressure": 1012.4,
    "wind_speed": 2.6,
    "wind_dir": 135.0,
}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


def test_reports_realtime_minute_and_hourly_data(hj212_platform, hj212_monitor, clock) -> None:
    platform = hj212_platform()
    mon = hj212_monitor(
        "127.0.0.1", platform.port, source=VALUES, clock=clock, mn="MN0001", pw="654321"
    )
    first = wait_for(lambda: platform.received("2011"), what="real-time data")[0]
    assert (first.st, first.pw, first.mn, first.flag) == ("39", "654321", "MN0001", 5)
    assert first.cp["DataTime"] == "20260528202600"
    assert first.value("a34004") == 41.0 and first.value("a01006") == 101.24  # kPa
    assert first.factors["a01001"]["Flag"] == "N"
    clock.advance(3600)  # one hour on: every window that ended is reported
    wait_for(lambda: platform.received("2061"), what="hourly data")
    minutes = wait_for(lambda: len(platform.received("2051")) >= 60 or None, what="minute data")
    assert minutes
    by_time = {p.cp["DataTime"]: p for p in platform.received("2051")}
    assert "20260528202600" in by_time and "20260528212500" in by_time  # window starts
    minute = by_time["20260528202600"]
    assert minute.value("a34001", "Avg") == 182.0
    assert minute.value("a01008", "Min") == minute.value("a01008", "Max") == 135.0
    hourly = platform.received("2061")[0]
    assert hourly.cp["DataTime"] == "20260528200000"  # the hour 20:00-21:00
    assert hourly.value("LA", "Avg") == 63.2
    wait_for(lambda: mon.pending == 0, what="everything acknowledged")
    sent = platform.received()
    assert len({p.qn for p in sent}) == len(sent)  # QNs are unique
    assert mon.stats["acked"] == len(sent) and mon.stats["resent"] == 0


def test_mg_per_m3_and_air_quality_system_code(hj212_platform, hj212_monitor, clock) -> None:
    platform = hj212_platform()
    hj212_monitor("127.0.0.1", platform.port, source=VALUES, clock=clock, st="22", units="mg/m3")
    packet = wait_for(lambda: platform.received("2011"), what="real-time data")[0]
    assert packet.st == "22"
    assert packet.value("a34001") == 0.182 and packet.value("a34004") == 0.041


def test_resends_without_reply_then_gives_up(hj212_platform, hj212_monitor, clock) -> None:
    platform = hj212_platform(ack=False)
    mon = hj212_monitor(
        "127.0.0.1", platform.port, source=VALUES, clock=clock, timeout_s=0.1, retries=2
    )
    wait_for(lambda: mon.stats["given_up"] == 1, what="giving up")
    copies = platform.received("2011")
    assert len(copies) == 3 and len({p.qn for p in copies}) == 1  # 1 + 2 retries, same QN
    assert mon.stats["resent"] == 2 and mon.stats["timeouts"] == 3
    platform.ack = True
    clock.advance(30)
    wait_for(lambda: mon.stats["acked"] == 1, what="the next packet acknowledged")


def test_reconnects_when_the_platform_comes_back(hj212_platform, hj212_monitor, clock) -> None:
    platform = hj212_platform()
    port = platform.port
    mon = hj212_monitor("127.0.0.1", port, source=VALUES, clock=clock, reconnect_s=(0.05, 0.2))
    wait_for(lambda: mon.stats["acked"] == 1, what="first packet")
    platform.stop()
    clock.advance(30)  # a packet made while the platform is away
    wait_for(lambda: mon.stats["connect_failures"] >= 1, what="a failed reconnect")
    assert mon.pending == 1
    again = Hj212Platform(port=port).start()
    try:
        wait_for(lambda: mon.pending == 0, what="the buffered packet acknowledged")
        assert [p.cp["DataTime"] for p in again.received()] == ["20260528202630"]
        assert mon.stats["connects"] == 2
    finally:
        again.stop()


def test_platform_drops_the_connection(hj212_platform, hj212_monitor, clock) -> None:
    platform = hj212_platform(ack=False)
    mon = hj212_monitor(
        "127.0.0.1", platform.port, source=VALUES, clock=clock, timeout_s=5, retries=1
    )
    wait_for(lambda: platform.received("2011"), what="first packet")
    platform.ack = True
    platform.drop_connections()  # the packet in flight is resent on the new connection
    wait_for(lambda: mon.stats["acked"] == 1, what="the resent packet acknowledged")
    assert mon.stats["connects"] == 2 and mon.stats["given_up"] == 0


def test_corrupt_crc_garbage_and_dropouts(hj212_platform, hj212_monitor, clock) -> None:
    platform = hj212_platform()
    mon = hj212_monitor(
        "127.0.0.1", platform.port, source=VALUES, clock=clock, timeout_s=0.1, retries=5
    )
    wait_for(lambda: mon.stats["acked"] == 1, what="first packet")
    mon.faults.garbage(12, where="before")
    clock.advance(30)
    wait_for(lambda: mon.stats["acked"] == 2, what="the packet through the noise")
    assert [str(e) for e in platform.errors] == ["skipped 12 bytes that are not part of a frame"]
    mon.faults.garbage(0)
    mon.faults.corrupt_crc(1.0)
    clock.advance(30)
    wait_for(lambda: mon.stats["timeouts"] >= 2, what="unacknowledged bad frames")
    assert all(isinstance(e, hj212.Hj212CrcError) for e in platform.errors[1:])
    mon.faults.corrupt_crc(0.0)
    wait_for(lambda: mon.pending == 0, what="the packets resent with their right CRC")
    mon.faults.dropout(1.0)
    clock.advance(30)
    wait_for(lambda: mon.faults.events["dropped"] >= 2, what="lost frames")
    mon.faults.dropout(0.0)
    wait_for(lambda: mon.pending == 0, what="the packets resent after the losses")
    assert mon.stats["given_up"] == 0
    assert len({p.qn for p in platform.received()}) == mon.stats["produced"]


def test_clock_skew_stuck_and_drift(hj212_platform, hj212_monitor, clock) -> None:
    platform = hj212_platform()
    mon = hj212_monitor("127.0.0.1", platform.port, source=VALUES, clock=clock)
    wait_for(lambda: platform.received("2011"), what="first packet")
    mon.faults.skew(-90)
    mon.faults.stick("pm25", 500.0)
    mon.faults.drift("temp", per_hour=1.0)
    clock.advance(1800)
    packet = wait_for(lambda: platform.received("2011")[1:], what="second packet")[0]
    assert packet.cp["DataTime"] == "20260528205430"  # 20:56:00 true time, 90 s behind
    assert packet.qn.startswith("20260528205430")
    assert packet.value("a34004") == 500.0
    assert packet.value("a01001") == pytest.approx(-3.0)


def test_dead_and_rebooting_monitor(hj212_platform, hj212_monitor, clock) -> None:
    platform = hj212_platform()
    mon = hj212_monitor("127.0.0.1", platform.port, source=VALUES, clock=clock)
    wait_for(lambda: mon.stats["acked"] == 1, what="first packet")
    mon.faults.kill()
    clock.advance(30)
    wait_for(lambda: not mon.connected, what="the dead logger's connection closed")
    time.sleep(0.1)
    assert len(platform.received()) == 1 and mon.stats["produced"] == 1
    mon.faults.revive()
    clock.advance(30)
    wait_for(lambda: mon.stats["acked"] >= 2 and mon.pending == 0, what="packets after revival")
    seen = len(platform.received())
    mon.faults.reboot(down_s=60)
    wait_for(lambda: not mon.connected, what="the connection dropped by the reboot")
    clock.advance(30)
    time.sleep(0.1)
    assert len(platform.received()) == seen and not mon.connected
    clock.advance(31)
    wait_for(lambda: len(platform.received()) > seen, what="packets after the reboot")
    assert mon.stats["connects"] == 3


def test_minute_data_come_from_the_samples_taken(hj212_platform, hj212_monitor, clock) -> None:
    platform = hj212_platform()
    ramp = scripted({"pm25": [(START + 10 * k, 10.0 * (k + 1)) for k in range(7)]}, step=True)
    mon = hj212_monitor(
        "127.0.0.1", platform.port, source=ramp, clock=clock, quantities=("pm25",), sample_s=10
    )
    for k in range(6):  # the logger samples at 0, 10, ... 50 s: 10, 20, ... 60 ug/m3
        wait_for(lambda k=k: mon.stats["samples"] == k + 1, what=f"sample {k + 1}")
        clock.advance(10)
    minute = wait_for(lambda: platform.received("2051"), what="minute data")[0]
    assert minute.cp["DataTime"] == "20260528202600"
    assert (minute.value("a34004", "Min"), minute.value("a34004", "Max")) == (10.0, 60.0)
    assert minute.value("a34004", "Avg") == 35.0

"""The HJ 212 listener against real TCP clients playing dust monitors."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from gateway.clock import FakeClock
from gateway.drivers import open_driver
from gateway.drivers.hj212 import Hj212Driver, Hj212Listener
from gateway.errors import DeviceError, DeviceTimeout
from gateway.model import Flag
from gateway.poller import Poller
from gateway.profiles import load_profile
from protocols import hj212
from protocols.errors import ConfigError
from tests.conftest import free_port
from tests.gateway.station_text import station

MN = "690000D5800028F889221AC0"


class Monitor:
    """A dust monitor's data logger: a TCP client pushing HJ 212 packets."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.replies = hj212.Hj212Stream()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self, timeout: float = 5.0) -> hj212.Packet | None:
        self.sock.settimeout(timeout)
        while True:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                return None
            if not data:
                return None
            for item in self.replies.feed(data):
                if isinstance(item, hj212.Packet):
                    return item

    def close(self) -> None:
        self.sock.close()


def packet(
    cn: str = "2011",
    values: dict[str, float] | None = None,
    *,
    mn: str = MN,
    pw: str = "123456",
    flag: int = 5,
    qn: str = "20240821142509000",
    field: str = "Rtd",
    flags: dict[str, str] | None = None,
) -> bytes:
    values = values or {"a34004": 35.0, "a34002": 80.0, "a34001": 120.0, "a01006": 101.3}
    cp: dict[str, object] = {"DataTime": "20240821142509"}
    for code, v in values.items():
        entry: dict[str, object] = {field: v}
        if flags and code in flags:
            entry["Flag"] = flags[code]
        cp[code] = entry
    return hj212.build("39", cn, pw, mn, cp, qn=qn, flag=flag)


def _sensor(port: int, **kw: object):
    spec = {"name": "dust", "profile": "hj212-dust", "transport": "hj212-tcp",
            "address": f"127.0.0.1:{port}", "timeout_s": 0.2, "interval_s": 60}  # fmt: skip
    spec.update(kw)
    return station([spec]).sensors[0]


@pytest.fixture
def listening() -> Iterator[tuple[Hj212Driver, FakeClock, int]]:
    port, clock = free_port(), FakeClock()
    driver = open_driver(_sensor(port, hj212_mn=MN, hj212_password="123456"),
                         load_profile("hj212-dust"), clock=clock)  # fmt: skip
    assert isinstance(driver, Hj212Driver)
    driver.listener.start()
    try:
        yield driver, clock, port
    finally:
        driver.close()


def test_realtime_data_is_acknowledged_and_read(listening) -> None:
    driver, clock, port = listening
    monitor = Monitor(port)
    try:
        monitor.send(packet())
        ack = monitor.reply()
        assert ack is not None
        assert (ack.st, ack.cn, ack.qn, ack.mn, ack.pw, ack.flag) == (
            "91", "9014", "20240821142509000", MN, "123456", 4
        )  # fmt: skip
        samples = driver.read()
    finally:
        monitor.close()
    got = {s.quantity: (s.raw, s.unit, s.flag) for s in samples}
    assert got == {
        "pm25": (35.0, "ug/m3", Flag.NORMAL),
        "pm10": (80.0, "ug/m3", Flag.NORMAL),
        "tsp": (120.0, "ug/m3", Flag.NORMAL),
        "pressure": (pytest.approx(1013.0), "hPa", Flag.NORMAL),  # kPa -> hPa
    }
    assert {s.ts for s in samples} == {clock.now()}  # the gateway's clock at arrival
    assert driver.read() == []  # nothing new: nothing again, no stale repeats


def test_minute_data_uses_averages_and_the_monitors_flags(listening) -> None:
    driver, _, port = listening
    monitor = Monitor(port)
    try:
        monitor.send(packet("2051", {"a34004": 40.0, "a34002": 90.0}, field="Avg",
                            flags={"a34004": "N", "a34002": "M"}))  # fmt: skip
        assert monitor.reply() is not None
        samples = {s.quantity: s for s in driver.read()}
    finally:
        monitor.close()
    assert samples["pm25"].raw == 40.0 and samples["pm25"].flag is Flag.NORMAL
    assert samples["pm10"].raw == 90.0 and samples["pm10"].flag is Flag.MAINTENANCE
    assert set(samples) == {"pm25", "pm10"}


def _with_bad_value(frame: bytes, good: bytes, bad: bytes) -> bytes:
    """The frame with one value's text replaced (and its length and CRC made right again):
    ``build`` refuses to write what a failing logger sends."""
    seg = hj212.parse(frame).segment.encode()
    assert good in seg
    seg = seg.replace(good, bad)
    return b"##%04d%s%04X\r\n" % (len(seg), seg, hj212.crc16(seg))


def test_a_value_that_is_not_a_number_spoils_only_itself(listening) -> None:
    driver, _, port = listening
    monitor = Monitor(port)
    try:
        monitor.send(_with_bad_value(packet(), b"a34002-Rtd=80;", b"a34002-Rtd=--;"))
        assert monitor.reply() is not None  # the packet is taken and answered
        samples = {s.quantity: s for s in driver.read()}
    finally:
        monitor.close()
    assert samples["pm25"].raw == 35.0 and samples["pm25"].flag is Flag.NORMAL
    assert samples["tsp"].raw == 120.0
    pm10 = samples["pm10"]
    assert pm10.raw is None and pm10.flag is Flag.FAULT
    assert "a34002-Rtd='--' is not a number" in (pm10.why or "")


def test_garbage_and_bad_frames_are_skipped_on_a_live_connection(listening) -> None:
    driver, _, port = listening
    good = packet(values={"a34004": 12.0})
    bad_crc = good[:-6] + (b"0000" if good[-6:-2] != b"0000" else b"1111") + b"\r\n"
    monitor = Monitor(port)
    try:
        monitor.send(b"garbage\x00\xff##12" + bad_crc + b"\r\n\r\n")
        monitor.send(good[:20])
        monitor.send(good[20:])
        assert monitor.reply() is not None
        samples = driver.read()
    finally:
        monitor.close()
    assert [(s.quantity, s.raw) for s in samples] == [("pm25", 12.0)]
    assert driver.listener.bad_frames >= 1


def test_wrong_password_or_unknown_mn_is_neither_acked_nor_kept(listening) -> None:
    driver, clock, port = listening
    monitor = Monitor(port)
    try:
        monitor.send(packet(pw="654321"))
        assert monitor.reply(timeout=0.3) is None
        monitor.send(packet(mn="OTHER0000000000000000001"))
        assert monitor.reply(timeout=0.3) is None
        monitor.send(packet(flag=4))  # no reply asked for: none sent, data kept
        assert monitor.reply(timeout=0.3) is None
        samples = driver.read()
    finally:
        monitor.close()
    assert driver.listener.rejected == 2
    assert len(samples) == 4 and {s.ts for s in samples} == {clock.now()}


def test_split_messages_are_joined(listening) -> None:
    driver, _, port = listening
    cp = {"DataTime": "20240821142509"}
    cp.update(
        {
            code: {"Rtd": float(i)}
            for i, code in enumerate(
                [
                    "a34004",
                    "a34002",
                    "a34001",
                    "LA",
                    "a01001",
                    "a01002",
                    "a01006",
                    "a01007",
                    "a01008",
                ]
            )
        }
    )
    frames = hj212.build_split("39", "2011", "123456", MN, cp, qn="20240821142509000",
                               flag=5, max_segment=180)  # fmt: skip
    assert len(frames) > 1
    monitor = Monitor(port)
    try:
        for f in frames:
            monitor.send(f)
            assert monitor.reply() is not None
        samples = driver.read()
    finally:
        monitor.close()
    assert len(samples) == 9


def test_a_silent_monitor_times_out_after_two_intervals() -> None:
    clock = FakeClock()
    sensor = _sensor(free_port(), timeout_s=0.05, interval_s=60)
    driver = open_driver(sensor, load_profile("hj212-dust"), clock=clock)
    try:
        assert driver.read() == []  # just started: not late yet
        clock.advance(2 * 60 + 1)
        with pytest.raises(DeviceTimeout, match="no HJ 212 data from any monitor"):
            driver.read()
    finally:
        driver.close()


def test_a_taken_port_is_a_device_error() -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        listener = Hj212Listener(f"127.0.0.1:{port}", clock=FakeClock())
        with pytest.raises(DeviceError, match="cannot listen for HJ 212"):
            listener.start()
        listener.close()


def test_two_monitors_on_one_port_through_the_poller() -> None:
    port, clock = free_port(), FakeClock()
    other = "690000D5800028F889221AC1"
    config = station([
        {"name": "east", "profile": "hj212-dust", "transport": "hj212-tcp",
         "address": f"127.0.0.1:{port}", "hj212_mn": MN, "timeout_s": 0.1},
        {"name": "west", "profile": "hj212-dust", "transport": "hj212-tcp",
         "address": f"127.0.0.1:{port}", "hj212_mn": other, "timeout_s": 0.1},
    ])  # fmt: skip
    batches: list[list] = []
    poller = Poller(config, clock=clock, sink=batches.append)
    try:
        poller.run_due()  # starts the listener; nothing yet
        east, west = Monitor(port), Monitor(port)
        east.send(packet(values={"a34004": 11.0}))
        west.send(packet(values={"a34004": 22.0}, mn=other))
        assert east.reply() is not None and west.reply() is not None
        clock.advance(10)
        poller.run_due()
        east.close()
        west.close()
    finally:
        poller.stop()
    got = {b[0].sensor: b[0].raw for b in batches}
    assert got == {"east": 11.0, "west": 22.0}


def test_two_sensors_may_not_claim_one_monitor() -> None:
    spec = {"profile": "hj212-dust", "transport": "hj212-tcp", "address": "127.0.0.1:9212"}
    config = station([{"name": "a", **spec}, {"name": "b", **spec}])
    with pytest.raises(ConfigError, match=r"claim every MN \(no hj212_mn\)"):
        Poller(config, clock=FakeClock(), sink=lambda _s: None)

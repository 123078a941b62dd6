"""The uplink against a real Mosquitto and the fake custody responder: readings leave the
outbox only under the central watermark, and arrive exactly once whatever drops."""

from __future__ import annotations

import queue
import time
from collections.abc import Callable

import pytest

from gateway.clock import FakeClock
from gateway.model import Reading
from gateway.mqtt import MqttLink, MqttSettings, Received
from gateway.outbox import Outbox
from gateway.uplink import Uplink, mqtt_settings
from protocols import telemetry as tm

T0 = 1_780_000_000.0


def readings(n: int, start: int = 0) -> list[Reading]:
    return [
        Reading("GX-T-001", "pm", "pm25", "ug/m3", T0 + i, 10.0 + i % 5, 12.0 + i % 5)
        for i in range(start, start + n)
    ]


class Rig:
    """The uplink's part of the daemon loop, stepped by the test."""

    def __init__(self, config) -> None:
        self.clock = FakeClock()
        self.events: queue.Queue = queue.Queue()
        self.box = Outbox(config.outbox.path)
        self.link = MqttLink(mqtt_settings(config, "test"), self.events.put)
        self.up = Uplink(config, self.box, self.link, clock=self.clock, version="test")
        self.commands: list[bytes] = []

    def step(self, timeout: float = 0.02) -> None:
        try:
            ev = self.events.get(timeout=timeout)
            while True:
                cmd = self.up.handle(ev)
                if cmd is not None:
                    self.commands.append(cmd)
                ev = self.events.get_nowait()
        except queue.Empty:
            pass
        self.up.pump()
        self.up.tick()

    def until(self, cond: Callable[[], bool], timeout: float = 20.0, advance: float = 0.0) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > deadline:
                raise AssertionError(f"not reached in {timeout} s: {self.box.stats()}")
            self.clock.advance(advance)
            self.step()

    def start(self) -> Rig:
        self.link.start()
        self.until(lambda: self.up.connected)
        self.clock.advance(3)  # past the wait for the retained watermark
        return self

    def stop(self) -> None:
        self.link.stop()
        self.box.close()


SITE = """
[[actuator]]
name = "spray"
transport = "modbus-tcp"
address = "127.0.0.1:5030"
coil = 0
max_on_s = 900
"""


@pytest.fixture
def rig(make_config, broker):
    r = Rig(make_config(mqtt=broker.url, uplink="batch_max = 100", extra=SITE))
    yield r
    r.stop()


def test_custody_readings_leave_only_under_the_watermark(rig: Rig, custody) -> None:
    rig.start()
    custody.paused = True  # the centre stores nothing yet
    rig.box.add(readings(1000))
    rig.until(lambda: rig.up.packs == 10 and rig.up.inflight == 0)
    assert rig.box.stats().depth == 1000  # every PUBACK arrived, and nothing left
    custody.paused = False
    # the watermark stalls at 0: after resend_after_s the uplink sends everything again
    rig.until(lambda: rig.box.stats().depth == 0, advance=0.5)
    assert rig.up.resends >= 1
    stream = custody.stream("GX-T-001", rig.box.epoch)
    assert stream.upto == 1000 and stream.distinct == 1000
    assert custody.conflicts == []
    assert rig.box.watermark == 1000


def test_broker_kill_9_mid_stream_loses_nothing(rig: Rig, custody, broker) -> None:
    rig.start()
    rig.box.add(readings(3000))
    rig.until(lambda: rig.up.packs >= 5)
    broker.kill()  # whatever it held in flight is gone
    rig.box.add(readings(500, start=3000))
    time.sleep(0.3)
    broker.start()
    custody.stop()
    custody.start()
    rig.until(lambda: rig.box.stats().depth == 0, timeout=30, advance=0.5)
    ids = custody.stored_ids("GX-T-001", rig.box.epoch)
    assert ids == set(range(1, 3501))
    assert custody.conflicts == []


def test_a_watermark_of_another_epoch_is_ignored(rig: Rig, custody, broker) -> None:
    other = MqttLink(MqttSettings(host=broker.host, port=broker.port, client_id="x"), print)
    other.start()
    deadline = time.monotonic() + 5
    while not other.connected and time.monotonic() < deadline:
        time.sleep(0.02)
    other.publish(
        tm.topic("GX-T-001", tm.DOWN_STORED),
        tm.encode_stored(tm.Stored(upto=10**6, epoch="old-gateway")),
        retain=True,
    )
    time.sleep(0.2)
    other.stop()
    custody.paused = True
    rig.start()
    rig.box.add(readings(50))
    rig.until(lambda: rig.up.packs >= 1 and rig.up.inflight == 0, advance=0.1)
    assert rig.box.stats().depth == 50 and rig.box.watermark == 0
    custody.paused = False
    rig.until(lambda: rig.box.stats().depth == 0, advance=0.5)


def test_status_is_retained_and_describes_the_station(rig: Rig, broker) -> None:
    rig.start()
    seen: queue.Queue = queue.Queue()
    watcher = MqttLink(
        MqttSettings(
            host=broker.host,
            port=broker.port,
            client_id="w",
            subscriptions=((tm.topic("GX-T-001", tm.UP_STATUS), 1),),
        ),
        seen.put,
    )
    watcher.start()
    try:
        msg = None
        deadline = time.monotonic() + 5
        while msg is None and time.monotonic() < deadline:
            ev = seen.get(timeout=5)
            if isinstance(ev, Received):
                msg = ev
        st = tm.decode_status(msg.payload)
        assert msg.retained and st.state == "online" and st.station == "GX-T-001"
        assert (st.kind, st.lat, st.lon, st.inlet_height_m) == ("micro", 34.8123, 113.5521, 3.5)
        assert [s["name"] for s in st.sensors] == ["pm", "met"]
        assert st.epoch == rig.box.epoch and st.version == "test"
        # the centre orders a site's spray only at gateways that report one
        assert st.extra["actuators"] == [{"name": "spray", "max_on_s": 900.0}]
    finally:
        watcher.stop()


def test_commands_come_back_and_acks_wait_for_the_link(rig: Rig, broker) -> None:
    rig.up.send_ack(tm.Ack(id="early", status="ok", cmd="ping"))
    assert rig.up.pending_acks == 1
    acks: queue.Queue = queue.Queue()
    watcher = MqttLink(
        MqttSettings(
            host=broker.host,
            port=broker.port,
            client_id="w2",
            subscriptions=((tm.topic("GX-T-001", tm.UP_ACK), 1),),
        ),
        acks.put,
    )
    watcher.start()
    time.sleep(0.3)
    rig.start()
    rig.until(lambda: rig.up.pending_acks == 0)
    ev = acks.get(timeout=5)
    while not isinstance(ev, Received):
        ev = acks.get(timeout=5)
    assert tm.decode_ack(ev.payload).id == "early"
    watcher.publish(
        tm.topic("GX-T-001", tm.DOWN_CMD), tm.encode_command(tm.Command(id="c1", cmd="ping"))
    )
    rig.until(lambda: bool(rig.commands))
    assert tm.decode_command(rig.commands[0]).id == "c1"
    watcher.stop()

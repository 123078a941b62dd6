"""The daemon end to end, in-process: real Modbus servers -> the poller -> calibration ->
QC -> outbox -> a real Mosquitto -> the fake custody responder; commands and their acks;
a local rule writing a real coil; set_config with rollback; metrics."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.request

import pytest

from gateway.calibration import CalSet, calibration_path
from gateway.calstore import CalibrationStore
from gateway.daemon import Gateway
from gateway.runtime import state_path
from protocols import telemetry as tm

STATION = "GX-T-001"
ACTUATOR = """
[[actuator]]
name = "spray"
transport = "modbus-tcp"
address = "127.0.0.1:{port}"
unit_id = 3
coil = 0
max_on_s = 600

[[rule]]
name = "dust"
quantity = "pm10"
above = 150
for_s = 0
actuator = "spray"
hold_s = 60
"""


class Running:
    def __init__(self, cfg) -> None:
        self.gw = Gateway(cfg)
        self.thread = threading.Thread(target=self.gw.run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.gw.request_stop()
        self.thread.join(20)
        assert not self.thread.is_alive()


def coil_writes(devices) -> list[bool]:
    return [
        bool(w[3][0]) if isinstance(w[3], list) else bool(w[3])
        for w in devices.sim.writes
        if w[0] == 3 and w[1] in (5, 15)
    ]


@pytest.fixture
def running():
    made: list[Running] = []

    def start(cfg) -> Running:
        r = Running(cfg)
        made.append(r)
        return r

    yield start
    for r in made:
        if r.thread.is_alive():
            r.stop()


def wait(cond, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_pipeline_calibrates_flags_keeps_and_delivers_exactly_once(
    make_config, broker, custody, running, devices
) -> None:
    cfg = make_config(
        mqtt=broker.url, sensors=devices.sensors(interval_s=0.05), extra="[qc.pm25]\nmax = 60\n"
    )
    store = CalibrationStore(calibration_path(cfg.outbox), STATION)
    store.add(CalSet("pm", "pm25", slope=2.0, offset=1.0), now=0.0)
    store.close()
    r = running(cfg)
    wait(lambda: custody.stream(STATION, r.gw.outbox.epoch).upto >= 200)
    r.stop()
    epoch = r.gw.outbox.epoch
    s = custody.stream(STATION, epoch)
    n = r.gw.outbox.next_id - 1
    assert 200 <= s.upto <= n and custody.conflicts == []
    assert set(s.kept) == set(range(1, s.upto + 1))
    recs = [s.kept[i] for i in range(1, s.upto + 1)]  # (ts, q, raw, value, flag, cal, sensor)
    pm25 = [x for x in recs if x[1] == "pm25"]
    assert pm25 and all(x[3] == pytest.approx(2 * x[2] + 1) and x[5] == 1 for x in pm25)
    # 2 * 35 + 1 > 60: over range, flagged T, still delivered
    assert {x[2] for x in pm25} == {35.0} and {x[4] for x in pm25} == {"T"}
    assert {(x[2], x[4]) for x in recs if x[1] == "temp"} == {(21.5, "N")}
    state = json.loads(state_path(cfg).read_text())
    # what the centre had not confirmed at the stop is kept for the next start
    ob = state["outbox"]
    assert state["state"] == "stopped" and ob["depth"] == n - ob["watermark"]
    assert ob["watermark"] <= s.upto


def test_commands_are_executed_and_every_one_is_acked(
    make_config, broker, running, watcher, devices
) -> None:
    cfg = make_config(
        mqtt=broker.url, sensors=devices.sensors(), extra=ACTUATOR.format(port=devices.port)
    )
    r = running(cfg)
    w = watcher(tm.topic(STATION, tm.UP_ACK))
    wait(lambda: r.gw.uplink.connected)
    cmd_topic = tm.topic(STATION, tm.DOWN_CMD)
    now = time.time()
    sent = {
        "p1": tm.Command(id="p1", cmd="ping"),
        "i1": tm.Command(
            id="i1", cmd="set_interval", args={"sensor": "pm", "interval_s": 1, "duration_s": 600}
        ),
        "a1": tm.Command(
            id="a1", cmd="actuate", args={"actuator": "spray", "state": "on", "duration_s": 30}
        ),
        "a2": tm.Command(id="a2", cmd="actuate", args={"actuator": "nope", "state": "on"}),
        "c1": tm.Command(
            id="c1",
            cmd="set_calibration",
            args={
                "sensor": "pm",
                "quantity": "pm25",
                "slope": 0.5,
                "source": "colocation",
                "fit": {"r2": 0.9},
            },
        ),
        "e1": tm.Command(id="e1", cmd="ping", expires=now - 60),
        "s1": tm.Command(
            id="s1", cmd="actuate", ts=now - 3600, args={"actuator": "spray", "state": "off"}
        ),
        "l1": tm.Command(id="l1", cmd="alert", args={"level": "critical", "message": "dust"}),
    }
    for c in sent.values():
        w.publish(cmd_topic, tm.encode_command(c))
    w.publish(cmd_topic, b'{"id": "bad1", "cmd": "reboot"}')
    w.publish(cmd_topic, b"\xff not json")
    w.publish(cmd_topic, tm.encode_command(sent["p1"]))  # delivered twice: answered twice
    w.wait(lambda: len(w.got) >= len(sent) + 3)
    acks = [tm.decode_ack(e.payload) for e in w.got]
    by = {a.id: a for a in acks}
    assert by["p1"].ok and by["p1"].result["station"] == STATION
    assert by["p1"].result["version"] and "outbox_depth" in by["p1"].result
    assert by["i1"].ok and r.gw.health()["pm"]["interval_s"] == 1.0
    assert by["a1"].ok and by["a1"].result["state"] == "on"
    assert coil_writes(devices)[-1] is True
    assert by["a2"].status == "rejected" and "no actuator" in by["a2"].error
    assert by["c1"].ok and by["c1"].result == {"sensor": "pm", "quantity": "pm25", "version": 1}
    assert by["e1"].status == "rejected" and "expired" in by["e1"].error
    assert by["s1"].status == "rejected" and "stale" in by["s1"].error
    assert by["l1"].ok
    assert by["bad1"].status == "rejected" and "reboot" in by["bad1"].error
    assert by["unknown"].status == "rejected"
    assert [a.id for a in acks].count("p1") == 2
    # the new calibration is in force for the next readings
    wait(lambda: r.gw.calibrator.current("pm", "pm25", time.time()) is not None)
    r.stop()
    assert coil_writes(devices)[-1] is False  # off at a clean stop


def test_a_local_rule_switches_the_spray_without_the_centre(make_config, running, devices) -> None:
    # the broker address leads nowhere: the site is protected all the same
    cfg = make_config(sensors=devices.sensors(), extra=ACTUATOR.format(port=devices.port))
    r = running(cfg)
    wait(lambda: r.gw.counts["N"] > 5)
    assert coil_writes(devices) == [False]  # off at start, nothing else yet (PM10 is 80)
    devices.sim.set(3, holding={1: [400]})
    wait(lambda: r.gw.actuators.state("spray").on)
    assert coil_writes(devices) == [False, True] and not r.gw.uplink.connected
    assert "rule dust" in r.gw.actuators.state("spray").reason
    r.stop()
    assert coil_writes(devices)[-1] is False


def test_set_config_applies_and_rolls_back(make_config, broker, running, watcher, devices) -> None:
    cfg = make_config(mqtt=broker.url, sensors=devices.sensors())
    original = cfg.path.read_text()
    r = running(cfg)
    w = watcher(tm.topic(STATION, tm.UP_ACK))
    wait(lambda: r.gw.uplink.connected)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    good = original + f'\n[metrics]\nlisten = "127.0.0.1:{port}"\n'
    cmd = tm.topic(STATION, tm.DOWN_CMD)
    w.publish(cmd, tm.encode_command(tm.Command(id="g", cmd="set_config", args={"toml": good})))
    w.wait(lambda: len(w.got) >= 1)
    ack = tm.decode_ack(w.got[0].payload)
    assert ack.ok and ack.result["changed"] == ["metrics_listen"]
    assert cfg.path.read_text() == good

    def scrape() -> str:
        url = f"http://127.0.0.1:{port}/metrics"
        return urllib.request.urlopen(url, timeout=5).read().decode()

    wait(lambda: 'airtrace_gateway_readings_total{flag="N"}' in scrape())
    assert "airtrace_gateway_outbox_depth" in scrape()
    # a port that is taken: the new config cannot start, the previous one comes back
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        bad = original + f'\n[metrics]\nlisten = "127.0.0.1:{taken}"\n'
        w.publish(cmd, tm.encode_command(tm.Command(id="b", cmd="set_config", args={"toml": bad})))
        w.wait(lambda: len(w.got) >= 2)
    ack = tm.decode_ack(w.got[1].payload)
    assert ack.status == "error" and "previous one is back" in ack.error
    assert cfg.path.read_text() == good
    assert urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).status == 200
    # an invalid config is refused before anything changes
    w.publish(
        cmd,
        tm.encode_command(
            tm.Command(id="x", cmd="set_config", args={"toml": "[station]\nid = 3\n"})
        ),
    )
    w.wait(lambda: len(w.got) >= 3)
    ack = tm.decode_ack(w.got[2].payload)
    assert ack.status == "rejected" and "station" in ack.error
    r.stop()


@pytest.mark.slow
def test_a_full_disk_is_survived(make_config, devices) -> None:
    # no broker: nothing is confirmed, so the outbox only grows until the "disk" is full
    cfg = make_config(sensors=devices.sensors(interval_s=0.05))
    gw = Gateway(cfg)
    pages = gw.outbox.db.execute("PRAGMA page_count").fetchone()[0]
    gw.outbox.db.execute(f"PRAGMA max_page_count={pages + 6}")  # about 25 kB more
    t = threading.Thread(target=gw.run, daemon=True)
    t.start()
    try:
        wait(lambda: gw.outbox.shed > 0)  # full: the oldest readings were thinned for room
        before = gw.outbox.next_id
        wait(lambda: gw.outbox.next_id > before + 50)  # and new readings are kept again
        assert t.is_alive() and gw.dropped == 0
        # readings wait in memory only while a store is retried, never for long
        wait(lambda: not gw._pending)
    finally:
        gw.request_stop()
        t.join(20)
    assert gw.outbox.floor > 1


def test_a_failing_turn_of_the_loop_is_logged_and_survived(make_config, devices, caplog) -> None:
    cfg = make_config(sensors=devices.sensors(interval_s=0.1))
    gw = Gateway(cfg)
    real, calls = gw.uplink.tick, []

    def broken() -> None:
        calls.append(1)
        if len(calls) <= 2:
            raise RuntimeError("a bug in a stage")
        real()

    gw.uplink.tick = broken  # type: ignore[method-assign]
    t = threading.Thread(target=gw.run, daemon=True)
    t.start()
    try:
        wait(lambda: len(calls) > 3 and gw.counts["N"] > 0)
        assert t.is_alive() and gw.loop_errors == 2
    finally:
        gw.request_stop()
        t.join(20)
    logged = [r for r in caplog.records if "a bug in a stage" in r.getMessage()
              or (r.exc_info and "a bug in a stage" in str(r.exc_info[1]))]  # fmt: skip
    assert len(logged) == 1  # once, not once per turn


def test_a_stop_signal_takes_no_lock_and_stops_the_loop(make_config, devices) -> None:
    """A signal handler runs between two bytecodes of the main thread, which may hold the
    event queue's or the stop Event's lock just then: a handler that took either would
    deadlock the daemon on SIGTERM. Here the handler runs while those locks are held."""
    import signal

    gw = Gateway(make_config(sensors=devices.sensors(interval_s=0.1)))
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        gw.install_signal_handlers()
        handler = signal.getsignal(signal.SIGTERM)
        assert callable(handler)

        def interrupted_while_holding_the_locks() -> None:
            with gw.events.mutex, gw._stop._cond:
                handler(signal.SIGTERM, None)

        worker = threading.Thread(target=interrupted_while_holding_the_locks, daemon=True)
        worker.start()
        worker.join(5)
        assert not worker.is_alive(), "the SIGTERM handler waited for a lock"
        t = threading.Thread(target=gw.run, daemon=True)
        t.start()
        t.join(20)  # the loop sees the signal on its first turn and shuts down in order
        assert not t.is_alive()
        assert json.loads(state_path(gw.config).read_text())["state"] == "stopped"
    finally:
        for s, h in previous.items():
            signal.signal(s, h)

"""The paho adapter against a real Mosquitto: events, reconnect with backoff, credentials,
TLS, bounded publishing — and no paho type leaking out."""

from __future__ import annotations

import gc
import os
import queue
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import UplinkError
from gateway.mqtt import (
    Connected,
    ConnectFailed,
    Disconnected,
    MqttLink,
    MqttSettings,
    Published,
    Received,
    Will,
    backoff_delay,
)

ROOT = Path(__file__).resolve().parents[2]


def wait_for(q: queue.Queue, kind: type, timeout: float = 10.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            ev = q.get(timeout=0.05)
        except queue.Empty:
            continue
        if isinstance(ev, kind):
            return ev
    raise AssertionError(f"no {kind.__name__} within {timeout} s")


def settings(broker, **kw) -> MqttSettings:
    base = {
        "host": broker.host,
        "port": broker.port,
        "client_id": "gw-test",
        "backoff_min_s": 0.05,
        "backoff_max_s": 0.2,
        "subscriptions": (("t/down", 1),),
    }
    base.update(kw)
    return MqttSettings(**base)


@given(st.integers(0, 100), st.floats(0.01, 10), st.floats(10, 1000))
def test_backoff_grows_and_is_capped_with_jitter(attempt: int, lo: float, hi: float) -> None:
    d = backoff_delay(attempt, lo, hi, random.Random(attempt))
    cap = min(hi, lo * 2**attempt)
    assert cap / 2 <= d <= cap


def test_publish_subscribe_and_reconnect(broker) -> None:
    events: queue.Queue = queue.Queue()
    link = MqttLink(settings(broker), events.put)
    with pytest.raises(UplinkError, match="not connected"):
        link.publish("t/up", b"x")
    link.start()
    try:
        first = wait_for(events, Connected)
        pub = link.publish("t/down", b"hello")  # we are subscribed to it
        assert isinstance(pub.mid, int)
        got = wait_for(events, Received)
        assert (got.topic, got.payload, got.retained) == ("t/down", b"hello", False)
        assert wait_for(events, Published).mid == pub.mid
        broker.kill()  # the link notices, backs off, and comes back by itself
        lost = wait_for(events, Disconnected)
        assert lost.gen == first.gen
        with pytest.raises(UplinkError):
            link.publish("t/up", b"x")
        broker.start()
        again = wait_for(events, Connected, timeout=15)
        assert again.gen > first.gen and link.reconnects == 1
        assert link.connected
    finally:
        link.stop()
    assert not link.connected


def test_last_will_on_a_dead_connection_only(broker, tmp_path: Path) -> None:
    events: queue.Queue = queue.Queue()
    watcher_events: queue.Queue = queue.Queue()
    watcher = MqttLink(
        settings(broker, client_id="watcher", subscriptions=(("t/status", 1),)), watcher_events.put
    )
    watcher.start()
    wait_for(watcher_events, Connected)
    link = MqttLink(settings(broker, will=Will("t/status", b"offline")), events.put)
    link.start()
    wait_for(events, Connected)
    link.stop()  # a clean goodbye: no will
    with pytest.raises(AssertionError):
        wait_for(watcher_events, Received, timeout=0.5)
    # an abrupt end (the process died): the broker publishes the will, retained
    code = (
        "import sys, time\n"
        "from gateway.mqtt import MqttLink, MqttSettings, Will\n"
        f"s = MqttSettings(host='{broker.host}', port={broker.port}, client_id='dying',"
        " will=Will('t/status', b'offline'))\n"
        "MqttLink(s, lambda e: print(type(e).__name__, flush=True)).start()\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout.readline().strip() == b"Connected"
    proc.kill()
    proc.wait()
    proc.stdout.close()
    got = wait_for(watcher_events, Received)
    assert (got.topic, got.payload) == ("t/status", b"offline")
    late: queue.Queue = queue.Queue()
    latecomer = MqttLink(
        settings(broker, client_id="late", subscriptions=(("t/status", 1),)), late.put
    )
    latecomer.start()
    got = wait_for(late, Received)
    assert (got.payload, got.retained) == (b"offline", True)
    latecomer.stop()
    watcher.stop()


@pytest.fixture
def auth_broker(broker):
    pw = broker.workdir / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(pw), "gw", "s3cret"], check=True)
    broker.stop()
    broker.extra_conf = f"user root\nallow_anonymous false\npassword_file {pw}"
    broker.start()
    return broker


def test_credentials(auth_broker) -> None:
    MqttLink(settings(auth_broker, username="gw", password="s3cret"), print).probe(5)
    with pytest.raises(UplinkError, match="refused"):
        MqttLink(settings(auth_broker, username="gw", password="wrong"), print).probe(5)
    events: queue.Queue = queue.Queue()
    link = MqttLink(settings(auth_broker, username="gw", password="wrong"), events.put)
    link.start()
    try:
        failed = wait_for(events, ConnectFailed)
        assert failed.auth and "authori" in failed.reason.lower()
        assert not link.connected
    finally:
        link.stop()


def test_unreachable_broker_is_one_clear_error() -> None:
    link = MqttLink(MqttSettings(host="127.0.0.1", port=1, client_id="x"), print)
    with pytest.raises(UplinkError, match=r"cannot reach mqtt://127\.0\.0\.1:1"):
        link.probe(2)


def _make_tls(tmp: Path) -> tuple[Path, Path, Path]:
    def ssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=tmp)

    ssl(
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=test-ca",
    )
    ssl(
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    )
    (tmp / "ext").write_text("subjectAltName=IP:127.0.0.1\n")
    ssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "ext",
    )
    return tmp / "ca.crt", tmp / "server.crt", tmp / "server.key"


# paho 2.2 leaves the socket of a failed TLS handshake unclosed (Client._ssl_wrap_socket
# raises before the socket is kept), so CPython reports it when it collects it
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_tls_with_the_station_ca(broker, tmp_path: Path) -> None:
    ca, cert, key = _make_tls(broker.workdir)
    broker.stop()
    broker.extra_conf = f"user root\ncertfile {cert}\nkeyfile {key}"
    broker.start()
    MqttLink(settings(broker, tls=True, ca_file=ca), print).probe(5)
    other, _, _ = _make_tls(tmp_path)
    with pytest.raises(UplinkError):  # a CA that did not sign the broker's certificate
        MqttLink(settings(broker, tls=True, ca_file=other), print).probe(5)
    with pytest.raises(UplinkError, match="TLS set-up"):
        MqttLink(settings(broker, tls=True, ca_file=tmp_path / "nope.crt"), print).probe(5)
    gc.collect()  # the leaked socket is reported here, inside this test's filter


def test_the_link_sends_without_nagle_delay(broker) -> None:
    """TCP_NODELAY on the link's socket: with Nagle's algorithm a command's answer written
    right after its PUBACK waits for the broker's delayed ACK (~40 ms a hop on Linux)."""
    import socket

    events: queue.Queue = queue.Queue()
    link = MqttLink(settings(broker), events.put)
    link.start()
    try:
        wait_for(events, Connected)
        sock = link._client.socket()
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        link.stop()

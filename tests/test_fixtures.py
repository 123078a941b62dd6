"""The shared fixtures start real components that really answer."""

from __future__ import annotations

import threading

import paho.mqtt.client as mqtt
import pytest

from tests.conftest import Broker


def _roundtrip(url_host: str, port: int) -> bytes:
    got: list[bytes] = []
    done = threading.Event()

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        got.append(msg.payload)
        done.set()

    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="t-sub")
    sub.on_message = on_message
    sub.connect(url_host, port)
    sub.subscribe("t/x", qos=1)
    sub.loop_start()
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="t-pub")
    pub.connect(url_host, port)
    pub.loop_start()
    try:
        # retry until the subscription is in place
        for _ in range(50):
            pub.publish("t/x", b"hello", qos=1).wait_for_publish(5)
            if done.wait(0.1):
                break
    finally:
        pub.loop_stop()
        pub.disconnect()
        sub.loop_stop()
        sub.disconnect()
    return got[0] if got else b""


def test_broker_fixture_delivers_a_message(broker: Broker) -> None:
    assert _roundtrip(broker.host, broker.port) == b"hello"


def test_broker_fixture_restarts(broker: Broker) -> None:
    broker.restart()
    assert _roundtrip(broker.host, broker.port) == b"hello"


def test_amqtt_fallback_broker_delivers(tmp_path) -> None:
    b = Broker(workdir=tmp_path, kind="amqtt")
    b.start()
    try:
        assert _roundtrip(b.host, b.port) == b"hello"
    finally:
        b.kill()


@pytest.mark.postgres
def test_postgres_url_is_a_fresh_database(postgres_url: str) -> None:
    import psycopg

    with psycopg.connect(postgres_url) as conn:
        tables = conn.execute(
            "select count(*) from information_schema.tables where table_schema = 'public'"
        ).fetchone()
    assert tables == (0,)

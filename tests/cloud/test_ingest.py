"""MQTT ingest against a real Mosquitto: store, dedupe, watermark, registration, quarantine."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud.config import parse_config
from cloud.ingest import Ingest
from cloud.store import Store, open_store
from cloud.store.types import CommandRecord
from tests.cloud.conftest import T0, Gateway, pack_bytes, wait_for


def make_ingest(store: Store, broker_url: str, **mqtt: str) -> Ingest:
    extra = "".join(f'{k} = "{v}"\n' for k, v in mqtt.items())
    cfg = parse_config(
        f'[mqtt]\nurl = "{broker_url}"\nclient_id = "test-cloud"\n{extra}'
        '[store]\nurl = "sqlite:x.db"\n[ingest]\nwatermark_interval_s = 0.05\n'
    )
    assert cfg.mqtt is not None
    return Ingest(store, cfg.ingest, cfg.mqtt)


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    with open_store(f"sqlite:///{tmp_path}/c.db") as s:
        yield s


@pytest.fixture
def ingest(sqlite_store: Store, broker) -> Iterator[Ingest]:
    ing = make_ingest(sqlite_store, broker.url)
    ing.start()
    assert ing.wait_connected(10)
    try:
        yield ing
    finally:
        ing.stop()


def test_packs_are_stored_once_and_the_watermark_follows(ingest: Ingest, gateway: Gateway) -> None:
    store = ingest.store
    gateway.telemetry("GX-1", range(1, 101))
    gateway.telemetry("GX-1", range(101, 201))
    wait_for(lambda: gateway.upto("GX-1") == 200, what="watermark 200")
    gateway.telemetry("GX-1", range(51, 151))  # a resend changes nothing
    gateway.telemetry("GX-1", range(201, 203))
    wait_for(lambda: gateway.upto("GX-1") == 202, what="watermark 202")
    assert store.reading_count("GX-1") == 202
    assert ingest.stats.duplicates == 100
    assert gateway.stored["GX-1"] == {"upto": 202, "epoch": "e1"}
    assert store.get_station("GX-1").status == "pending"  # never seen: kept, registered


def test_the_central_client_sends_without_nagle_delay(ingest: Ingest) -> None:
    """TCP_NODELAY on the central client's socket: with Nagle's algorithm a PUBACK and the
    packet after it wait for the broker's delayed ACK (~40 ms a hop on Linux)."""
    import socket

    sock = ingest.client._client.socket()
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


def test_the_watermark_waits_for_a_hole_and_passes_the_floor(
    ingest: Ingest, gateway: Gateway
) -> None:
    gateway.telemetry("GX-2", [1, 2, 3, 7, 8])
    wait_for(lambda: gateway.upto("GX-2") == 3, what="watermark 3")
    gateway.telemetry("GX-2", [9], floor=6)  # ids below 6 are gone from the gateway
    wait_for(lambda: gateway.upto("GX-2") == 5, what="watermark 5")
    gateway.telemetry("GX-2", [6])
    wait_for(lambda: gateway.upto("GX-2") == 9, what="watermark 9")
    gaps = ingest.store.gaps("GX-2")
    assert [(g.first_id, g.last_id, g.missing) for g in gaps] == [(4, 5, 2)]


def test_malformed_messages_are_quarantined_counted_and_acknowledged(
    ingest: Ingest, gateway: Gateway, broker
) -> None:
    gateway.publish("airtrace/v1/GX-3/up/telemetry", b"{not json")
    gateway.publish("airtrace/v1/GX-3/up/telemetry", pack_bytes("OTHER", [1]))  # not its own
    gateway.publish("airtrace/v1/GX-3/up/status", b'{"state":"sleeping"}')
    gateway.publish("airtrace/v1/bad station/up/telemetry", b"[]")
    gateway.publish("airtrace/v1/GX-3/up/ack", b'{"id": 5}')
    gateway.telemetry("GX-3", [1])  # and the feed goes on
    wait_for(lambda: gateway.upto("GX-3") == 1, what="the good pack")
    wait_for(lambda: sum(ingest.store.quarantine_counts().values()) == 5, what="5 quarantined")
    assert ingest.store.quarantine_counts() == {"ack": 1, "status": 1, "telemetry": 2, "topic": 1}
    assert ingest.stats.quarantined == {"ack": 1, "status": 1, "telemetry": 2, "topic": 1}
    reasons = {q.reason for q in ingest.store.quarantine_entries()}
    assert any("OTHER" in r for r in reasons)
    assert ingest.stats.messages == 6


def test_status_registers_a_pending_station_and_the_last_will_marks_it_offline(
    ingest: Ingest, gateway: Gateway
) -> None:
    online = {
        "state": "online",
        "kind": "micro",
        "lat": 34.81,
        "lon": 113.55,
        "inlet_height_m": 3.5,
        "sensors": [{"name": "pm"}],
        "version": "0.1",
    }
    gateway.publish("airtrace/v1/GX-4/up/status", json.dumps(online).encode(), retain=True)
    st = wait_for(lambda: ingest.store.get_station("GX-4"), what="registration")
    assert (st.status, st.kind, st.lat, st.state) == ("pending", "micro", 34.81, "online")
    gateway.publish("airtrace/v1/GX-4/up/status", b'{"state":"offline"}', retain=True)
    wait_for(lambda: ingest.store.get_station("GX-4").state == "offline", what="offline")


def test_acks_are_recorded_against_their_commands(ingest: Ingest, gateway: Gateway) -> None:
    ingest.store.add_command(CommandRecord("cmd-7", "GX-5", "ping", {}, T0))
    gateway.publish("airtrace/v1/GX-5/up/ack", b'{"id":"cmd-7","status":"ok","result":{"t":1}}')
    wait_for(lambda: ingest.store.get_command("cmd-7").status == "ok", what="the ack")


def test_a_restart_resumes_the_session_and_takes_what_came_meanwhile(
    sqlite_store: Store, broker, gateway: Gateway
) -> None:
    ing = make_ingest(sqlite_store, broker.url)
    ing.start()
    assert ing.wait_connected(10)
    gateway.telemetry("GX-6", [1])
    wait_for(lambda: gateway.upto("GX-6") == 1, what="first pack")
    ing.stop()
    gateway.telemetry("GX-6", [2, 3])  # queued by the broker for the offline session
    ing = make_ingest(sqlite_store, broker.url)
    ing.start()
    try:
        wait_for(lambda: gateway.upto("GX-6") == 3, what="the queued pack")
    finally:
        ing.stop()


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_a_restart_of_either_protocol_resumes_its_session(
    sqlite_store: Store, broker, gateway: Gateway, protocol: str
) -> None:
    """MQTT 3.1.1 (brokers without MQTT 5, the demo's amqtt) keeps the session by
    clean_session=False: what came while the ingest was away is still taken."""
    ing = make_ingest(sqlite_store, broker.url, protocol=protocol)
    ing.start()
    assert ing.wait_connected(10)
    gateway.telemetry("GX-7", [1])
    wait_for(lambda: gateway.upto("GX-7") == 1, what="first pack")
    ing.stop()
    gateway.telemetry("GX-7", [2, 3])
    ing = make_ingest(sqlite_store, broker.url, protocol=protocol)
    ing.start()
    try:
        wait_for(lambda: gateway.upto("GX-7") == 3, what="the queued pack")
    finally:
        ing.stop()
    assert sqlite_store.reading_count("GX-7") == 3


def test_shared_subscription_still_sees_retained_statuses(
    sqlite_store: Store, broker, gateway: Gateway
) -> None:
    gateway.publish("airtrace/v1/GX-7/up/status", b'{"state":"online","kind":"dust"}', retain=True)
    ing = make_ingest(sqlite_store, broker.url, share_group="g1")
    ing.start()
    try:
        st = wait_for(lambda: sqlite_store.get_station("GX-7"), what="retained status")
        assert st.kind == "dust"
        gateway.telemetry("GX-7", [1, 2])
        wait_for(lambda: gateway.upto("GX-7") == 2, what="shared telemetry")
    finally:
        ing.stop()


@pytest.mark.postgres
def test_a_pack_the_database_refuses_is_quarantined_and_the_rest_stored(
    postgres_url: str, broker, gateway: Gateway
) -> None:
    bad = pack_bytes("GX-8", [1]).replace(
        b'"sensor":"pm"', b'"sensor":"pm","why":"nul \\u0000 here"'
    )
    with open_store(postgres_url) as store:  # PostgreSQL text cannot hold NUL
        ing = make_ingest(store, broker.url)
        ing.start()
        try:
            assert ing.wait_connected(10)
            gateway.publish("airtrace/v1/GX-8/up/telemetry", bad)
            gateway.telemetry("GX-9", [1, 2])
            wait_for(lambda: gateway.upto("GX-9") == 2, what="the good pack")
            wait_for(lambda: store.quarantine_counts().get("store") == 1, what="the refused pack")
            assert store.reading_count("GX-8") == 0
            reason = store.quarantine_entries()[0].reason
            assert "NUL" in reason or "0x00" in reason  # psycopg's words, or the server's
        finally:
            ing.stop()


def test_ingest_comes_back_after_the_broker_is_killed(
    ingest: Ingest, broker, gateway: Gateway
) -> None:
    gateway.telemetry("GX-10", [1])
    wait_for(lambda: gateway.upto("GX-10") == 1, what="before the crash")
    broker.kill()  # kill -9: the broker forgets the sessions it had not saved
    broker.start()
    wait_for(lambda: ingest.client.connected and gateway.client.is_connected(), 30, "reconnects")
    wait_for(lambda: ingest.wait_connected(0.1), 30, "the subscription renewed")
    gateway.client.subscribe(
        [("airtrace/v1/+/down/#", 1)]
    )  # the test gateway's own session is gone too
    gateway.telemetry("GX-10", [1, 2, 3])  # a gateway resends what the watermark lacks
    wait_for(lambda: gateway.upto("GX-10") == 3, 30, "after the crash")
    assert ingest.store.reading_count("GX-10") == 3


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real, small file system (tmpfs) that can be filled and then grown, as an operator
    frees space; needs root and mount (skipped elsewhere)."""
    import os
    import subprocess

    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root")
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)],
        check=False,
        capture_output=True,
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_full_disk_holds_the_feed_back_and_it_resumes_when_space_is_freed(
    small_disk: Path, broker, gateway: Gateway
) -> None:
    import subprocess

    with open_store(f"sqlite:///{small_disk}/c.db") as store:
        ing = make_ingest(store, broker.url)
        ing.start()
        assert ing.wait_connected(10)
        try:
            total = 0
            for start in range(1, 40_001, 500):  # ~4 MB of rows for a 1 MB disk
                gateway.telemetry("GX-FULL", range(start, start + 500))
                total = start + 499
            wait_for(lambda: ing.stats.store_errors > 0, what="the disk to fill")
            assert gateway.upto("GX-FULL") < total  # nothing is confirmed that is not stored
            subprocess.run(
                ["mount", "-o", "remount,size=64m", str(small_disk)], check=True
            )  # the operator frees space: the same messages go in, no restart, no resend
            wait_for(lambda: gateway.upto("GX-FULL") == total, timeout=60, what="all stored")
            assert store.reading_count("GX-FULL") == total
            assert not ing.stats.quarantined  # a full disk is not the data's fault
        finally:
            ing.stop()

"""Orders to machines through a real Mosquitto: the central service's Commander publishes
on down/cmd, a small gateway-side responder acks (or stays silent), ingest stores the acks,
and the order desk copies them onto the event or times them out."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from cloud.alert_types import Alert, fingerprint
from cloud.commands import Commander
from cloud.events import Workflow
from cloud.events_store import EventsDb
from cloud.ingest import Ingest
from cloud.orders import OrderDesk, OrdersConfig
from cloud.places import Places
from cloud.store import Store, open_store
from cloud.store.types import CommandRecord
from protocols.geo import Origin
from protocols.telemetry import Ack, decode_command, encode_ack
from tests.cloud.alerting import ORIGIN, world
from tests.cloud.conftest import wait_for
from tests.cloud.test_ingest import make_ingest


class Responder:
    """Plays the gateways: acks the commands of ``answer`` stations, ignores the others."""

    def __init__(self, broker_url: str, answer: set[str]) -> None:
        host, port = broker_url.removeprefix("mqtt://").split(":")
        self.answer = answer
        self.seen: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="responder")
        self.client.on_message = self._on_message
        self.client.connect(host, int(port))
        self.client.subscribe("airtrace/v1/+/down/cmd", qos=1)
        self.client.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        station = msg.topic.split("/")[2]
        cmd = decode_command(msg.payload)
        with self._lock:
            self.seen.append((station, cmd.cmd))
        if station in self.answer:
            result = {"actuator": "spray", "state": "on"} if cmd.cmd == "actuate" else {}
            ack = Ack(cmd.id, "ok", cmd=cmd.cmd, result=result, ts=time.time())
            client.publish(f"airtrace/v1/{station}/up/ack", encode_ack(ack), qos=1)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(f"sqlite:///{tmp_path}/c.db")
    yield s
    s.close()


@pytest.fixture
def ingest(store: Store, broker: Any) -> Iterator[Ingest]:
    ing = make_ingest(store, broker.url)
    ing.start()
    assert ing.wait_connected(10)
    yield ing
    ing.stop()


def test_burst_and_spray_are_acked_by_some_and_timed_out_for_the_silent(
    store: Store, ingest: Ingest, broker: Any
) -> None:
    world(store)
    responder = Responder(broker.url, answer={"DUST-1"})
    try:
        places = Places(store, Origin(*ORIGIN))
        db = EventsDb(store)
        desk = OrderDesk(
            db,
            OrdersConfig(ack_deadline_s=120),
            Commander(store, ingest.client.publish),
            places,
            store.get_command,
        )
        labels = {"alertname": "source", "kind": "inversion", "site": "SITE-1", "cell": "g0_0"}
        alert = Alert(
            fingerprint(labels), "source", "inversion", {**labels, "level": "orange"}, "orange"
        )
        now = time.time()
        ev = Workflow(db, clock=lambda: now, assignee=places.assignee).on_alert(alert, (500, 500))
        assert ev is not None
        sent = desk.on_alert(ev, alert, ["burst", "spray"], now, (510.0, 490.0))
        assert sorted((o.station, o.cmd) for o in sent) == [
            ("DUST-1", "actuate"),
            ("DUST-1", "set_interval"),
            ("MICRO-1", "set_interval"),
        ]
        assert desk.on_alert(ev, alert, ["burst", "spray"], now + 60, (510.0, 490.0)) == []
        wait_for(lambda: len(responder.seen) == 3, what="the three commands at the gateways")
        wait_for(
            lambda: all(
                store.get_command(o.command_id).status == "ok"  # type: ignore[union-attr]
                for o in sent
                if o.station == "DUST-1"
            ),
            what="the acks of DUST-1 stored by ingest",
        )
        assert {(o.station, o.cmd) for o in desk.tick(now + 1)} == {
            ("DUST-1", "actuate"),
            ("DUST-1", "set_interval"),
        }
        assert desk.tick(now + 119) == []  # MICRO-1 still has time
        (late,) = desk.tick(now + 120)
        assert late.station == "MICRO-1"
        by = {(o.station, o.cmd): o for o in db.orders(ev.id)}
        assert by[("DUST-1", "actuate")].status == "ok"
        assert by[("DUST-1", "actuate")].result == {"actuator": "spray", "state": "on"}
        assert by[("MICRO-1", "set_interval")].status == "timeout"
        assert by[("MICRO-1", "set_interval")].args == {"interval_s": 10.0, "duration_s": 3600.0}
        actions = [e.action for e in db.log(ev.id)]
        assert actions.count("order") == 3 and actions.count("order_ack") == 2
        assert actions.count("order_timeout") == 1
        cmd = json.loads(json.dumps(by[("DUST-1", "actuate")].args))
        assert cmd == {"actuator": "spray", "state": "on", "duration_s": 1800.0}
    finally:
        responder.close()


def burst_at_site_1(db: EventsDb, places: Places, store: Store) -> tuple[Any, list[Any]]:
    """A red source alert at SITE-1 opens an event; the desk orders burst sampling (no
    MQTT connection: what is not skipped comes back as an error)."""
    desk = OrderDesk(db, OrdersConfig(), None, places, store.get_command)
    labels = {"alertname": "source", "site": "SITE-1"}
    alert = Alert(fingerprint(labels), "source", "inversion", {**labels, "level": "red"}, "red")
    ev = Workflow(db, clock=lambda: 0.0).on_alert(alert, (500, 500))
    assert ev is not None
    return ev, desk.on_alert(ev, alert, ["burst"], 0.0, (500.0, 500.0))


def test_offline_gateways_are_skipped_and_no_connection_is_recorded(store: Store) -> None:
    from dataclasses import replace

    world(store)
    st = store.get_station("MICRO-1")
    assert st is not None
    store.put_station(replace(st, state="offline"))
    places = Places(store, Origin(*ORIGIN))
    db = EventsDb(store)
    ev, sent = burst_at_site_1(db, places, store)
    assert [(o.station, o.status) for o in sent] == [("DUST-1", "error")]
    skipped = [e.detail for e in db.log(ev.id) if e.action == "order_skipped"]
    assert skipped == [{"purpose": "burst", "station": "MICRO-1", "why": "gateway offline"}]


def test_an_order_sees_the_gateway_state_of_now_not_of_the_last_round(store: Store) -> None:
    """The engine re-reads the registry once a round; a gateway that came back (or went
    away) since must be judged by its state now."""
    from dataclasses import replace

    world(store)
    st = store.get_station("MICRO-1")
    assert st is not None
    store.put_station(replace(st, state="offline"))
    places = Places(store, Origin(*ORIGIN))  # the round's view: MICRO-1 offline
    store.put_station(replace(st, state="online"))  # ... and then it reconnects
    dust = store.get_station("DUST-1")
    assert dust is not None
    store.put_station(replace(dust, state="offline"))  # while this one drops
    db = EventsDb(store)
    ev, sent = burst_at_site_1(db, places, store)
    assert [o.station for o in sent] == ["MICRO-1"]
    skipped = [e.detail for e in db.log(ev.id) if e.action == "order_skipped"]
    assert skipped == [{"purpose": "burst", "station": "DUST-1", "why": "gateway offline"}]


@pytest.mark.parametrize(("deadline", "expires"), [(120.0, 600.0), (7200.0, 7200.0)])
def test_an_order_lives_at_the_gateway_as_long_as_its_ack_is_awaited(
    store: Store, deadline: float, expires: float
) -> None:
    """A command expiring before ``ack_deadline_s`` would be refused by a gateway the
    centre still waits for (seen end to end, on a loaded machine in accelerated time)."""
    world(store)
    got: list[float | None] = []

    class Sender:
        def send(self, station: str, cmd: str, args: Any = None, *,
                 expires_s: float | None = None) -> Any:  # fmt: skip
            got.append(expires_s)
            return CommandRecord(f"c-{len(got)}", station, cmd, dict(args or {}), 0.0)

    places = Places(store, Origin(*ORIGIN))
    db = EventsDb(store)
    desk = OrderDesk(db, OrdersConfig(ack_deadline_s=deadline), Sender(), places,
                     store.get_command)  # fmt: skip
    labels = {"alertname": "source", "site": "SITE-1"}
    alert = Alert(fingerprint(labels), "source", "inversion", {**labels, "level": "red"}, "red")
    ev = Workflow(db, clock=lambda: 0.0).on_alert(alert, (500, 500))
    assert ev is not None
    assert desk.on_alert(ev, alert, ["spray"], 0.0, (500.0, 500.0))
    assert got == [expires]

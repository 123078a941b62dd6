"""A FAKE of the central service's custody role, for the gateway's tests and benchmarks.

It stands in for exactly the part the gateway's promise depends on, and nothing more: it
subscribes to ``airtrace/v1/+/up/telemetry`` on a real broker, decodes each SenML pack with
``protocols.telemetry.decode_pack``, records every ``(station, epoch, id)`` it sees
(duplicates included), keeps one entry per key as the "store" (flagging a key that arrives
again with *different* content), and publishes the retained watermark
``{"upto": N, "epoch": E}`` on ``down/stored``: the highest N such that every id 1..N of
that epoch is stored or lies below the pack's ``floor``.

It was written while the real central service was being built on branch ``cloud``. Now
that ``airtrace cloud run`` is on main, the end-to-end tests use it
(``test_end_to_end.py``: kill -9 of the gateway and of the centre, ``cloud export``). This
fake stays for what the real store cannot show, by design: it deduplicates silently, so
only a recorder sees every resend and would catch an id reused for another reading; and it
can be paused to make a stalled centre. ``light=True`` (benchmarks) keeps only the ids
above the watermark and counts the rest, so memory stays small with millions of readings.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from protocols import telemetry as tm


@dataclass
class Stream:
    """What the fake store holds of one (station, epoch)."""

    upto: int = 0
    floor: int = 0
    above: dict[int, tuple[Any, ...]] = field(default_factory=dict)  # ids > upto
    kept: dict[int, tuple[Any, ...]] = field(default_factory=dict)  # ids <= upto (full mode)
    distinct: int = 0
    duplicates: int = 0

    def advance(self) -> bool:
        moved = False
        while True:
            nxt = self.upto + 1
            if nxt in self.above:
                fp = self.above.pop(nxt)
                if self.kept is not None:
                    self.kept[nxt] = fp
            elif nxt >= self.floor:
                break
            self.upto = nxt
            moved = True
        return moved


class CustodyResponder:
    """Fake central custody over a real broker (see the module docstring)."""

    def __init__(self, host: str, port: int, *, light: bool = False) -> None:
        self.host, self.port, self.light = host, port, light
        self.streams: dict[tuple[str, str], Stream] = {}
        self.deliveries: Counter[tuple[str, str, int]] = Counter()  # full mode only
        self.received = 0  # readings received, duplicates included
        self.duplicates = 0
        self.conflicts: list[tuple[str, str, int]] = []
        self.packs = 0
        self.bad = 0
        self.paused = False  # a stalled centre: stores nothing, confirms nothing
        self._lock = threading.Lock()
        self._client: paho.Client | None = None

    # -- MQTT ------------------------------------------------------------------------------
    def start(self) -> CustodyResponder:
        c = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"custody-fake-{id(self)}",
            clean_session=True,
        )
        c.max_queued_messages_set(0)
        ready = threading.Event()

        def on_connect(client: Any, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
            client.subscribe(f"{tm.PREFIX}/+/{tm.UP_TELEMETRY}", qos=1)

        def on_subscribe(*_a: Any) -> None:
            ready.set()

        c.on_connect = on_connect
        c.on_subscribe = on_subscribe
        c.on_message = self._on_message
        c.connect(self.host, self.port, 30)
        c.loop_start()
        if not ready.wait(10):
            raise TimeoutError("custody responder did not subscribe")
        self._client = c
        return self

    def stop(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None

    def _on_message(self, client: Any, _u: Any, msg: Any) -> None:
        if self.paused:
            return
        try:
            station = tm.parse_topic(msg.topic).station
            if self.light:
                data = json.loads(msg.payload)
                head = data[0]
                epoch, floor = head.get("epoch", ""), head.get("floor") or 0
                items = [(r["id"], (r.get("t"), r.get("v"))) for r in data]
            else:
                pack = tm.decode_pack(msg.payload, station)
                epoch, floor = pack.epoch, pack.floor or 0
                items = [
                    (r.id, (r.ts, r.quantity, r.raw, r.value, r.flag, r.cal, r.sensor))
                    for r in pack.records
                ]
        except (tm.TelemetryError, ValueError, KeyError, IndexError, TypeError):
            self.bad += 1
            return
        publish = None
        with self._lock:
            self.packs += 1
            s = self.streams.setdefault((station, epoch), Stream())
            if self.light:
                s.kept = None  # type: ignore[assignment]
            s.floor = max(s.floor, floor)
            for rid, fp in items:
                self.received += 1
                if not self.light:
                    self.deliveries[(station, epoch, rid)] += 1
                old = s.above.get(rid)
                if old is None and s.kept is not None:
                    old = s.kept.get(rid)
                if old is not None or rid <= s.upto:
                    self.duplicates += 1
                    s.duplicates += 1
                    if old is not None and old != fp:
                        self.conflicts.append((station, epoch, rid))
                    continue
                s.above[rid] = fp
                s.distinct += 1
            if s.advance():
                publish = (station, tm.encode_stored(tm.Stored(upto=s.upto, epoch=epoch)))
        if publish is not None:
            client.publish(tm.topic(publish[0], tm.DOWN_STORED), publish[1], qos=1, retain=True)

    # -- what the tests ask ------------------------------------------------------------------
    def stream(self, station: str, epoch: str) -> Stream:
        with self._lock:
            return self.streams.setdefault((station, epoch), Stream())

    def stored_ids(self, station: str, epoch: str) -> set[int]:
        s = self.stream(station, epoch)
        return set(s.kept or {}) | set(s.above)

    def wait_upto(self, station: str, epoch: str, upto: int, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.stream(station, epoch).upto >= upto:
                return True
            time.sleep(0.02)
        return False

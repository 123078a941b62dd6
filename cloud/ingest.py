"""MQTT ingest: the stations' feeds into the store, with end-to-end custody (DESIGN 4.2).

Three stages, one thread each: paho's network thread only queues what arrives; the decoder
thread turns each message into what the store takes (``classify``; packs become plain row
tuples through ``protocols.telemetry.decode_rows``); the writer thread takes the decoded
messages in batches, commits each batch in one transaction, and only then acknowledges its
messages (manual PUBACK) — so a crash at any moment loses nothing: what was not
acknowledged is delivered again to the persistent session, and the store's key (station,
epoch, outbox id) makes the second copy a no-op. Decoding runs while the database works on
the previous batch (SQLite and psycopg release the GIL), and paho's thread stays free to
read the socket. The broker's ``Receive Maximum`` bounds what waits in the two queues.

After commits, at most every ``watermark_interval_s`` per (station, epoch), the writer
moves the custody watermark from the database (``Store.advance_custody``) and publishes it
retained, QoS 1, on ``airtrace/v1/{station}/down/stored``. Ids below a pack's ``floor``
that never arrived are recorded as lost gaps instead of being waited for.

What cannot be decoded (bad topic, malformed pack, status for another station, ack that
does not parse, a row the database refuses) goes to the quarantine table with the reason;
each reason class is logged once at warning level and counted. Nothing crashes the writer:
a failing database is retried with backoff while the messages stay unacknowledged.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from cloud.config import IngestConfig, MqttConfig
from cloud.mqtt import Message, MqttClient
from cloud.store import Store, StoreError
from cloud.store.types import AckUpdate, Batch, PackRows, Quarantined, StatusUpdate
from protocols.errors import AirtraceError
from protocols.telemetry import (
    DOWN_STORED,
    UP_ACK,
    UP_FILTER,
    UP_STATUS,
    UP_TELEMETRY,
    Stored,
    TelemetryError,
    decode_ack,
    decode_rows,
    decode_status,
    encode_stored,
    parse_topic,
    topic,
)

log = logging.getLogger(__name__)

Item = PackRows | StatusUpdate | AckUpdate | Quarantined | None


@dataclass(frozen=True)
class Decoded:
    message: Message
    item: Item  # None: nothing to store (an empty retained status clearing a topic)

    @property
    def readings(self) -> int:
        return len(self.item.rows) if isinstance(self.item, PackRows) else 0


def classify(message: Message, payload_max: int = 4096) -> Item:  # noqa: PLR0911 - one per kind
    """Decode one MQTT message into what the store takes; never raises."""

    def quarantine(reason: str, reason_class: str, station: str | None = None) -> Quarantined:
        return Quarantined(
            received=message.received,
            source="mqtt",
            topic=message.topic,
            reason=reason,
            reason_class=reason_class,
            payload=message.payload[:payload_max],
            size=len(message.payload),
            station=station,
        )

    try:
        ref = parse_topic(message.topic)
    except TelemetryError as exc:
        return quarantine(str(exc), "topic")
    try:
        if ref.kind == UP_TELEMETRY:
            return decode_rows(message.payload, ref.station)
        if ref.kind == UP_STATUS:
            if not message.payload:
                return None  # a retained status being cleared
            status = decode_status(message.payload)
            if status.station is not None and status.station != ref.station:
                return quarantine(
                    f"status names station {status.station!r} on the topic of {ref.station!r}",
                    "status",
                    ref.station,
                )
            return StatusUpdate(ref.station, status, message.received)
        if ref.kind == UP_ACK:
            return AckUpdate(ref.station, decode_ack(message.payload), message.received)
    except TelemetryError as exc:
        return quarantine(str(exc), ref.kind.split("/")[-1], ref.station)
    except Exception as exc:  # a decoder bug must not stop the feed: keep the message
        log.exception("ingest: decoding %s failed unexpectedly", message.topic)
        return quarantine(f"internal error: {type(exc).__name__}: {exc}", "internal", ref.station)
    return quarantine(f"not an uplink topic kind: {ref.kind}", "topic", ref.station)


@dataclass
class IngestStats:
    messages: int = 0
    readings: int = 0  # readings stored (new)
    duplicates: int = 0  # readings received again: no-ops
    statuses: int = 0
    acks: int = 0
    batches: int = 0
    watermarks: int = 0
    lost: int = 0  # ids counted lost in gaps
    store_errors: int = 0
    quarantined: Counter[str] | None = None

    def __post_init__(self) -> None:
        if self.quarantined is None:
            self.quarantined = Counter()

    def as_dict(self) -> dict[str, object]:
        return {
            "messages": self.messages,
            "readings": self.readings,
            "duplicates": self.duplicates,
            "statuses": self.statuses,
            "acks": self.acks,
            "batches": self.batches,
            "watermarks": self.watermarks,
            "lost": self.lost,
            "store_errors": self.store_errors,
            "quarantined": dict(self.quarantined or {}),
        }


class Ingest:
    """Subscribe, decode, commit, acknowledge, publish the watermark."""

    def __init__(
        self,
        store: Store,
        cfg: IngestConfig,
        mqtt_cfg: MqttConfig,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.cfg = cfg
        self.mqtt_cfg = mqtt_cfg
        self.clock = clock
        self.monotonic = monotonic
        self.stats = IngestStats()
        self._inbox: queue.SimpleQueue[Message] = queue.SimpleQueue()
        self._queue: queue.Queue[Decoded] = queue.Queue()
        self._stop = threading.Event()
        self._decoded_all = threading.Event()  # the decoder has stopped: nothing more comes
        self._decoder: threading.Thread | None = None
        self._thread: threading.Thread | None = None
        self._dirty: dict[tuple[str, str], float] = {}
        self._last_mark: dict[tuple[str, str], float] = {}
        self._logged: set[str] = set()
        subs = [(mqtt_cfg.up_filter, 1)]
        if mqtt_cfg.share_group:
            # a shared subscription gets no retained messages: statuses come unshared
            subs.append((UP_FILTER.replace("up/#", UP_STATUS), 1))
        self.client = MqttClient(
            mqtt_cfg, on_message=self._receive, subscriptions=subs, clock=clock
        )

    # -- lifecycle --------------------------------------------------------------------
    def start(self) -> None:
        self._decoder = threading.Thread(target=self._decode, name="ingest-decoder", daemon=True)
        self._decoder.start()
        self._thread = threading.Thread(target=self._run, name="ingest-writer", daemon=True)
        self._thread.start()
        self.client.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop taking messages, commit and acknowledge what is queued, then disconnect."""
        self._stop.set()
        if self._decoder is not None:
            self._decoder.join(timeout)
        if self._thread is not None:
            self._thread.join(timeout)
        self.client.stop()

    def wait_connected(self, timeout: float) -> bool:
        return self.client.wait_connected(timeout)

    @property
    def backlog(self) -> int:
        return self._inbox.qsize() + self._queue.qsize()

    # -- paho's thread ----------------------------------------------------------------
    def _receive(self, message: Message) -> None:
        self._inbox.put(message)

    # -- the decoder ------------------------------------------------------------------
    def _decode(self) -> None:
        """Decode what arrives, in order; on stop, what has arrived, then hand over."""
        inbox, out, limit = self._inbox, self._queue, self.cfg.quarantine_payload_max
        try:
            while True:
                try:
                    message = inbox.get(timeout=0.05)
                except queue.Empty:
                    if self._stop.is_set():
                        return
                    continue
                out.put(Decoded(message, classify(message, limit)))  # classify never raises
        finally:
            self._decoded_all.set()

    # -- the writer -------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            stopping = self._decoded_all.is_set()
            batch = self._take(block=not stopping)
            try:
                if batch:
                    self._commit(batch)
                self._publish_watermarks(force=stopping and not batch)
            except Exception as exc:  # a bug of ours: keep every message, never stop the feed
                log.exception("ingest: a batch failed unexpectedly; storing it message by message")
                for d in batch:
                    try:
                        self._commit([d])
                    except Exception:
                        self._commit([self._refused(d, AirtraceError(f"internal error: {exc}"))])
            if stopping and not batch:
                return

    def _take(self, *, block: bool) -> list[Decoded]:
        wait = max(0.01, min(0.1, self.cfg.watermark_interval_s / 2 or 0.1))
        try:
            first = self._queue.get(timeout=wait) if block else self._queue.get_nowait()
        except queue.Empty:
            return []
        batch = [first]
        readings = first.readings
        deadline = self.monotonic() + self.cfg.batch_wait_s
        while len(batch) < self.cfg.batch_max_messages and readings < self.cfg.batch_max_readings:
            try:
                remaining = deadline - self.monotonic()
                nxt = (
                    self._queue.get(timeout=remaining)
                    if remaining > 0
                    else self._queue.get_nowait()
                )
            except queue.Empty:
                break
            batch.append(nxt)
            readings += nxt.readings
        return batch

    def _commit(self, decoded: list[Decoded]) -> None:
        delay = 0.5
        while True:
            try:
                committed = self.store.commit(self._batch(decoded))
                break
            except StoreError as exc:
                self.stats.store_errors += 1
                if not exc.retryable:
                    if len(decoded) > 1:  # find the message the database refuses
                        for d in decoded:
                            self._commit([d])
                        return
                    if isinstance(decoded[0].item, Quarantined) and (
                        decoded[0].item.reason_class == "store"
                    ):
                        log.error(
                            "ingest: cannot even quarantine %s: %s", decoded[0].message.topic, exc
                        )
                        return  # not acknowledged: the broker offers it again later
                    decoded = [self._refused(decoded[0], exc)]
                    continue
                if self._stop.is_set():
                    log.error(
                        "ingest: stopping with %d messages not stored (%s); they stay "
                        "unacknowledged and come again",
                        len(decoded),
                        exc,
                    )
                    return
                log.warning("ingest: store unavailable (%s); retrying in %.1f s", exc, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, 10.0)
        now = self.monotonic()
        for key in committed.touched:
            self._dirty.setdefault(key, now)
        self.stats.batches += 1
        self.stats.readings += committed.new
        self.stats.duplicates += committed.duplicates
        for d in decoded:
            self.stats.messages += 1
            item = d.item
            if isinstance(item, Quarantined):
                self._count_quarantine(item)
            elif isinstance(item, StatusUpdate):
                self.stats.statuses += 1
            elif isinstance(item, AckUpdate):
                self.stats.acks += 1
            self.client.ack(d.message)

    def _batch(self, decoded: list[Decoded]) -> Batch:
        packs, statuses, acks, quarantine = [], [], [], []
        for d in decoded:
            item = d.item
            if isinstance(item, PackRows):
                packs.append(item)
            elif isinstance(item, StatusUpdate):
                statuses.append(item)
            elif isinstance(item, AckUpdate):
                acks.append(item)
            elif isinstance(item, Quarantined):
                quarantine.append(item)
        return Batch(packs, statuses, acks, quarantine, received=self.clock())

    def _refused(self, d: Decoded, exc: AirtraceError) -> Decoded:
        m = d.message
        station = getattr(d.item, "station", None)
        item = Quarantined(
            received=m.received,
            source="mqtt",
            topic=m.topic,
            reason=f"the store refused it: {exc}"[:500],
            reason_class="store",
            payload=m.payload[: self.cfg.quarantine_payload_max],
            size=len(m.payload),
            station=station,
        )
        return Decoded(m, item)

    def _count_quarantine(self, item: Quarantined) -> None:
        assert self.stats.quarantined is not None
        self.stats.quarantined[item.reason_class] += 1
        if item.reason_class not in self._logged:
            self._logged.add(item.reason_class)
            log.warning(
                "ingest: quarantined a message on %s (%s): %s — further %r ones are counted, "
                "not logged",
                item.topic,
                item.reason_class,
                item.reason,
                item.reason_class,
            )
        else:
            log.debug("ingest: quarantined %s: %s", item.topic, item.reason)

    # -- custody watermark ------------------------------------------------------------
    def _publish_watermarks(self, *, force: bool = False) -> None:
        if not self._dirty:
            return
        now = self.monotonic()
        interval = self.cfg.watermark_interval_s
        for key in list(self._dirty):
            last = self._last_mark.get(key)
            if not force and last is not None and now - last < interval:
                continue
            station, epoch = key
            try:
                custody, gaps = self.store.advance_custody(station, epoch, self.clock())
            except StoreError as exc:
                log.warning("ingest: cannot move the watermark of %s: %s", station, exc)
                return
            del self._dirty[key]
            self._last_mark[key] = now
            for g in gaps:
                self.stats.lost += g.size
                log.warning(
                    "ingest: %s epoch %r: ids %d-%d never arrived and are gone from the "
                    "gateway (below its floor): counted lost",
                    station,
                    epoch,
                    g.first_id,
                    g.last_id,
                )
            self.client.publish(
                topic(station, DOWN_STORED),
                encode_stored(Stored(custody.upto, epoch)),
                qos=1,
                retain=True,
            )
            self.stats.watermarks += 1

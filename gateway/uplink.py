"""The uplink: SenML packs from the outbox onto ``up/telemetry``, the station's retained
``up/status`` (and its last will), command acks on ``up/ack``, and the custody watermark
from ``down/stored``.

It runs on the daemon's one worker thread and is driven by events from the MQTT link
(``handle``) and by the loop (``pump``, ``tick``). Custody is end to end (DESIGN 4.2): a
PUBACK only ends a batch's flight (``outbox.ack``); readings leave the outbox when the
watermark of this outbox's epoch covers them. What the watermark does not cover is sent
again after every (re)connect (once the retained watermark had a moment to arrive), and
when the watermark stalls for ``resend_after_s`` (doubling while it stays stalled, up to an
hour). A pack goes out when ``batch_max`` readings are waiting, or when the oldest of
fewer has waited ``batch_wait_s``; at most ``max_inflight`` packs are in flight.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from gateway.batch import Batch
from gateway.clock import Clock
from gateway.config import StationConfig
from gateway.errors import UplinkError
from gateway.mqtt import (
    Connected,
    ConnectFailed,
    Disconnected,
    MqttSettings,
    Publication,
    Published,
    Received,
    Will,
)
from gateway.outbox import Outbox
from protocols import telemetry as tm

log = logging.getLogger(__name__)

WATERMARK_WAIT_S = 2.0  # after connecting, wait this long for the retained watermark
MAX_STALL_BACKOFF = 6  # resend_after_s x 2^6 at most (about an hour at the default 60 s)
PENDING_ACKS = 256


class Link(Protocol):
    """What the uplink needs of an MQTT connection (``gateway.mqtt.MqttLink``)."""

    @property
    def connected(self) -> bool: ...

    def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
    ) -> Publication: ...


def mqtt_settings(config: StationConfig, version: str) -> MqttSettings:
    """Connection settings of a station: client id, last will, subscriptions."""
    sid = config.station.id
    will = Will(
        tm.topic(sid, tm.UP_STATUS),
        tm.encode_status(tm.Status(state="offline", station=sid, version=version)),
    )
    subs = ((tm.topic(sid, tm.DOWN_CMD), 1), (tm.topic(sid, tm.DOWN_STORED), 1))
    return MqttSettings.from_uplink(
        config.uplink, client_id=f"gw-{sid}", will=will, subscriptions=subs
    )


class Uplink:
    """Publishes the outbox and follows the watermark (see the module docstring)."""

    def __init__(
        self,
        config: StationConfig,
        outbox: Outbox,
        link: Link,
        *,
        clock: Clock,
        version: str,
        describe: Callable[[], Mapping[str, Any]] | None = None,
    ) -> None:
        self.config = config
        self.outbox = outbox
        self.link = link
        self.clock = clock
        self.version = version
        self.describe = describe
        sid = config.station.id
        self.station = sid
        self._t_telemetry = tm.topic(sid, tm.UP_TELEMETRY)
        self._t_status = tm.topic(sid, tm.UP_STATUS)
        self._t_ack = tm.topic(sid, tm.UP_ACK)
        self._t_cmd = tm.topic(sid, tm.DOWN_CMD)
        self._t_stored = tm.topic(sid, tm.DOWN_STORED)
        self._gen: int | None = None
        self._inflight: dict[Publication, Batch] = {}
        self._acks: deque[bytes] = deque(maxlen=PENDING_ACKS)
        self._hold_until = 0.0
        self._partial_since: float | None = None
        self._last_progress = clock.monotonic()
        self._stalls = 0
        self._ignored_epochs: set[str] = set()
        self._bad_watermarks = 0
        # counters (read by metrics and status)
        self.packs = 0
        self.readings_sent = 0
        self.resends = 0
        self.watermark_updates = 0
        self.connect_failures = 0
        self.last_error: str | None = None

    # -- events ---------------------------------------------------------------------------
    def handle(self, event: object) -> bytes | None:
        """Apply a link event; returns a command's payload for the caller to execute."""
        now = self.clock.monotonic()
        if isinstance(event, Published):
            batch = self._inflight.pop(Publication(event.gen, event.mid), None)
            if batch is not None:
                self.outbox.ack(batch)
        elif isinstance(event, Received):
            if event.topic == self._t_stored:
                self._on_stored(event.payload, now)
            elif event.topic == self._t_cmd:
                return event.payload
        elif isinstance(event, Connected):
            self._gen = event.gen
            self._inflight.clear()
            pending = self.outbox.rewind()
            self._hold_until = now + WATERMARK_WAIT_S
            self._last_progress = now
            self._publish_status("online")
            if pending:
                log.info("uplink: connected; %d readings not yet confirmed", pending)
        elif isinstance(event, Disconnected):
            if event.gen == self._gen:
                self._gen = None
            for batch in self._inflight.values():
                self.outbox.keep(batch)
            self._inflight.clear()
        elif isinstance(event, ConnectFailed):
            self.connect_failures += 1
            self.last_error = event.reason
        return None

    def _on_stored(self, payload: bytes, now: float) -> None:
        self._hold_until = 0.0
        try:
            stored = tm.decode_stored(payload)
        except tm.TelemetryError as exc:
            self._bad_watermarks += 1
            if self._bad_watermarks == 1:
                log.warning("uplink: ignoring a malformed watermark: %s", exc)
            return
        if stored.epoch != self.outbox.epoch:
            if stored.epoch not in self._ignored_epochs:
                self._ignored_epochs.add(stored.epoch)
                log.info(
                    "uplink: ignoring the watermark of epoch %r (this outbox is epoch %r)",
                    stored.epoch,
                    self.outbox.epoch,
                )
            return
        if self.outbox.stored(stored.upto, stored.epoch):
            self.watermark_updates += 1
            self._last_progress = now
            self._stalls = 0
            for key in [k for k, b in self._inflight.items() if b.last <= stored.upto]:
                del self._inflight[key]

    # -- sending --------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._gen is not None and self.link.connected

    def pump(self, budget: int = 50, *, flush: bool = False) -> int:
        """Publish up to ``budget`` packs; returns how many went out. ``flush`` sends a
        partial pack at once instead of waiting ``batch_wait_s`` for it to fill (shutdown)."""
        if not self.connected:
            return 0
        now = self.clock.monotonic()
        self._flush_acks()
        if now < self._hold_until:
            return 0
        up = self.config.uplink
        sent = 0
        while sent < budget and len(self._inflight) < up.max_inflight:
            waiting = self.outbox.next_id - self.outbox.cursor
            if waiting <= 0:
                self._partial_since = None
                break
            if waiting < up.batch_max and up.batch_wait_s > 0 and not flush:
                if self._partial_since is None:
                    self._partial_since = now
                if now - self._partial_since < up.batch_wait_s:
                    break
            if self.outbox.cursor - 1 <= self.outbox.watermark:
                self._last_progress = now  # nothing was outstanding: the stall clock starts
            batch = self.outbox.begin(up.batch_max)
            if batch is None:
                break
            try:
                pub = self.link.publish(self._t_telemetry, batch.encode(self.station))
            except UplinkError as exc:
                self.outbox.keep(batch)
                self.last_error = str(exc)
                break
            self._inflight[pub] = batch.span()
            self._partial_since = None
            self.packs += 1
            self.readings_sent += len(batch)
            sent += 1
        return sent

    def tick(self) -> None:
        """Resend what the watermark does not cover when it has stalled."""
        now = self.clock.monotonic()
        box = self.outbox
        if box.cursor - 1 <= box.watermark:
            self._last_progress = now
            self._stalls = 0
            return
        if not self.connected:
            return
        wait = self.config.uplink.resend_after_s * 2 ** min(self._stalls, MAX_STALL_BACKOFF)
        if now - self._last_progress >= wait:
            n = box.rewind()
            self._inflight.clear()
            self._stalls += 1
            self._last_progress = now
            self.resends += 1
            log.warning(
                "uplink: the watermark has stayed at %d for %.0f s; resending %d readings",
                box.watermark,
                wait,
                n,
            )

    # -- status and acks --------------------------------------------------------------------
    def status(self, state: str) -> bytes:
        st = self.config.station
        extra: dict[str, Any] = {}
        if st.name:
            extra["name"] = st.name
        if st.site:
            extra["site"] = st.site
        if self.config.actuators:  # what the centre may order (e.g. the site's spray)
            extra["actuators"] = [
                {"name": a.name, "max_on_s": a.max_on_s} for a in self.config.actuators
            ]
        if self.describe is not None:
            extra.update(self.describe())
        sensors = tuple(
            {
                "name": s.name,
                "profile": s.profile.rsplit("/", 1)[-1],
                "transport": s.transport,
                "interval_s": s.interval_s,
            }
            for s in self.config.sensors
        )
        return tm.encode_status(
            tm.Status(
                state=state,
                station=st.id,
                kind=st.kind,
                lat=st.lat,
                lon=st.lon,
                inlet_height_m=st.inlet_height_m,
                sensors=sensors if state == "online" else (),
                version=self.version,
                ts=self.clock.now(),
                epoch=self.outbox.epoch,
                extra=extra if state == "online" else {},
            )
        )

    def _publish_status(self, state: str) -> Publication | None:
        try:
            return self.link.publish(self._t_status, self.status(state), retain=True)
        except UplinkError as exc:
            self.last_error = str(exc)
            return None

    def goodbye(self) -> Publication | None:
        """Publish the retained offline status before a clean stop."""
        if not self.connected:
            return None
        return self._publish_status("offline")

    def send_ack(self, ack: tm.Ack) -> None:
        """Publish a command's ack now, or as soon as the link is up (bounded queue)."""
        self._acks.append(tm.encode_ack(ack))
        if self.connected:
            self._flush_acks()

    def _flush_acks(self) -> None:
        while self._acks:
            try:
                self.link.publish(self._t_ack, self._acks[0])
            except UplinkError:
                return
            self._acks.popleft()

    @property
    def pending_acks(self) -> int:
        return len(self._acks)

    @property
    def inflight(self) -> int:
        return len(self._inflight)

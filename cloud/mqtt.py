"""The central service's one MQTT adapter: paho-mqtt (callback API v2) behind a small class.

* MQTT 5 with a persistent session: a fixed client id, ``clean_start=False`` on every
  connect and a session expiry, so what the broker delivered but we had not acknowledged is
  delivered again after a crash or a reconnect.
* Manual acknowledgement: paho's ``manual_ack_set(True)``; ``ack(message)`` sends the PUBACK
  once the caller has committed what the message carries. An ack for a message of an earlier
  connection is skipped (the broker redelivers it on the new one).
* ``Receive Maximum`` lets the broker keep ``receive_max`` messages in flight towards us
  (Mosquitto's own default is 20), so batches of commits are possible.
* Subscriptions are renewed on every connect (Mosquitto before 2.0.12 does not restore a
  durable client's ``$share`` subscriptions).
* paho's own thread runs the network loop and reconnects with exponential backoff; losing
  and regaining the broker is each logged once. No paho type or return code leaks out.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from cloud.config import MqttConfig
from protocols.errors import AirtraceError

log = logging.getLogger(__name__)


def _no_delay(client: paho.Client, userdata: object, sock: object) -> None:
    """Send each MQTT packet at once (TCP_NODELAY). With Nagle's algorithm on, a small
    packet written while the previous one awaits its ACK waits for the peer's delayed ACK
    (~40 ms on Linux): a command's PUBACK then its answer cost 40-70 ms on loopback."""
    with contextlib.suppress(OSError, AttributeError):  # not a TCP socket: no matter
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # type: ignore[attr-defined]


class MqttError(AirtraceError):
    """The broker refused or could not be reached; ``retryable`` unless it is a refusal."""

    retryable = True


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    mid: int
    dup: bool
    received: float  # wall clock, epoch seconds
    generation: int  # which connection delivered it


class MqttClient:
    """A persistent-session MQTT client for the central service."""

    def __init__(
        self,
        cfg: MqttConfig,
        *,
        on_message: Callable[[Message], None],
        subscriptions: Sequence[tuple[str, int]] = (),
        manual_ack: bool = True,
        on_connect: Callable[[bool], None] | None = None,
        clock: Callable[[], float] = time.time,
        client_id: str | None = None,
        persistent: bool = True,
    ) -> None:
        self.cfg = cfg
        self.persistent = persistent
        self._on_message_cb = on_message
        self._on_connect_cb = on_connect
        self._subs = list(subscriptions)
        self._clock = clock
        self._generation = 0
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._stopping = False
        self._lock = threading.Lock()
        self._ever_connected = False
        self._refused: str | None = None
        self.client_id = client_id or cfg.client_id
        c = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=paho.MQTTv5 if cfg.protocol == "5" else paho.MQTTv311,
            clean_session=None if cfg.protocol == "5" else not persistent,
        )
        c.manual_ack_set(manual_ack)
        c.max_queued_messages_set(10_000)  # outgoing; the database is the real backlog
        c.reconnect_delay_set(min_delay=1, max_delay=30)
        if cfg.username is not None:
            c.username_pw_set(cfg.username, cfg.password)
        if cfg.tls:
            c.tls_set(
                ca_certs=str(cfg.ca_file) if cfg.ca_file else None,
                certfile=str(cfg.cert_file) if cfg.cert_file else None,
                keyfile=str(cfg.key_file) if cfg.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        c.on_socket_open = _no_delay
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        self._client = c

    # -- lifecycle --------------------------------------------------------------------
    def start(self) -> None:
        """Connect in the background (and keep reconnecting); a ``persistent`` client resumes
        the session of its client id, else a fresh session that ends with the connection."""
        persistent = self.persistent
        try:
            if self.cfg.protocol == "5":
                # paho's Properties.__init__ has no annotations (paho-mqtt 2.2)
                props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
                props.SessionExpiryInterval = self.cfg.session_expiry_s if persistent else 0
                props.ReceiveMaximum = self.cfg.receive_max
                self._client.connect_async(
                    self.cfg.host,
                    self.cfg.port,
                    keepalive=self.cfg.keepalive_s,
                    clean_start=not persistent,
                    properties=props,
                )
            else:  # MQTT 3.1.1: the session persists by clean_session=False
                self._client.connect_async(
                    self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s
                )
        except (OSError, ValueError) as exc:
            raise MqttError(f"mqtt {self.cfg.url}: {exc}") from exc
        self._client.loop_start()

    def stop(self) -> None:
        """Disconnect cleanly (the session stays on the broker for the next start)."""
        self._stopping = True
        try:
            self._client.disconnect()
        finally:
            self._client.loop_stop()
            self._connected.clear()
            # loop_start's wake-up socket pair is otherwise closed only by paho's finaliser
            with contextlib.suppress(Exception):
                self._client._reset_sockets()

    def wait_connected(self, timeout: float) -> bool:
        """Wait until connected and, when there are subscriptions, subscribed."""
        deadline = time.monotonic() + timeout
        if not self._connected.wait(timeout):
            return False
        return not self._subs or self._subscribed.wait(max(0.0, deadline - time.monotonic()))

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def generation(self) -> int:
        return self._generation

    @property
    def refused(self) -> str | None:
        """Why the broker last refused us (bad credentials, not authorised), if it did."""
        return self._refused

    # -- traffic ----------------------------------------------------------------------
    def ack(self, message: Message) -> bool:
        """Acknowledge a QoS 1 message; False when its connection is gone (it will return)."""
        if message.qos == 0:
            return True
        with self._lock:
            if message.generation != self._generation or not self._connected.is_set():
                return False
            rc = self._client.ack(message.mid, message.qos)
        return rc == paho.MQTT_ERR_SUCCESS

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> bool:
        """Queue a publish; False when paho's outgoing queue refused it."""
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        return info.rc in (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_NO_CONN)

    def publish_and_wait(self, topic: str, payload: bytes, *, timeout: float = 10.0) -> bool:
        """Publish QoS 1 and wait for the broker's PUBACK (never from a paho callback)."""
        info = self._client.publish(topic, payload, qos=1)
        try:
            info.wait_for_publish(timeout)
        except (RuntimeError, ValueError) as exc:
            raise MqttError(f"mqtt {self.cfg.url}: publish failed: {exc}") from exc
        return info.is_published()

    # -- paho callbacks ---------------------------------------------------------------
    def _on_connect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if reason.is_failure:
            self._refused = str(reason)
            log.error("mqtt %s refused the connection: %s", self.cfg.url, reason)
            return
        self._refused = None
        with self._lock:
            self._generation += 1
        if self._subs:
            self._subscribed.clear()
            client.subscribe([(t, q) for t, q in self._subs])
        if self._ever_connected:
            log.info("mqtt: connected again to %s", self.cfg.url)
        else:
            log.info(
                "mqtt: connected to %s as %s (session present: %s)",
                self.cfg.url,
                self.client_id,
                flags.session_present,
            )
        self._ever_connected = True
        self._connected.set()
        if self._on_connect_cb is not None:
            try:
                self._on_connect_cb(bool(flags.session_present))
            except Exception:
                log.exception("mqtt: on_connect handler failed")

    def _on_disconnect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        was = self._connected.is_set()
        self._connected.clear()
        self._subscribed.clear()
        if was and not self._stopping:
            log.warning("mqtt: lost %s (%s); reconnecting", self.cfg.url, reason)

    def _on_subscribe(
        self, client: paho.Client, userdata: Any, mid: int, reasons: Any, properties: Any
    ) -> None:
        refused = [str(r) for r in reasons if r.is_failure]
        if refused:
            log.error("mqtt: subscription refused by %s: %s", self.cfg.url, ", ".join(refused))
        self._subscribed.set()

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            topic = "<invalid UTF-8 topic>"
        message = Message(
            topic=topic,
            payload=bytes(msg.payload),
            qos=msg.qos,
            retain=bool(msg.retain),
            mid=msg.mid,
            dup=bool(msg.dup),
            received=self._clock(),
            generation=self._generation,
        )
        try:
            self._on_message_cb(message)
        except Exception:
            log.exception("mqtt: message handler failed on %s", topic)


def publish_once(cfg: MqttConfig, topic: str, payload: bytes, *, timeout: float = 10.0) -> bool:
    """Connect, publish one QoS 1 message, wait for the broker's PUBACK, disconnect (for
    command-line tools; a client id of its own, so the service's session is untouched)."""
    import os

    client = MqttClient(
        cfg,
        on_message=lambda m: None,
        client_id=f"{cfg.client_id}-cli-{os.getpid()}",
        persistent=False,
    )
    client.start()
    try:
        if not client.wait_connected(timeout):
            raise MqttError(f"mqtt {cfg.url}: no connection within {timeout:g} s")
        return client.publish_and_wait(topic, payload, timeout=timeout)
    finally:
        client.stop()

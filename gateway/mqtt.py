"""The one adapter around paho-mqtt (callback API v2). No paho type or return code leaves
this module: the link reports plain events and raises ``UplinkError``.

The link owns an explicit reconnect loop (a thread): it makes a *fresh* paho client for
every connection, runs its network loop itself, and throws the client away when the
connection ends. So paho's in-memory queue never outlives a connection (reliability.md
1.1: it is lost on a crash anyway, and a publish while disconnected would sit in it and
go out later as a surprise duplicate); whatever was in flight is the outbox's to resend.
Between attempts it waits with exponential backoff and jitter.

Events, in order, through ``on_event`` (called from the link's thread; the receiver only
queues them): ``Connected``, ``Received`` (retained messages arrive right after the
subscriptions), ``Published`` (a PUBACK for a QoS 1 publish: the broker has it in
flight, nothing more), ``Disconnected``, ``ConnectFailed``. Each carries the connection's
generation number, so a late event of an old connection cannot be mistaken for the
current one.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import random
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from gateway.config import UplinkConfig
from gateway.errors import UplinkError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Will:
    topic: str
    payload: bytes
    retain: bool = True
    qos: int = 1


@dataclass(frozen=True)
class MqttSettings:
    host: str
    port: int
    client_id: str
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    tls_insecure: bool = False
    username: str | None = None
    password: str | None = None
    keepalive_s: int = 30
    backoff_min_s: float = 1.0
    backoff_max_s: float = 120.0
    max_inflight: int = 20
    max_queued: int = 64  # paho's own queue; bounded, the outbox holds the backlog
    clean_session: bool = False  # the broker keeps commands sent while we were away
    connect_timeout_s: float = 10.0
    will: Will | None = None
    subscriptions: tuple[tuple[str, int], ...] = ()

    @classmethod
    def from_uplink(
        cls,
        up: UplinkConfig,
        *,
        client_id: str,
        will: Will | None = None,
        subscriptions: tuple[tuple[str, int], ...] = (),
    ) -> MqttSettings:
        return cls(
            host=up.host,
            port=up.port,
            client_id=up.client_id or client_id,
            tls=up.tls,
            ca_file=up.ca_file,
            cert_file=up.cert_file,
            key_file=up.key_file,
            tls_insecure=up.tls_insecure,
            username=up.username,
            password=up.secret(),
            keepalive_s=up.keepalive_s,
            backoff_min_s=up.backoff_min_s,
            backoff_max_s=up.backoff_max_s,
            max_inflight=up.max_inflight,
            max_queued=up.max_inflight + 44,
            will=will,
            subscriptions=subscriptions,
        )

    @property
    def where(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


# --------------------------------------------------------------------------- events


@dataclass(frozen=True)
class Connected:
    gen: int
    session_present: bool


@dataclass(frozen=True)
class ConnectFailed:
    reason: str
    auth: bool = False  # refused for credentials or authorisation


@dataclass(frozen=True)
class Disconnected:
    gen: int
    reason: str


@dataclass(frozen=True)
class Published:
    gen: int
    mid: int


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retained: bool


class Publication(NamedTuple):
    gen: int
    mid: int


def backoff_delay(attempt: int, lo: float, hi: float, rng: random.Random) -> float:
    """Exponential backoff with jitter: uniform in [d/2, d], d = min(hi, lo * 2^attempt)."""
    d = min(hi, lo * (2 ** min(attempt, 30)))
    return rng.uniform(d / 2, d)


_GENERATIONS = itertools.count(1)  # unique across links, so a replaced link's events never match
_AUTH_CODES = (4, 5, 134, 135)  # bad user name or password, not authorised (3.1.1 and 5)


def _no_delay(client: paho.Client, userdata: object, sock: object) -> None:
    """Send each MQTT packet at once (TCP_NODELAY). With Nagle's algorithm on, a small
    packet written while the previous one awaits its ACK waits for the peer's delayed ACK
    (~40 ms on Linux): a command's PUBACK then its answer cost 40-70 ms on loopback."""
    with contextlib.suppress(OSError, AttributeError):  # not a TCP socket: no matter
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # type: ignore[attr-defined]


def _client(settings: MqttSettings, gen: int) -> paho.Client:
    c = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=settings.client_id,
        clean_session=settings.clean_session,
        userdata=gen,
        protocol=paho.MQTTv311,
        reconnect_on_failure=False,
    )
    c.on_socket_open = _no_delay
    c.max_inflight_messages_set(settings.max_inflight)
    c.max_queued_messages_set(settings.max_queued)
    c.connect_timeout = settings.connect_timeout_s
    if settings.username is not None:
        c.username_pw_set(settings.username, settings.password)
    if settings.will is not None:
        w = settings.will
        c.will_set(w.topic, w.payload, qos=w.qos, retain=w.retain)
    if settings.tls:
        try:
            c.tls_set(
                ca_certs=str(settings.ca_file) if settings.ca_file else None,
                certfile=str(settings.cert_file) if settings.cert_file else None,
                keyfile=str(settings.key_file) if settings.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise UplinkError(f"TLS set-up for {settings.where} failed: {exc}") from None
        if settings.tls_insecure:
            c.tls_insecure_set(True)
    return c


class MqttLink:
    """A supervised MQTT connection (see the module docstring)."""

    def __init__(
        self,
        settings: MqttSettings,
        on_event: Callable[[object], None],
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self._emit = on_event
        self._rng = rng or random.Random()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._client: paho.Client | None = None
        self._gen = 0
        self._connected = False
        self._refused: tuple[str, bool] | None = None
        self._lost: str | None = None
        self._thread: threading.Thread | None = None
        self.reconnects = 0
        self.connects = 0
        self.last_error: str | None = None
        self._logged_error: str | None = None

    # -- public -----------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._connected

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="mqtt-link", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Disconnect cleanly (the broker does not publish the last will) and end the loop."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
    ) -> Publication:
        """Hand a message to the broker connection; raises ``UplinkError`` when there is
        none or paho's bounded queue is full. Success means *queued*, not delivered."""
        with self._lock:
            client, gen = self._client, self._gen
            if client is None or not self._connected:
                raise UplinkError(f"not connected to {self.settings.where}")
            try:
                info = client.publish(topic, payload, qos=qos, retain=retain)
            except (ValueError, OSError) as exc:
                raise UplinkError(f"publish to {topic} failed: {exc}") from None
        if info.rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
            raise UplinkError("the MQTT queue is full")
        # NO_CONN: the connection just dropped and paho queued it in a client that is
        # about to be discarded; the Disconnected event that follows hands it back
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            raise UplinkError(f"publish to {topic} failed: {paho.error_string(info.rc)}")
        return Publication(gen, int(info.mid))

    def probe(self, timeout: float = 10.0) -> None:
        """Connect once, wait for the broker's answer, disconnect; ``UplinkError`` with the
        reason (unreachable, TLS, refused credentials) otherwise. For ``doctor``."""
        answer: list[Any] = []
        client = _client(self.settings, 0)
        client.on_connect = lambda _c, _u, _f, rc, _p: answer.append(rc)
        try:
            client.connect(self.settings.host, self.settings.port, self.settings.keepalive_s)
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise UplinkError(f"cannot reach {self.settings.where}: {exc}") from None
        deadline = time.monotonic() + timeout
        try:
            while not answer:
                if client.loop(0.1) != MQTTErrorCode.MQTT_ERR_SUCCESS and not answer:
                    raise UplinkError(f"{self.settings.where} closed the connection")
                if time.monotonic() > deadline:
                    raise UplinkError(f"{self.settings.where} did not answer in {timeout:g} s")
            if answer[0].is_failure:
                raise UplinkError(f"{self.settings.where} refused the connection: {answer[0]}")
        finally:
            with contextlib.suppress(Exception):
                client.disconnect()
                client.loop(0.1)

    # -- the loop -----------------------------------------------------------------------
    def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            try:
                was_connected = self._session()
            except Exception as exc:  # never let the supervisor die
                log.exception("mqtt link: unexpected error")
                self._fail(f"unexpected error: {exc}", False)
                was_connected = False
            if self._stop.is_set():
                break
            attempt = 0 if was_connected else attempt + 1
            delay = backoff_delay(
                attempt, self.settings.backoff_min_s, self.settings.backoff_max_s, self._rng
            )
            self._stop.wait(delay)

    def _fail(self, reason: str, auth: bool) -> None:
        self.last_error = reason
        if reason != self._logged_error:
            log.warning("uplink %s: %s (retrying with backoff)", self.settings.where, reason)
            self._logged_error = reason
        self._emit(ConnectFailed(reason, auth))

    def _session(self) -> bool:
        gen = self._gen = next(_GENERATIONS)
        self._refused, self._lost = None, None
        try:
            client = _client(self.settings, gen)
        except UplinkError as exc:
            self._fail(str(exc), False)
            return False
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        try:
            client.connect(self.settings.host, self.settings.port, self.settings.keepalive_s)
        except (OSError, ssl.SSLError, ValueError) as exc:
            self._fail(f"cannot connect: {exc}", False)
            return False
        with self._lock:
            self._client = client
        deadline = time.monotonic() + self.settings.connect_timeout_s
        reason = "stopped"
        while not self._stop.is_set():
            rc = client.loop(0.05)
            if self._refused is not None:
                break
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                reason = self._lost or paho.error_string(rc)
                break
            if not self._connected and time.monotonic() > deadline:
                reason = "no answer to CONNECT"
                self._refused = (reason, False)
                break
        was_connected = self._connected
        with self._lock:
            self._connected = False
            self._client = None
        if self._stop.is_set() and was_connected:
            with contextlib.suppress(Exception):
                client.disconnect()
                for _ in range(10):
                    if client.loop(0.05) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                        break
        else:
            with contextlib.suppress(Exception):
                client.disconnect()
                client.loop(0.01)
        # paho's manual loop() opens a wake-up socket pair that only its finaliser closes;
        # close it now (and the connection, if still open) rather than leak two fds per session
        with contextlib.suppress(Exception):
            client._reset_sockets()
        if self._refused is not None and not was_connected:
            self._fail(self._refused[0], self._refused[1])
        if was_connected:
            if not self._stop.is_set():
                log.warning("uplink %s: connection lost: %s", self.settings.where, reason)
            self._emit(Disconnected(gen, reason))
        return was_connected

    # -- paho callbacks (the link's thread; they only record and queue) ---------------------
    def _on_connect(self, client: Any, gen: int, flags: Any, rc: Any, props: Any) -> None:
        if rc.is_failure:
            self._refused = (f"{rc}", int(rc.value) in _AUTH_CODES)
            return
        self._connected = True
        self.connects += 1
        if self.connects > 1:
            self.reconnects += 1
        self._logged_error = None
        self.last_error = None
        log.info("uplink %s: connected", self.settings.where)
        for topic, qos in self.settings.subscriptions:
            client.subscribe(topic, qos=qos)
        self._emit(Connected(gen, bool(flags.session_present)))

    def _on_disconnect(self, client: Any, gen: int, flags: Any, rc: Any, props: Any) -> None:
        self._lost = str(rc)

    def _on_publish(self, client: Any, gen: int, mid: int, rc: Any, props: Any) -> None:
        self._emit(Published(gen, mid))

    def _on_message(self, client: Any, gen: int, msg: Any) -> None:
        self._emit(Received(msg.topic, bytes(msg.payload), bool(msg.retain)))
